"""Probe targets: the campaign rules, the plan, probe.json parsing, and a real short probe."""

from __future__ import annotations

import json
import statistics
import tarfile
from pathlib import Path
from typing import Any

import pytest

from orchestrator.campaign.messages import CampaignError
from orchestrator.campaign.model import Campaign
from orchestrator.models import SessionPlan
from orchestrator.stages.plan import make_plan
from orchestrator.stages.probe import PROBE_FILE, PROBE_SCHEMA, SECONDS_PER_KIND, parse_probe
from tests.unit.test_plan import TOOL, facts
from tests.unit.test_session_runner import make_plan as runner_plan
from tests.unit.test_session_runner import run_module

ALL_METRICS = (
    "probe.cpu.single_ops_per_s",
    "probe.cpu.all_ops_per_s",
    "probe.memory.copy_mb_per_s",
    "probe.disk.write_mb_per_s",
    "probe.disk.read_mb_per_s",
)


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
        ({"probe": []}, "target.probe", "non-empty list of benchmarks (cpu, memory, disk)"),
        ({"probe": None}, "target.probe", "got null"),
        ({"probe": "cpu"}, "target.probe", "got a string ('cpu')"),
        ({"probe": ["cpu", "gpu"]}, "target.probe[1]", "expected one of cpu, memory, disk"),
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
    plan = make_plan(probe_campaign(), facts(), "run1", TOOL, t0=1000.0)
    assert plan.target.mode == "probe"
    assert plan.target.probe == ["cpu", "memory", "disk"]
    assert plan.target.probe_seconds == SECONDS_PER_KIND
    assert plan.profilers == [] and plan.runnable
    assert SessionPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan

    pyspy = make_plan(
        probe_campaign(profilers={"py-spy": None, "system": None}), facts(), "r", TOOL, 1000.0
    )
    by_name = {p.name: p for p in pyspy.profilers}
    assert by_name["py-spy"].status == "skipped"
    assert by_name["py-spy"].reason == "py-spy profiles a Python process; a probe target has none"
    assert by_name["system"].status == "planned"
    assert pyspy.runnable


def test_a_short_window_scales_each_benchmark_down() -> None:
    plan = make_plan(probe_campaign(duration="1.5s"), facts(), "run1", TOOL, t0=1000.0)
    assert plan.target.probe_seconds is not None
    assert plan.target.probe_seconds * 3 <= 1.5
    assert plan.target.probe_seconds < SECONDS_PER_KIND


# --------------------------------------------------------------------------- parse


def probe_doc(**results: Any) -> dict[str, Any]:
    return {"schema": PROBE_SCHEMA, "nominal_s": 2.0, "results": results}


def write(tmp_path: Path, data: Any) -> Path:
    text = data if isinstance(data, str) else json.dumps(data)
    (tmp_path / PROBE_FILE).write_text(text)
    return tmp_path


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


def probe_target(kinds: list[str], seconds: float | None, repeats: int = 3) -> dict[str, Any]:
    return {"mode": "probe", "probe": kinds, "probe_seconds": seconds, "probe_repeats": repeats}


def unpack(run: Any, tmp_path: Path) -> Path:
    out = tmp_path / "unpacked"
    out.mkdir()
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(out, filter="data")
    return out


def test_the_runner_runs_a_real_short_probe(tmp_path: Path) -> None:
    plan = runner_plan(tmp_path, probe_target(["cpu", "memory", "disk"], 0.3), [], window=2.0)
    run = run_module(tmp_path, plan)
    assert run.returncode == 0, run.result
    assert run.result["status"] == "ok", run.result["reason"]
    assert run.finished_at < plan["deadline_device"] + 1.0
    manifest = run.manifest
    assert manifest["target"]["mode"] == "probe"
    assert manifest["target"]["probe"] == ["cpu", "memory", "disk"]
    assert sorted(run.members()) == ["manifest.json", "probe.json", "runner.log"]
    doc = json.loads(run.read("probe.json"))
    results = doc["results"]
    assert doc["reps"] == 3  # the plan's probe_repeats
    assert [len(results["cpu"][part]["reps"]) for part in ("single", "all")] == [3, 3]
    assert len(results["cpu"]["all"]["reps"][0]["workers"]) == doc["cpu_count"]
    assert len(results["memory"]["copy"]["reps"]) == 3
    assert len(results["disk"]["write"]["reps"]) == len(results["disk"]["read"]["reps"]) == 3
    for kind in ("cpu", "memory", "disk"):
        assert results[kind]["error"] is None
        assert results[kind]["ran_s"] < 0.6
    workdir = Path(plan["workdir"])
    assert not (workdir / ".probe-disk.tmp").exists()
    assert not list(workdir.glob("probe-cpu-*"))
    parsed = parse_probe(unpack(run, tmp_path), ["cpu", "memory", "disk"])
    for metric in ALL_METRICS:
        assert parsed.metrics[metric] > 0, metric
        assert parsed.metrics[f"{metric}_cv"] >= 0, metric
    # All cores together do at least most of what one does, even with 50 ms repetitions on
    # a loaded machine (on a quiet one: about cpu_count times as much).
    assert (
        parsed.metrics["probe.cpu.all_ops_per_s"]
        > parsed.metrics["probe.cpu.single_ops_per_s"] * 0.6
    )


def test_the_probe_stops_by_the_deadline_when_the_window_is_short(tmp_path: Path) -> None:
    plan = runner_plan(tmp_path, probe_target(["cpu", "memory"], 5.0), [], window=1.0)
    run = run_module(tmp_path, plan)
    assert run.result["status"] == "ok", run.result["reason"]
    assert run.finished_at < plan["deadline_device"] + 0.5
    doc = json.loads(run.read("probe.json"))
    assert all(doc["results"][k]["budget_s"] < 0.5 for k in ("cpu", "memory"))
    parsed = parse_probe(unpack(run, tmp_path), ["cpu", "memory"])
    assert "probe.cpu.single_ops_per_s" in parsed.metrics
    assert any("instead of 5 s" in note for note in parsed.data_quality)


def test_the_runner_rejects_a_bad_probe_target(tmp_path: Path) -> None:
    plan = runner_plan(tmp_path, probe_target(["cpu", "cpu", "gpu"], None), [])
    run = run_module(tmp_path, plan)
    assert run.returncode == 1
    assert "probe target needs probe" in run.result["msg"]


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
