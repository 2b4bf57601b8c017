"""A builtin sampler's manifest entry (ProfilerRun.entry): failed when it took no sample,
partial with problems, else ok; the same tail as a profiler with a process (Python 3.8
syntax: these run on the device's oldest Python)."""

import os
import tempfile
from typing import Any, Dict, List, Optional

from fleetprof_device.profilers import ProfilerRun


class StubSampler:
    """What the entry reads from a sampler, set by the test."""

    def __init__(self, samples: int) -> None:
        self.samples = samples
        self.error: Optional[str] = None
        self.dropped = 0
        self.started_at = 100.0
        self.stopped_at = 101.0
        self.cpu_s = 0.01

    def quality(self) -> Dict[str, Any]:
        return {"samples": self.samples}

    def alive(self) -> bool:
        return False


class StubClock:
    def controller(self, device_time: Optional[float]) -> Optional[float]:
        return device_time


def entry(samples: int, content: Optional[str], **spec: Any) -> Dict[str, Any]:
    workdir = tempfile.mkdtemp()
    if content is not None:
        with open(os.path.join(workdir, "system.jsonl"), "w") as out:
            out.write(content)
    run = ProfilerRun(
        {
            "name": "system",
            "status": "planned",
            "builtin": "system",
            "outputs": ["system.jsonl"],
            "max_bytes": 1 << 20,
            **spec,
        }
    )
    run.sampler = StubSampler(samples)  # type: ignore[assignment]
    lines: List[str] = []
    return run.entry(workdir, StubClock(), None, False, lines.append)  # type: ignore[arg-type]


def test_samples_and_a_clean_output_are_ok() -> None:
    found = entry(3, "{}\n")
    assert (found["status"], found["reason"]) == ("ok", None)


def test_no_sample_with_nothing_else_wrong_says_so() -> None:
    found = entry(0, "{}\n")
    assert (found["status"], found["reason"]) == ("failed", "no sample was taken")


def test_no_sample_names_the_problems_found() -> None:
    found = entry(0, None)
    assert (found["status"], found["reason"]) == (
        "failed",
        "output 'system.jsonl' was not written",
    )


def test_samples_with_a_problem_are_partial() -> None:
    found = entry(3, "")
    assert (found["status"], found["reason"]) == ("partial", "output 'system.jsonl' is empty")


def test_a_sampler_has_no_post_steps_in_its_entry() -> None:
    found = entry(3, "{}\n", post_argv=[["true"]])
    assert found["status"] == "ok"
    assert "post" not in found and "discarded" not in found
