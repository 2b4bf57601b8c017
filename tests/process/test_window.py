"""Complete windows (orchestrator/stages/window.py): a host that lost more than
``limits.max_window_loss_pct`` of its window (late start, cut end, short probe
repetitions) is incomplete, with a reason a person can read; the rest is complete."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.campaign.messages import CampaignError
from orchestrator.campaign.model import Campaign
from orchestrator.stages.parse import parse_host
from orchestrator.stages.rundir import RunDir
from orchestrator.stages.window import incomplete_reason, probe_shortfalls
from tests.support.session import make_plan, python_profiler, run_module

T0 = 1_800_000_000.0


def manifest(
    late: float = 0.0, ended_by: str | None = "deadline", ended: float | None = None
) -> dict[str, Any]:
    return {
        "t0_device": T0,
        "deadline_device": T0 + 15.0,
        "late_by_s": late,
        "window": {
            "started_at_device": T0 + late,
            "ended_at_device": T0 + 15.0 if ended is None else T0 + ended,
            "ended_by": ended_by,
        },
    }


def test_a_whole_window_is_complete() -> None:
    assert incomplete_reason(manifest(late=0.02), None, 10.0) is None


def test_a_late_start_beyond_the_allowed_share_is_named() -> None:
    assert incomplete_reason(manifest(late=1.4), None, 10.0) is None  # 9.3 %
    assert incomplete_reason(manifest(late=10.7), None, 10.0) == (
        "started 10.7 s late in a 15 s window"
    )
    # The share is the campaign's: 0 counts any loss.
    assert incomplete_reason(manifest(late=0.2), None, 0.0) == (
        "started 0.2 s late in a 15 s window"
    )


def test_a_cut_end_is_named_with_why_but_a_program_that_finished_is_complete() -> None:
    assert incomplete_reason(manifest(ended_by="target exited", ended=3.2), None, 10.0) == (
        "cut short at +3.2 s of a 15 s window (target exited)"
    )
    assert incomplete_reason(manifest(ended_by="target failed", ended=6.0), None, 10.0) == (
        "cut short at +6.0 s of a 15 s window (target failed)"
    )
    assert incomplete_reason(manifest(ended_by="target finished", ended=3.0), None, 10.0) is None
    both = incomplete_reason(manifest(late=2.0, ended_by="stopped by SIGTERM", ended=9.0), None, 10)
    assert (
        both == "started 2.0 s late and cut short at +9.0 s of a 15 s window (stopped by SIGTERM)"
    )


def test_profilers_that_ran_their_own_course_early_are_complete_unless_one_failed() -> None:
    """py-spy's --duration counts ticks, and a sampler that fell behind catches up in
    bursts: on a 0.25-core fleet host at 19 Hz it had every tick of a 30 s window 4.7 s
    before the deadline, exit 0. That is a whole profile; a profiler that failed is not."""
    done = manifest(ended_by="profilers stopped", ended=10.3)
    done["profilers"] = {"py-spy": {"status": "ok"}, "iotop": {"status": "skipped"}}
    assert incomplete_reason(done, None, 10.0) is None
    done["profilers"]["py-spy"] = {"status": "failed"}
    assert incomplete_reason(done, None, 10.0) == (
        "cut short at +10.3 s of a 15 s window (profilers stopped)"
    )
    del done["profilers"]
    assert incomplete_reason(done, None, 10.0) is not None


def test_probe_repetitions_shorter_than_asked_are_cut_short() -> None:
    probe = {
        "nominal_s": 2.0,
        "results": {"cpu": {"budget_s": 1.35}, "memory": {"budget_s": 1.95}},
    }
    assert probe_shortfalls(probe, 10.0) == ["cpu ran 1.35 s instead of 2 s"]
    assert incomplete_reason(manifest(), probe, 10.0) == (
        "probe repetitions cut short: cpu ran 1.35 s instead of 2 s"
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"t0_device": "x"},
        {"t0_device": T0, "deadline_device": T0 - 1},
        {"t0_device": T0, "deadline_device": T0 + 1, "late_by_s": float("nan"), "window": []},
        {"t0_device": T0, "deadline_device": T0 + 1, "window": {"ended_by": 3}},
    ],
)
def test_untrusted_manifests_never_raise(bad: dict[str, Any]) -> None:
    assert incomplete_reason(bad, {"nominal_s": True, "results": [1]}, 10.0) is None


def test_the_campaign_key_has_a_default_and_is_validated() -> None:
    base = {"name": "w", "duration": 10, "target": {"attach": {"process": "x"}}}
    assert Campaign.model_validate(base).limits.max_window_loss_pct == 10.0
    limited = Campaign.model_validate({**base, "limits": {"max_window_loss_pct": 25}})
    assert limited.limits.max_window_loss_pct == 25.0
    for bad in (-1, 95, "10%", True):
        with pytest.raises((CampaignError, ValueError)) as error:
            Campaign.from_mapping({**base, "limits": {"max_window_loss_pct": bad}})
        assert "limits.max_window_loss_pct" in str(error.value)
        assert "percentage of the window from 0 to 90" in str(error.value)


def test_a_runner_that_starts_half_a_window_late_is_incomplete(tmp_path) -> None:
    """The runner itself, started after T0 (as a frozen or overloaded device does)."""
    writes = "import time; open('out.txt', 'w').write('data\\n'); time.sleep(5)"
    plan = make_plan(
        tmp_path,
        {"mode": "launch", "command": ["sleep", "30"]},
        [python_profiler("p", writes, outputs=["out.txt"])],
        lead=-1.5,
        window=3.0,
    )
    run = run_module(tmp_path, plan)
    assert run.manifest["late_by_s"] == pytest.approx(1.5, abs=0.3)
    reason = incomplete_reason(run.manifest, None, 10.0)
    assert reason is not None and reason.startswith("started 1.")
    assert reason.endswith(" s late in a 3 s window")


def parsed_host(tmp_path, manifest_data: dict[str, Any], mode: str = "attach") -> Any:
    """parse_host over a run directory holding only a device's manifest."""
    run = RunDir.create(tmp_path, "w", "20261207-000000-abcd")
    session = run.session_dir("edge-1")
    session.mkdir(parents=True)
    (session / "manifest.json").write_text(json.dumps(manifest_data))
    target = {"attach": {"process": "x"}} if mode == "attach" else {"launch": {"command": ["x"]}}
    campaign = Campaign.model_validate(
        {"name": "w", "duration": 15, "target": target, "profilers": {"system": {}}}
    )
    return parse_host(run, "edge-1", campaign).view


