"""Probe targets: the campaign rules, the plan and probe.json parsing (the real probe:
tests/process/test_probe_run.py)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from orchestrator.campaign.messages import CampaignError
from orchestrator.campaign.model import Campaign
from orchestrator.models import SessionPlan
from orchestrator.stages.plan import make_plan
from orchestrator.stages.probe import PROBE_FILE, PROBE_SCHEMA, SECONDS_PER_KIND, parse_probe
from tests.support.factories import TOOL, host_facts
from tests.support.probes import probe_doc, write


def probe_campaign(target: Any = None, **overrides: Any) -> Campaign:
    data: dict[str, Any] = {
        "name": "probe",
        "duration": "10s",
        "target": {"probe": ["cpu", "memory", "disk"]} if target is None else target,
    }
    data.update(overrides)
    return Campaign.from_mapping(data, source=Path("probe.yml"))


def problem(target: Any, **overrides: Any) -> str:
    with pytest.raises(CampaignError) as err:
        probe_campaign(target, **overrides)
    return str(err.value)


# --------------------------------------------------------------------------- campaign


def test_a_probe_campaign_needs_no_profilers_and_reports_mode_probe() -> None:
    campaign = probe_campaign()
    assert campaign.target.mode == "probe"
    assert campaign.target.probe == ["cpu", "memory", "disk"]
    assert campaign.profilers.enabled == {}
    for empty in (None, {}):
        assert probe_campaign(profilers=empty).profilers.enabled == {}
    with_system = probe_campaign(profilers={"system": None})
    assert list(with_system.profilers.enabled) == ["system"]
    again = Campaign.from_mapping(campaign.model_dump(by_alias=True))
    assert again.target.probe == campaign.target.probe and again.profilers.enabled == {}


@pytest.mark.parametrize(
    ("target", "where", "expected"),
    [
        (
            {"probe": []},
            "target.probe",
            "non-empty list of benchmarks (cpu, memory, disk, network)",
        ),
        ({"probe": None}, "target.probe", "got null"),
        ({"probe": "cpu"}, "target.probe", "got a string ('cpu')"),
        (
            {"probe": ["cpu", "gpu"]},
            "target.probe[1]",
            "expected one of cpu, memory, disk, network",
        ),
        ({"probe": ["disk", "disk"]}, "target.probe[1]", "disk is listed twice"),
        (
            {"probe": ["cpu"], "attach": {"pid": 1}},
            "target",
            "expected exactly one of attach, launch or probe",
        ),
        (
            {"probe": ["cpu"], "launch": {"command": ["app"]}},
            "target",
            "got launch and probe",
        ),
    ],
)
def test_bad_probe_targets_are_named(target: Any, where: str, expected: str) -> None:
    message = problem(target)
    assert f"probe.yml: {where}: " in message
    assert expected in message


def test_attach_and_launch_still_need_a_profiler() -> None:
    message = problem({"attach": {"pid": 1}}, profilers={})
    assert "profilers: enable at least one profiler (available: py-spy" in message
    attach = probe_campaign({"attach": {"pid": 1}})
    assert list(attach.profilers.enabled) == ["py-spy"]


# --------------------------------------------------------------------------- plan


def test_the_plan_runs_the_probe_without_profilers_and_skips_pyspy() -> None:
    plan = make_plan(probe_campaign(), host_facts(), "run1", TOOL, t0=1000.0)
    assert plan.target.mode == "probe"
    assert plan.target.probe == ["cpu", "memory", "disk"]
    assert plan.target.probe_seconds == SECONDS_PER_KIND
    assert plan.profilers == [] and plan.runnable
    assert SessionPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan

    pyspy = make_plan(
        probe_campaign(profilers={"py-spy": None, "system": None}), host_facts(), "r", TOOL, 1000.0
    )
    by_name = {p.name: p for p in pyspy.profilers}
    assert by_name["py-spy"].status == "skipped"
    assert by_name["py-spy"].reason == "py-spy profiles a Python process; a probe target has none"
    assert by_name["system"].status == "planned"
    assert pyspy.runnable


def test_a_short_window_scales_each_benchmark_down() -> None:
    plan = make_plan(probe_campaign(duration="1.5s"), host_facts(), "run1", TOOL, t0=1000.0)
    assert plan.target.probe_seconds is not None
    assert plan.target.probe_seconds * 3 <= 1.5
    assert plan.target.probe_seconds < SECONDS_PER_KIND


# --------------------------------------------------------------------------- parse


def test_medians_and_coefficients_of_variation(tmp_path: Path) -> None:
    mib = 1024 * 1024
    doc = probe_doc(
        cpu={
            "budget_s": 2.0,
            "single": {"reps": [{"iterations": n, "seconds": 1.0} for n in (90, 100, 110)]},
            "all": {
                "reps": [
                    {"workers": [{"iterations": 100, "seconds": 1.0}] * 2},
                    {"workers": [{"iterations": 200, "seconds": 2.0}] * 2},
                ]
            },
        },
        memory={"budget_s": 2.0, "copy": {"reps": [{"bytes": 10 * mib, "seconds": 0.5}] * 3}},
        disk={
            "budget_s": 0.5,
            "cache_dropped": False,
            "write": {"reps": [{"bytes": mib, "seconds": 0.5}]},
            "read": {"reps": [{"bytes": 4 * mib, "seconds": 1.0}] * 2},
        },
    )
    result = parse_probe(write(tmp_path, doc), ["cpu", "memory", "disk"])
    metrics = result.metrics
    assert metrics["probe.cpu.single_ops_per_s"] == 100.0
    assert metrics["probe.cpu.single_ops_per_s_cv"] == 0.1
    assert metrics["probe.cpu.all_ops_per_s"] == 200.0
    assert metrics["probe.cpu.all_ops_per_s_cv"] == 0.0
    assert metrics["probe.memory.copy_mb_per_s"] == 20.0
    assert metrics["probe.disk.write_mb_per_s"] == 2.0
    assert "probe.disk.write_mb_per_s_cv" not in metrics  # one repetition
    assert metrics["probe.disk.read_mb_per_s"] == 4.0
    # The repetitions behind each figure, for the nightly check's tests.
    assert result.samples["probe.disk.read_mb_per_s"] == [4.0, 4.0]
    assert result.samples["probe.disk.write_mb_per_s"] == [2.0]
    assert statistics.median(result.samples["probe.cpu.single_ops_per_s"]) == 100.0
    notes = " | ".join(result.data_quality)
    assert "probe disk: ran 0.50 s instead of 2 s" in notes
    assert "page cache could not be dropped" in notes


@pytest.mark.parametrize(
    "content",
    [
        "not json{",
        "[1, 2]",
        json.dumps({"schema": "other/1", "results": {}}),
        json.dumps({"schema": PROBE_SCHEMA, "results": "cpu"}),
        json.dumps(probe_doc(cpu="fast")),
        json.dumps(probe_doc(cpu={"single": {"reps": "many"}, "all": {"reps": [None, 3]}})),
        json.dumps(
            probe_doc(
                cpu={
                    "error": {"nested": True},
                    "single": {
                        "reps": [
                            {"iterations": True, "seconds": 1.0},
                            {"iterations": "5", "seconds": 1.0},
                            {"iterations": 5, "seconds": 0},
                            {"iterations": -5, "seconds": 1.0},
                            {"iterations": 1e400, "seconds": 1.0},
                        ]
                    },
                    "all": {"reps": [{"workers": [{"iterations": 1, "seconds": -1}]}]},
                }
            )
        ),
        '{"schema": "fleetprof.probe/1", "results": {"cpu": {"single": {"reps": '
        '[{"iterations": NaN, "seconds": 1}, {"iterations": Infinity, "seconds": 1}]}}}}',
        "[" * 100_000,
    ],
)
def test_garbage_gives_no_metrics_and_a_note(tmp_path: Path, content: str) -> None:
    result = parse_probe(write(tmp_path, content), ["cpu"])
    assert result.metrics == {}
    assert result.data_quality


def test_a_missing_or_huge_file_is_a_note(tmp_path: Path) -> None:
    assert parse_probe(tmp_path, ["cpu"]).data_quality == [f"probe: no {PROBE_FILE} came back"]
    write(tmp_path, " " * (2 * 1024 * 1024))
    assert "larger than" in parse_probe(tmp_path, ["cpu"]).data_quality[0]


# --------------------------------------------------------------------------- runner


def test_a_late_all_core_worker_counts_over_the_whole_window(tmp_path: Path) -> None:
    # A worker still starting up (a throttled device) ran one short burst at the end of
    # the window: it adds its iterations, not its burst rate.
    workers = [
        {"iterations": 100, "seconds": 1.0, "late_s": 0.0},
        {"iterations": 10, "seconds": 0.001, "late_s": 0.999},
    ]
    doc = probe_doc(cpu={"single": {"reps": []}, "all": {"reps": [{"workers": workers}] * 2}})
    result = parse_probe(write(tmp_path, doc), ["cpu"])
    assert result.metrics["probe.cpu.all_ops_per_s"] == 110.0


def test_network_medians_and_what_a_device_cannot_make_it_say(tmp_path: Path) -> None:
    mib = 1 << 20
    doc = probe_doc(
        network={
            "budget_s": 2.0,
            "error": "the peer 10.0.0.5:4000 did not answer in time",
            "rtt": {
                "reps": [
                    {"rtt_s": [0.001, 0.002, 0.009]},  # median 2 ms
                    {"rtt_s": [0.003]},
                    {"rtt_s": [0.001, -1]},  # malformed: skipped
                    {"rtt_s": "fast"},
                ]
            },
            "send": {
                "reps": [
                    {"bytes": 100 * mib, "sent": 100 * mib, "seconds": 1.0},
                    {"bytes": 50 * mib, "sent": 60 * mib, "seconds": 1.0},
                    {"bytes": 80 * mib, "seconds": 0},  # no time: skipped
                ]
            },
        }
    )
    parsed = parse_probe(write(tmp_path, doc), ["network"])
    assert parsed.metrics["probe.network.rtt_ms"] == 2.5  # median of 2 and 3 ms
    assert parsed.metrics["probe.network.send_mb_per_s"] == 75.0
    assert parsed.samples["probe.network.rtt_ms"] == [2.0, 3.0]
    assert "probe network: the peer 10.0.0.5:4000 did not answer in time" in parsed.data_quality
    assert "probe.network.rtt_ms: 2 malformed repetitions skipped" in parsed.data_quality
    assert "probe.network.send_mb_per_s: 1 malformed repetitions skipped" in parsed.data_quality


def test_a_device_peer_that_could_not_listen_says_so(tmp_path: Path) -> None:
    doc = probe_doc(cpu={"single": {"reps": []}, "all": {"reps": []}})
    doc["serving"] = {"port": 45210, "error": "cannot listen on port 45210: Address in use"}
    parsed = parse_probe(write(tmp_path, doc), ["cpu"])
    assert "probe network peer: cannot listen on port 45210: Address in use" in parsed.data_quality
