"""`fleetprof compare` and `fleetprof check` on the Python toolbox's metrics (cprofile.*,
tracemalloc.*): two runs whose tracemalloc growth differs show the change and say which way
is better, by the metric's direction (orchestrator/analysis/directions.py: less growth is
better); check flags a host whose growth stands out from its group, on that side only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.analysis.fleet import HostView, build_report
from orchestrator.campaign.model import CheckSpec
from orchestrator.check.compare import compare_metrics, compare_runs, verdict
from orchestrator.check.judge import Baseline, judge_run, judged_metrics
from orchestrator.check.judge import verdict as verdict_of
from orchestrator.cli.compare import compare_command

META = {"campaign": "leak", "run_id": "r1", "started_at": "t", "duration_s": 5.0}

BEFORE = {
    "tracemalloc.growth_mb": 12.0,  # the leak
    "tracemalloc.peak_mb": 40.0,
    "tracemalloc.snapshots": 8.0,
    "cprofile.us_per_call": 0.80,
    "cprofile.tottime_s": 9.0,
    "cprofile.calls": 1.2e7,
}
AFTER = {  # the leak fixed; Python calls a little slower
    "tracemalloc.growth_mb": 0.5,
    "tracemalloc.peak_mb": 28.0,
    "tracemalloc.snapshots": 8.0,
    "cprofile.us_per_call": 0.95,
    "cprofile.tottime_s": 9.5,
    "cprofile.calls": 1.0e7,
}


def run_dir(path: Path, run_id: str, metrics: dict[str, float]) -> Path:
    path.mkdir()
    (path / "run.json").write_text(json.dumps({"campaign": "leak", "run_id": run_id}))
    hosts = [
        {"name": name, "hw_model": "box", "status": "ok", "incomplete": None, "metrics": metrics}
        for name in ("edge-1", "edge-2")
    ]
    report = {
        "schema": "fleetprof.report/1",
        "campaign": "leak",
        "run_id": run_id,
        "started_at": "2026-12-07T18:00:00+00:00",
        "hosts": hosts,
    }
    (path / "report.json").write_text(json.dumps(report))
    return path


def by_metric(changes: list[Any]) -> dict[str, Any]:
    return {c["metric"] if isinstance(c, dict) else c.metric: c for c in changes}


def test_less_growth_is_better_and_more_is_worse() -> None:
    fixed = by_metric(compare_metrics(BEFORE, AFTER))
    growth = fixed["tracemalloc.growth_mb"]
    assert (growth.delta, growth.changed, growth.verdict) == (-11.5, True, "better")
    assert fixed["cprofile.us_per_call"].verdict == "worse"  # lower is better
    # Bookkeeping and load descriptions have no better side.
    assert fixed["tracemalloc.snapshots"].verdict is None  # and it held
    assert fixed["cprofile.tottime_s"].verdict is None
    assert fixed["cprofile.calls"].verdict is None
    leaking = by_metric(compare_metrics(AFTER, BEFORE))
    assert leaking["tracemalloc.growth_mb"].verdict == "worse"
    assert leaking["cprofile.us_per_call"].verdict == "better"


@pytest.mark.parametrize(
    ("metric", "delta", "expected"),
    [
        ("workload.fps", 2.0, "better"),
        ("workload.fps", -2.0, "worse"),
        ("tracemalloc.growth_mb_per_min", 1.0, "worse"),
        ("tracemalloc.growth_mb", 0.0, None),
        ("system.cpu_pct", 5.0, None),
    ],
)
def test_the_verdict_follows_the_metrics_direction(metric, delta, expected) -> None:
    assert verdict(metric, delta) == expected


def test_compare_runs_reports_each_hosts_growth_change_with_its_verdict(tmp_path) -> None:
    a = json.loads((run_dir(tmp_path / "a", "r1", BEFORE) / "report.json").read_text())
    b = json.loads((run_dir(tmp_path / "b", "r2", AFTER) / "report.json").read_text())
    result = compare_runs(a, b, {}, {}).to_dict()
    for host in result["hosts"]:
        growth = by_metric(host["metrics"])["tracemalloc.growth_mb"]
        assert (growth["a"], growth["b"], growth["verdict"]) == (12.0, 0.5, "better")
        assert growth["delta_pct"] == pytest.approx(-95.833, abs=1e-3)


def test_the_command_shows_the_growth_going_down_as_better(tmp_path) -> None:
    before = run_dir(tmp_path / "before", "r1", BEFORE)
    after = run_dir(tmp_path / "after", "r2", AFTER)
    runner = CliRunner()

    as_json = runner.invoke(compare_command, [str(before), str(after), "--json"])
    assert as_json.exit_code == 0, as_json.output
    hosts = json.loads(as_json.stdout)["hosts"]
    assert [h["host"] for h in hosts] == ["edge-1", "edge-2"]
    growth = by_metric(hosts[0]["metrics"])["tracemalloc.growth_mb"]
    assert (growth["delta"], growth["changed"], growth["verdict"]) == (-11.5, True, "better")

    table = runner.invoke(
        compare_command, [str(after), str(before)], env={"NO_COLOR": "1", "COLUMNS": "200"}
    )
    assert table.exit_code == 0, table.output
    rows = table.stdout.splitlines()
    growth_rows = [row for row in rows if "tracemalloc.growth_mb" in row]  # one per host
    assert len(growth_rows) == 2
    assert all("+11.5" in row and "worse" in row for row in growth_rows)
    call_rows = [row for row in rows if "cprofile.us_per_call" in row]
    assert len(call_rows) == 2 and all("better" in row for row in call_rows)


def _fleet_report(growth: dict[str, float], per_call: dict[str, float]) -> dict[str, Any]:
    hosts = [
        HostView(
            name,
            "box",
            "x86_64",
            "ok",
            metrics={"tracemalloc.growth_mb": growth[name], "cprofile.us_per_call": per_call[name]},
        )
        for name in growth
    ]
    return build_report({**META, "run_id": "r2"}, hosts)


def test_check_judges_the_python_metrics_outliers_on_their_bad_side_only() -> None:
    """fleetprof check on cprofile.* and tracemalloc.* (one value per run, no repetitions:
    judged by outliers in their group, on the side the direction calls bad)."""
    growth = {"e1": 1.0, "e2": 1.1, "e3": 0.9, "e4": 40.0, "e5": 0.0}  # e4 leaks; e5 none
    per_call = {"e1": 0.80, "e2": 0.81, "e3": 0.79, "e4": 0.80, "e5": 2.40}  # e5: slow calls
    report = _fleet_report(growth, per_call)
    spec = CheckSpec(metrics=["tracemalloc.growth_mb", "cprofile.us_per_call"])

    judgement = judge_run(report, Baseline(None, "none"), spec)

    found = {(f.kind, f.host, f.metric) for f in judgement.findings}
    assert found == {
        ("outlier", "e4", "tracemalloc.growth_mb"),
        ("outlier", "e5", "cprofile.us_per_call"),
    }  # e5's zero growth is no finding: less growth is better
    assert judgement.tests == 0  # no repetitions behind them: no regression test
    assert verdict_of(judgement) == "findings"
    message = next(f.message for f in judgement.findings if f.host == "e4")
    assert message.startswith("tracemalloc.growth_mb 40 against its group median 1")
    # Without check.metrics, check judges the metrics with repetitions only: none here.
    assert judged_metrics(report, CheckSpec()) == []
