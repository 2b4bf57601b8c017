"""Complete windows only (docs/check.md): a host whose measurement window was incomplete
(report.json ``hosts[].incomplete``, a reason; null or absent when complete) is neither
flagged nor used as a baseline; the check reports it as incomplete and exits 3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.analysis.fleet import HostView, find_outliers
from orchestrator.campaign.model import CheckSpec
from orchestrator.check.judge import (
    EXIT_CODES,
    Baseline,
    check_document,
    confirm_findings,
    incomplete_reason,
    judge_run,
    verdict,
)
from orchestrator.check.run import choose_baseline
from orchestrator.check.store import HistoryStore

CPU = "probe.cpu.all_ops_per_s"
SPEC = CheckSpec()
LATE = "probe started 10.7 s late in a 15 s window; ran 1.35 s instead of 2 s"


def host(name: str, center: float, incomplete: str | None = None) -> dict[str, Any]:
    reps = [center * (1 + d) for d in (-0.01, 0.004, 0.0, 0.008, -0.006)]
    entry: dict[str, Any] = {
        "name": name,
        "hw_model": "board",
        "group": "board",
        "status": "partial" if incomplete else "ok",
        "reason": incomplete,
        "metrics": {CPU: center},
        "samples": {CPU: reps},
    }
    if incomplete is not None:
        entry["incomplete"] = incomplete
    return entry


def report(run_id: str, hosts: list[dict[str, Any]], outliers: Any = ()) -> dict[str, Any]:
    return {
        "schema": "fleetprof.report/1",
        "campaign": "nightly",
        "run_id": run_id,
        "started_at": f"2026-11-2{run_id[-1]}T02:00:00+00:00",
        "duration_s": 15.0,
        "hosts": hosts,
        "outliers": list(outliers),
    }


BASE = report("r1", [host(f"b{i}", 2.07e6) for i in range(4)])
BASELINE = Baseline(
    "r1",
    "pinned",
    None,
    {h["name"]: h["samples"] for h in BASE["hosts"]},
    {h["name"]: "ok" for h in BASE["hosts"]},
)


def outlier(name: str, value: float) -> dict[str, Any]:
    return {
        "host": name,
        "hw_model": "board",
        "metric": CPU,
        "value": value,
        "group_median": 2.07e6,
        "robust_z": -9.0,
        "kind": "metric",
    }


def test_the_issues_late_hosts_are_incomplete_not_regressed() -> None:
    # Two hosts of four started 10 s late: 2,662 ops/s against a baseline of 2.07e6.
    now = report(
        "r2",
        [host("b0", 2.07e6), host("b1", 2.06e6), host("b2", 2662.0, LATE), host("b3", 2731, LATE)],
        # An older report builder may still have listed them as outliers.
        [outlier("b2", 2662.0), outlier("b3", 2731.0)],
    )
    judgement = judge_run(now, BASELINE, SPEC)
    assert judgement.regressions == [] and judgement.outliers == []
    assert judgement.tests == 2  # b0 and b1 only
    assert [(f.kind, f.host) for f in judgement.findings] == [
        ("incomplete", "b2"),
        ("incomplete", "b3"),
    ]
    assert LATE in judgement.findings[0].message
    assert judgement.flagged_hosts == []  # nothing to re-measure
    assert verdict(judgement) == "incomplete" and EXIT_CODES["incomplete"] == 3
    document = check_document(
        judgement, now, BASELINE, SPEC, confirm_run=None, stability=(1, {}), history={}
    )
    hosts = {h["name"]: h for h in document["check"]["hosts"]}
    assert hosts["b2"]["incomplete"] == LATE and hosts["b0"]["incomplete"] is None
    assert document["check"]["exit_code"] == 3 and document["regressions"] == []


def test_a_real_regression_beside_an_incomplete_host_is_still_found() -> None:
    now = report("r2", [host("b0", 2.07e6), host("b1", 1.0e6), host("b2", 2662.0, LATE)])
    judgement = judge_run(now, BASELINE, SPEC)
    assert [(r.host, r.metric) for r in judgement.regressions] == [("b1", CPU)]
    assert verdict(judgement) == "findings"


def test_a_report_without_the_key_is_complete() -> None:
    assert incomplete_reason({"name": "x"}) is None
    assert incomplete_reason({"incomplete": None}) is None
    assert incomplete_reason({"incomplete": "cut short"}) == "cut short"
    assert incomplete_reason({"incomplete": True}) == "incomplete measurement window"
    now = report("r2", [host(f"b{i}", 2.07e6) for i in range(4)])
    assert judge_run(now, BASELINE, SPEC).tests == 4


def test_an_incomplete_remeasure_confirms_nothing() -> None:
    now = report(
        "r2",
        [host("b0", 2.07e6), host("b1", 2.06e6), host("b2", 1.0e6), host("b3", 2.08e6)],
        [outlier("b2", 1.0e6)],
    )
    judgement = judge_run(now, BASELINE, SPEC)
    assert {f.kind for f in judgement.findings} == {"outlier", "regression"}
    remeasure = report("c1", [host("b2", 900.0, "cut short: ran 0.4 s of 2 s")])
    confirmed = confirm_findings(judgement, now, remeasure, BASELINE, SPEC, threshold=3.5)
    assert not any(f.confirmed for f in confirmed.findings)


def test_an_incomplete_host_of_the_baseline_run_is_not_a_baseline(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = report("r1", [host("b0", 2.07e6), host("b1", 2.07e6), host("b2", 2662.0, LATE)])
    run_dir = out / "nightly" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "report.json").write_text(json.dumps(first))
    with HistoryStore.open(out) as store:
        store.record_run(first, run_dir, kind="check")
        store.set_baseline("nightly", "r1")
        assert store.incomplete_hosts("r1") == {"b2": LATE}
        baseline = choose_baseline(store, "nightly", None, "r2")
    assert sorted(baseline.samples) == ["b0", "b1"]
    assert baseline.incomplete == {"b2": LATE}
    assert baseline.to_dict()["incomplete_hosts"] == ["b2"]
    # b2 is fine now, but has no baseline to compare with: not tested, not regressed.
    now = report("r2", [host("b0", 2.07e6), host("b1", 2.07e6), host("b2", 2.0e6)])
    judgement = judge_run(now, baseline, SPEC)
    assert judgement.tests == 2 and judgement.regressions == []
    assert verdict(judgement) == "pass"


def test_the_fleet_report_does_not_score_an_incomplete_host() -> None:
    views = [
        HostView(f"b{i}", "board", "x86_64", "ok", metrics={CPU: 2.07e6 + i}) for i in range(3)
    ]
    late = HostView("b3", "board", "x86_64", "partial", metrics={CPU: 2662.0})
    assert [o.host for o in find_outliers([*views, late], {}, 3.5)] == ["b3"]
    vars(late)["incomplete"] = LATE  # hosts[].incomplete, a field the runner side adds
    assert find_outliers([*views, late], {}, 3.5) == []
