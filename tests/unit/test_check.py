"""fleetprof check's judgement (pure) and its choice of baseline (over a real store)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.campaign.model import CheckSpec, ConfirmSpec
from orchestrator.check.judge import (
    Baseline,
    check_document,
    confirm_findings,
    describe,
    judge_run,
    judged_metrics,
    verdict,
)
from orchestrator.check.run import BaselineError, choose_baseline, pin_baseline
from orchestrator.check.store import HistoryStore

CPU = "probe.cpu.single_ops_per_s"
SPEC = CheckSpec()


def reps(center: float, seed: int, n: int = 6) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-0.02, 0.02)) for _ in range(n)]


def host(name: str, center: float, seed: int, status: str = "ok") -> dict[str, Any]:
    samples = reps(center, seed)
    return {
        "name": name,
        "hw_model": "board",
        "group": "board",
        "status": status,
        "reason": None if status == "ok" else "ssh: connection refused",
        "metrics": {CPU: sorted(samples)[len(samples) // 2]},
        "samples": {CPU: samples},
    }


def report(run_id: str, hosts: list[dict[str, Any]], outliers: Any = ()) -> dict[str, Any]:
    return {
        "schema": "fleetprof.report/1",
        "campaign": "nightly",
        "run_id": run_id,
        "started_at": f"2026-11-2{run_id[-1]}T02:00:00+00:00",
        "duration_s": 5.0,
        "summary": {"hosts": len(hosts), "ok": sum(h["status"] == "ok" for h in hosts)},
        "hosts": hosts,
        "groups": [{"hw_model": "board", "metrics": {CPU: {"median": 1000.0, "mad": 10.0}}}],
        "outliers": list(outliers),
    }


BASE = report("r1", [host(f"b{i}", 1000, i) for i in range(4)])
BASELINE = Baseline(
    "r1",
    "pinned",
    None,
    {h["name"]: h["samples"] for h in BASE["hosts"]},
    {h["name"]: "ok" for h in BASE["hosts"]},
)


def test_an_unchanged_fleet_passes() -> None:
    now = report("r2", [host(f"b{i}", 1000, 10 + i) for i in range(4)])
    judgement = judge_run(now, BASELINE, SPEC)
    assert judgement.findings == [] and judgement.tests == 4
    assert verdict(judgement) == "pass"


def test_a_slow_host_is_a_regression_and_an_outlier_confirmed_by_the_remeasure() -> None:
    slow = host("b2", 500, 20)
    outlier = {
        "host": "b2",
        "hw_model": "board",
        "metric": CPU,
        "value": 500.0,
        "group_median": 1000.0,
        "robust_z": -33.7,
        "kind": "metric",
    }
    now = report(
        "r2", [host("b0", 1000, 21), host("b1", 1000, 22), slow, host("b3", 1000, 23)], [outlier]
    )
    judgement = judge_run(now, BASELINE, SPEC)
    assert judgement.flagged_hosts == ["b2"]
    assert {f.kind for f in judgement.findings} == {"regression", "outlier"}
    remeasure = report("c1", [host("b2", 510, 30)])
    confirmed = confirm_findings(judgement, now, remeasure, BASELINE, SPEC, threshold=3.5)
    assert all(f.confirmed for f in confirmed.findings)
    assert confirmed.regressions[0].confirm is not None
    assert verdict(confirmed) == "findings"
    healed = confirm_findings(
        judgement, now, report("c1", [host("b2", 1000, 31)]), BASELINE, SPEC, threshold=3.5
    )
    assert not any(f.confirmed for f in healed.findings)
    assert verdict(healed) == "pass"


def test_failed_and_missing_hosts_make_an_incomplete_check() -> None:
    now = report(
        "r2", [host("b0", 1000, 1), host("b1", 1000, 2, status="unreachable"), host("b2", 1000, 3)]
    )
    judgement = judge_run(now, BASELINE, SPEC)
    kinds = {(f.kind, f.host) for f in judgement.findings}
    assert kinds == {("failed", "b1"), ("missing", "b3")}
    assert verdict(judgement) == "incomplete"
    document = check_document(
        judgement, now, BASELINE, SPEC, confirm_run=None, stability=(1, {}), history={}
    )
    assert document["check"]["exit_code"] == 3
    assert {f["host"] for f in document["check"]["findings"]} == {"b1", "b3"}


def test_the_document_carries_stability_fingerprint_and_counts() -> None:
    now = report(
        "r2", [host("b0", 1000, 1), host("b1", 1000, 2), host("b2", 400, 3), host("b3", 1000, 4)]
    )
    judgement = judge_run(now, BASELINE, CheckSpec(confirm=ConfirmSpec(enabled=False)))
    facts = {
        f"b{i}": {"kernel": "6.1", "fingerprint": {"cpu_quota_cores": None}} for i in (0, 1, 3)
    }
    facts["b2"] = {"kernel": "6.1", "fingerprint": {"cpu_quota_cores": 0.1}}
    judgement = describe(judgement, now, facts)
    document = check_document(
        judgement,
        now,
        BASELINE,
        SPEC,
        confirm_run=None,
        stability=(5, {("b2", CPU): 2}),
        history={"runs": []},
    )
    (regression,) = document["regressions"]
    assert regression["stability"] == {"flagged": 3, "checks": 5}
    assert regression["fingerprint"] == [{"key": "cpu_quota_cores", "value": 0.1, "peers": None}]
    assert regression["confirmed"] is None  # confirmation off: the finding stands
    assert document["check"]["hosts"][2] == {
        "name": "b2",
        "hw_model": "board",
        "group": "board",
        "status": "ok",
        "incomplete": None,
        "findings": 1,
    }
    assert document["check"]["verdict"] == "findings"


def test_judged_metrics_default_to_those_with_repetitions() -> None:
    assert judged_metrics(BASE, SPEC) == [CPU]
    assert judged_metrics(BASE, CheckSpec(metrics=["thermal.max_c"])) == ["thermal.max_c"]


def write_run(out: Path, data: dict[str, Any], kind: str = "check") -> Path:
    run_dir = out / data["campaign"] / data["run_id"]
    run_dir.mkdir(parents=True)
    (run_dir / "report.json").write_text(json.dumps(data))
    (run_dir / "run.json").write_text(json.dumps({"run_id": data["run_id"], "kind": kind}))
    return run_dir


def test_the_baseline_is_the_pinned_run_else_the_last_else_none(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with HistoryStore.open(out) as store:
        assert choose_baseline(store, "nightly", None, "r3").source == "none"
        first = write_run(out, BASE)
        store.record_run(BASE, first, kind="check")
        second = report("r2", [host(f"b{i}", 900, 40 + i) for i in range(4)])
        store.record_run(second, write_run(out, second), kind="check")
        last = choose_baseline(store, "nightly", None, "r3")
        assert (last.run_id, last.source) == ("r2", "last")
        assert last.samples["b1"][CPU] == second["hosts"][1]["samples"][CPU]
        assert pin_baseline(store, first) == ("nightly", "r1")
        pinned = choose_baseline(store, "nightly", None, "r3")
        assert (pinned.run_id, pinned.source) == ("r1", "pinned")
        assert choose_baseline(store, "nightly", "last", "r3").run_id == "r2"
        assert choose_baseline(store, "nightly", str(first), "r3").source == "dir"
        other = dict(BASE, campaign="other", run_id="x1")
        with pytest.raises(BaselineError, match="a run of campaign 'other'"):
            choose_baseline(store, "nightly", str(write_run(out, other)), "r3")
        with pytest.raises(BaselineError, match=r"no report\.json"):
            choose_baseline(store, "nightly", str(tmp_path), "r3")


def fleetprof(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_refuses_bad_options_before_running_anything(tmp_path: Path) -> None:
    campaign = tmp_path / "c.yml"
    campaign.write_text("name: c\nduration: 2s\ntarget: {probe: [cpu]}\n")
    missing = fleetprof(
        "check", str(campaign), "--baseline", str(tmp_path / "nope"), "-o", str(tmp_path / "out")
    )
    assert missing.returncode == 2 and "no report.json" in missing.stderr
    assert "Traceback" not in missing.stderr
    unwritable = fleetprof("check", str(campaign), "--junit", str(tmp_path / "no/dir/x.xml"))
    assert unwritable.returncode == 2 and "--junit" in unwritable.stderr
    assert not (tmp_path / "out").exists()


def test_history_and_baseline_commands_say_what_is_wrong(tmp_path: Path) -> None:
    empty = fleetprof("history", "-o", str(tmp_path))
    assert empty.returncode == 2 and "no history here yet" in empty.stderr
    bad = fleetprof("baseline", "set", str(tmp_path))
    assert bad.returncode == 2 and "report.json" in bad.stderr
    run_dir = write_run(tmp_path / "out", BASE)
    ok = fleetprof("baseline", "set", str(run_dir))
    assert ok.returncode == 0, ok.stderr
    with HistoryStore.open(tmp_path / "out") as store:
        pinned = store.baseline("nightly")
    assert pinned is not None and pinned.run_id == "r1"
    listed = fleetprof("history", "-o", str(tmp_path / "out"), "--json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 4
