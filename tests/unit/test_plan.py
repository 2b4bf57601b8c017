"""The plan decides, before anything runs, what each host will do and when."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.campaign.model import Campaign
from orchestrator.models import ClockOffset, HostFacts, SessionPlan
from orchestrator.profilers.base import ToolChoice
from orchestrator.stages.ansible import _Collector
from orchestrator.stages.flow import clock_offset, facts_from
from orchestrator.stages.plan import effective_lead, make_plan, provision_needed, reschedule
from tests.support.factories import TOOL, campaign, host_facts


def facts(**overrides: Any) -> HostFacts:
    return host_facts(**overrides)


def test_attach_plan_runs_pyspy_on_the_target_pid_with_the_campaign_options() -> None:
    plan = make_plan(campaign(), facts(), "run1", TOOL, t0=1000.0)
    [pyspy] = plan.profilers
    assert pyspy.status == "planned"
    binary = "/home/ops/.fleetprof/tools/py-spy/0.4.3/py-spy"
    assert pyspy.argv[:4] == [binary, "record", "--pid", "{pid}"]
    assert pyspy.argv[pyspy.argv.index("--rate") + 1] == "97"
    assert pyspy.argv[pyspy.argv.index("--duration") + 1] == "30"
    assert pyspy.argv[pyspy.argv.index("--format") + 1] == "raw"
    assert "--nonblocking" not in pyspy.argv
    assert plan.target.mode == "attach" and plan.target.process == "video_pipeline"
    assert plan.tools == {"py-spy": {"src": "/cache/py-spy", "sha256": "ab" * 32, "dest": binary}}
    assert plan.workdir == "/home/ops/.fleetprof/runs/unit/run1"
    assert plan.archive == "/home/ops/.fleetprof/runs/unit/run1.tar.gz"


def test_window_is_the_campaign_duration_from_the_common_start() -> None:
    plan = make_plan(campaign(duration="2m"), facts(), "r", TOOL, t0=1000.0)
    assert plan.t0_device == 1000.0
    assert plan.deadline_device == 1120.0


def test_a_clock_offset_larger_than_its_uncertainty_moves_the_device_start() -> None:
    skewed = facts(clock=ClockOffset(offset_s=3600.0, uncertainty_s=0.2))
    plan = make_plan(campaign(), skewed, "r", TOOL, t0=1000.0)
    assert plan.t0_device == 4600.0
    assert plan.clock_offset_s == 3600.0


def test_an_offset_within_its_uncertainty_is_not_applied() -> None:
    noisy = facts(clock=ClockOffset(offset_s=0.03, uncertainty_s=0.1))
    assert make_plan(campaign(), noisy, "r", TOOL, t0=1000.0).t0_device == 1000.0


def test_options_map_to_pyspy_flags() -> None:
    spec = {
        "rate": 19,
        "native": True,
        "idle": True,
        "gil": True,
        "subprocesses": True,
        "nonblocking": True,
    }
    plan = make_plan(campaign(profilers={"py-spy": spec}), facts(), "r", TOOL, t0=0.0)
    argv = plan.profilers[0].argv
    for flag in ("--native", "--idle", "--gil", "--subprocesses", "--nonblocking"):
        assert flag in argv
    assert argv[argv.index("--rate") + 1] == "19"


def test_attach_is_skipped_with_the_reason_where_ptrace_is_restricted() -> None:
    restricted = facts(ptrace_scope=1, can_attach=False, attach_reason="ptrace_scope=1 ...")
    plan = make_plan(campaign(), restricted, "r", TOOL, t0=0.0)
    assert not plan.runnable
    assert plan.profilers[0].status == "skipped"
    assert plan.skip_reason == "py-spy: ptrace_scope=1 ..."
    assert plan.tools == {}


def test_launch_where_ptrace_is_restricted_lets_pyspy_start_the_command() -> None:
    launch = {"launch": {"command": ["python3", "app.py", "--fast"], "env": {"A": "1"}}}
    restricted = facts(ptrace_scope=1, can_attach=False, attach_reason="restricted")
    plan = make_plan(campaign(target=launch), restricted, "r", TOOL, t0=0.0)
    assert plan.runnable
    assert plan.target.via_profiler is True
    launch_argv = plan.profilers[0].launch_argv
    assert launch_argv[-4:] == ["--", "python3", "app.py", "--fast"]
    assert "--pid" not in launch_argv
    assert plan.target.env == {"A": "1"}


def test_a_launchers_outputs_are_named_by_their_path_in_the_workdir() -> None:
    """A launcher starts in the program's directory (target.launch.cwd), so its own
    outputs are absolute paths into the workdir; the campaign's command is left as written
    (a literal "{workdir}" in it included), and attaching py-spy (run in the workdir)
    keeps its relative output."""
    command = ["python3", "app.py", "{workdir}/x"]
    launch = {"launch": {"command": command, "cwd": "/opt/app"}}
    restricted = facts(can_attach=False, attach_reason="restricted")
    plan = make_plan(campaign(target=launch), restricted, "r", TOOL, t0=0.0)
    [pyspy] = plan.profilers
    output = pyspy.launch_argv[pyspy.launch_argv.index("--output") + 1]
    assert output == f"{plan.workdir}/py-spy.folded"
    assert pyspy.launch_argv[-4:] == ["--", *command]
    assert pyspy.argv[pyspy.argv.index("--output") + 1] == "py-spy.folded"
    assert plan.target.cwd == "/opt/app"


def test_launch_with_ptrace_allowed_attaches_to_the_started_command() -> None:
    launch = {"launch": {"command": ["python3", "app.py"]}}
    plan = make_plan(campaign(target=launch), facts(), "r", TOOL, t0=0.0)
    assert plan.target.via_profiler is False


@pytest.mark.parametrize("scope", [3])
def test_ptrace_scope_3_skips_even_launch(scope: int) -> None:
    launch = {"launch": {"command": ["python3", "app.py"]}}
    locked = facts(ptrace_scope=scope, can_attach=False, attach_reason="scope 3")
    plan = make_plan(campaign(target=launch), locked, "r", TOOL, t0=0.0)
    assert not plan.runnable
    assert "ptrace_scope=3" in (plan.skip_reason or "")


def test_an_architecture_without_a_build_is_skipped_with_the_tool_cache_reason() -> None:
    none = {
        "py-spy": ToolChoice("0.4.3", None, None, "py-spy 0.4.3 publishes no build for riscv64")
    }
    plan = make_plan(campaign(), facts(arch="riscv64"), "r", none, t0=0.0)
    assert plan.skip_reason == "py-spy: py-spy 0.4.3 publishes no build for riscv64"


def test_reschedule_keeps_the_window_and_the_offset() -> None:
    skewed = facts(clock=ClockOffset(offset_s=-50.0, uncertainty_s=0.1))
    plan = make_plan(campaign(duration="10s"), skewed, "r", TOOL, t0=1000.0)
    moved = reschedule(plan, t0=2000.0)
    assert moved.t0_device == 1950.0
    assert moved.deadline_device == 1960.0


def test_plan_survives_its_json_round_trip() -> None:
    plan = make_plan(campaign(), facts(), "r", TOOL, t0=1000.0)
    assert SessionPlan.from_dict(plan.to_dict()) == plan


def test_clock_offset_is_measured_ntp_style_with_its_uncertainty() -> None:
    offset = clock_offset(device_time=105.0, started=10.0, finished=10.4)
    assert offset.offset_s == pytest.approx(94.8)
    assert offset.uncertainty_s == pytest.approx(0.2)
    assert offset.correction_s == pytest.approx(94.8)
    unknown = clock_offset(device_time=105.0, started=None, finished=10.4)
    assert unknown.correction_s == 0.0


def test_the_lead_is_lengthened_for_a_slow_device_and_never_shortened() -> None:
    quick = facts(clock=ClockOffset(offset_s=0.0, uncertainty_s=0.05))
    slow = facts(host="pi", clock=ClockOffset(offset_s=0.0, uncertainty_s=1.0))
    assert effective_lead(5.0, [quick]) == 5.0
    assert effective_lead(5.0, [quick, slow]) == pytest.approx(5 * 2.0 + 1.0)
    unmeasured = facts(clock=ClockOffset(offset_s=0.0, uncertainty_s=None))
    assert effective_lead(2.0, [unmeasured]) == 2.0


def test_the_lead_covers_the_time_a_play_took_to_reach_the_slowest_device() -> None:
    # A busy controller launches plays slowly: the session play will take about as long
    # as the preflight play did to reach the device, whatever the module round trip.
    quick = facts(clock=ClockOffset(offset_s=0.0, uncertainty_s=0.05), ready_s=1.0)
    late = facts(host="pi", clock=ClockOffset(offset_s=0.0, uncertainty_s=0.05), ready_s=4.0)
    assert effective_lead(4.0, [quick]) == 4.0
    assert effective_lead(4.0, [quick, late]) == pytest.approx(2.0 * 4.0 + 1.0)


def test_the_time_to_reach_a_device_is_its_first_answer_not_the_package_push() -> None:
    # A device without the device package answers the facts twice, around the push: the
    # session play will not push again, so its reach is the first answer's (T+2), not T+9.
    collector = _Collector("preflight", ["fleetprof_facts"], None)

    def event(kind: str, second: int, res: dict[str, Any], task: str) -> dict[str, Any]:
        return {
            "event": kind,
            "created": f"2026-12-07T10:00:{second:02d}.000000",
            "event_data": {
                "host": "pi",
                "task_action": "fleetprof_facts",
                "res": res,
                "task_uuid": task,
            },
        }

    collector(event("runner_on_ok", 2, {"bundle_missing": True}, "first"))
    collector(event("runner_on_start", 8, {}, "again"))
    described_facts = {k: v for k, v in asdict(facts()).items() if k not in ("clock", "ready_s")}
    collector(event("runner_on_ok", 9, {"facts": described_facts, "device_time": 0.0}, "again"))
    launched = datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC).timestamp()
    described = facts_from("pi", collector.hosts["pi"], launched_at=launched)
    assert described is not None and described.ready_s == 2.0
    assert described.clock.uncertainty_s == 0.5  # the clock from the answer that has it


def test_nsys_starts_the_command_itself_even_where_attaching_is_allowed() -> None:
    launch = {"launch": {"command": ["python3", "train.py"]}}
    gpu = facts(
        tools={"nsys": "/usr/local/cuda/bin/nsys"},
        gpu={"nvidia_driver": True, "jetson": False, "gpu_counters_admin_only": False},
    )
    plan = make_plan(campaign(target=launch, profilers={"nsys": {}}), gpu, "r", TOOL, t0=0.0)
    [nsys] = plan.profilers
    assert nsys.status == "planned", nsys.reason
    assert plan.target.via_profiler is True
    assert nsys.launch_argv[-3:] == ["--", "python3", "train.py"]


def test_every_campaign_profiler_key_has_a_profiler_module() -> None:
    from orchestrator import profilers
    from orchestrator.campaign.profiler_specs import ProfilersSpec

    keys = {field.validation_alias or name for name, field in ProfilersSpec.model_fields.items()}
    assert keys == set(profilers.REGISTRY)


def test_the_campaign_sets_the_device_grace() -> None:
    quick = Campaign.from_mapping(
        {
            "name": "g",
            "duration": "5s",
            "limits": {"grace": "3s"},
            "target": {"attach": {"pid": 42}},
        }
    )
    assert make_plan(quick, facts(), "run1", TOOL, t0=1000.0).grace_s == 3.0
    assert make_plan(campaign(), facts(), "run1", TOOL, t0=1000.0).grace_s == 10.0


def test_provision_is_needed_only_where_the_device_lacks_the_exact_tool() -> None:
    plain = facts()
    plan = make_plan(campaign(), plain, "r1", TOOL, t0=1000.0)
    dest = plan.tools["py-spy"]["dest"]
    assert provision_needed(plan, plain)  # not hashed: not there
    assert provision_needed(plan, facts(file_sha256={dest: "cd" * 32}))  # another build
    assert not provision_needed(plan, facts(file_sha256={dest: "ab" * 32}))
    # A profiler that asks for a package to be installed needs the play all the same.
    iotop = make_plan(
        campaign(profilers={"py-spy": {}, "iotop": {}}),
        facts(file_sha256={dest: "ab" * 32}, is_root=True),
        "r1",
        TOOL,
        t0=1000.0,
    )
    assert any("install_package" in p.options for p in iotop.profilers)
    assert provision_needed(iotop, facts(file_sha256={dest: "ab" * 32}))
