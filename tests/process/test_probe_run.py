"""The device runner runs a real short probe: its repetitions, its deadline, its refusals."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from orchestrator.stages.probe import parse_probe
from tests.support.session import make_plan as runner_plan
from tests.support.session import run_module

ALL_METRICS = (
    "probe.cpu.single_ops_per_s",
    "probe.cpu.all_ops_per_s",
    "probe.memory.copy_mb_per_s",
    "probe.disk.write_mb_per_s",
    "probe.disk.read_mb_per_s",
)


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