def test_report_hosts_carry_incomplete_and_a_late_host_is_partial(tmp_path) -> None:
    late = parsed_host(tmp_path / "a", {**manifest(late=10.7), "status": "ok", "reason": None})
    assert late.status == "partial"
    assert late.incomplete == "started 10.7 s late in a 15 s window"
    assert late.reason == "incomplete: started 10.7 s late in a 15 s window"
    assert late.to_dict()["incomplete"] == late.incomplete
    whole = parsed_host(tmp_path / "b", {**manifest(late=0.01), "status": "ok", "reason": None})
    assert (whole.status, whole.incomplete, whole.to_dict()["incomplete"]) == ("ok", None, None)


def test_a_launched_program_that_ended_by_itself_is_complete_with_its_run_time(tmp_path) -> None:
    ended = manifest(ended_by="target finished", ended=3.2)
    ended.update(
        status="ok",
        reason=None,
        target={
            "mode": "launch",
            "ended_by_itself": True,
            "exit_code": None,
            "exit_code_known": False,
            "started_at_device": None,
            "exited_at_device": T0 + 3.2,
        },
    )
    view = parsed_host(tmp_path, ended, mode="launch")
    assert (view.status, view.incomplete) == ("ok", None)
    assert view.metrics["target.runtime_s"] == pytest.approx(3.2)
    assert any("exit code is unknown" in note for note in view.data_quality)
