"""The check's re-measure of flagged hosts: a re-measure that brought nothing back from a
host (its session started after the window had closed on a busy controller) is run once
more with twice the lead, instead of clearing the finding unmeasured."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.check.run import remeasure, unmeasured


def campaign() -> Campaign:
    return Campaign.from_mapping(
        {
            "name": "nightly",
            "duration": "5s",
            "start": {"lead": "4s"},
            "target": {"probe": ["cpu"], "repeats": 5},
            "check": {"confirm": {"duration": "3s"}},
        },
        source=Path("nightly.yml"),
    )


def host(name: str, measured: bool) -> dict[str, Any]:
    if not measured:
        return {"name": name, "status": "failed", "reason": "the session window had closed"}
    return {"name": name, "status": "ok", "samples": {"probe.cpu.single_ops_per_s": [1.0, 2.0]}}


class FakeExecute:
    """Answers each run with the next of ``answers`` (host -> measured?)."""

    def __init__(self, *answers: dict[str, bool], interrupted: bool = False) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[float, float, str | None, str]] = []
        self.interrupted = interrupted

    def __call__(self, run: Campaign, limit: str | None, kind: str) -> Any:
        self.calls.append((run.duration_s, run.start.lead_s, limit, kind))
        answer = self.answers.pop(0)
        report = {"run_id": f"r{len(self.calls)}", "hosts": [host(h, m) for h, m in answer.items()]}
        run_dir = SimpleNamespace(run_id=report["run_id"])
        return SimpleNamespace(report=report, interrupted=self.interrupted, run=run_dir)


def test_a_remeasure_that_measured_every_flagged_host_runs_once() -> None:
    notes: list[str] = []
    execute = FakeExecute({"a": True, "b": True})
    outcome = remeasure(campaign(), ["a", "b"], execute, notes.append)
    assert execute.calls == [(3.0, 4.0, "a,b", "confirm")]
    assert outcome.report["run_id"] == "r1" and notes == []


def test_a_host_the_remeasure_missed_is_measured_again_with_twice_the_lead() -> None:
    notes: list[str] = []
    execute = FakeExecute({"a": True, "b": False}, {"a": True, "b": True})
    outcome = remeasure(campaign(), ["a", "b"], execute, notes.append)
    assert execute.calls == [(3.0, 4.0, "a,b", "confirm"), (3.0, 8.0, "a,b", "confirm")]
    assert outcome.report["run_id"] == "r2"
    assert notes == ["the re-measure brought nothing back from b: once more, with a 8s lead"]
    assert unmeasured(outcome.report, ["a", "b"]) == []


def test_a_retry_that_measured_no_more_keeps_the_first_remeasure() -> None:
    execute = FakeExecute({"a": True, "b": False}, {"a": False, "b": False})
    outcome = remeasure(campaign(), ["a", "b"], execute, lambda _: None)
    assert len(execute.calls) == 2 and outcome.report["run_id"] == "r1"


def test_an_interrupted_remeasure_is_not_retried() -> None:
    execute = FakeExecute({"a": False}, interrupted=True)
    outcome = remeasure(campaign(), ["a"], execute, lambda _: None)
    assert len(execute.calls) == 1 and outcome.interrupted
