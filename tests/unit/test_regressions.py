"""A host against its own baseline: Welch's test, FDR control across the fleet, the
threshold, confirmation, and the fingerprint of what differs."""

from __future__ import annotations

import random

import pytest

from orchestrator.analysis.directions import HIGHER, LOWER
from orchestrator.check.regressions import (
    confirm,
    fingerprint_diff,
    host_fingerprint,
    judge,
    run_tests,
    welch_p,
    worse_by,
)

CPU = "probe.cpu.single_ops_per_s"


def reps(center: float, spread: float = 0.02, n: int = 5, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def test_a_slower_host_is_significant_and_a_faster_one_is_not_a_regression() -> None:
    baseline = {"a": {CPU: reps(1000, seed=1)}, "b": {CPU: reps(1000, seed=2)}}
    current = {"a": {CPU: reps(600, seed=3)}, "b": {CPU: reps(1400, seed=4)}}
    tested = run_tests(current, baseline, {"a": "m", "b": "m"})
    judged = {r.host: r for r in judge(tested, alpha=0.05, regression_pct=10, baseline_run="r1")}
    assert judged["a"].flagged and judged["a"].change_pct == pytest.approx(-40, abs=3)
    assert judged["a"].q_value < 0.01 and judged["a"].test == "welch-t"
    assert not judged["b"].flagged and judged["b"].p_value > 0.5


def test_a_significant_but_small_change_is_not_flagged() -> None:
    baseline = {"a": {CPU: reps(1000, spread=0.001, seed=1)}}
    current = {"a": {CPU: reps(960, spread=0.001, seed=2)}}
    (result,) = judge(
        run_tests(current, baseline, {}), alpha=0.05, regression_pct=10, baseline_run=None
    )
    assert result.p_value < 0.001
    assert not result.flagged  # 4 % is below the 10 % that matters


def test_the_false_discovery_rate_is_controlled_across_a_large_fleet() -> None:
    # 300 hosts with no change at all: about 15 raw p-values fall below 0.05 by chance
    # (one-sided: 7 or so on the bad side). Benjamini-Hochberg keeps the expected share of
    # false findings among the flagged at 5 %: the one truly slower host stays flagged
    # and at most a stray one joins it, instead of a dozen.
    hosts = [f"h{i}" for i in range(300)]
    baseline = {h: {CPU: reps(1000, spread=0.05, seed=i)} for i, h in enumerate(hosts)}
    current = {h: {CPU: reps(1000, spread=0.05, seed=1000 + i)} for i, h in enumerate(hosts)}
    current["h7"] = {CPU: reps(700, spread=0.02, seed=99)}
    tested = run_tests(current, baseline, {})
    raw = [t for t in tested if t.p_value < 0.05 and t.host != "h7"]
    assert len(raw) >= 5, "the test fleet should show chance hits before correction"
    judged = judge(tested, alpha=0.05, regression_pct=1.0, baseline_run=None)
    flagged = [r.host for r in judged if r.flagged]
    assert "h7" in flagged and len(flagged) <= 2, flagged


def test_hosts_without_enough_repetitions_or_baseline_are_not_tested() -> None:
    baseline = {"a": {CPU: [1000.0]}, "b": {CPU: reps(1000)}}
    current = {"a": {CPU: reps(500)}, "b": {CPU: [500.0]}, "c": {CPU: reps(500)}}
    assert run_tests(current, baseline, {}) == []


def test_directions_and_exact_values() -> None:
    assert worse_by(HIGHER, -12.0, 10) and not worse_by(HIGHER, 12.0, 10)
    assert worse_by(LOWER, 12.0, 10) and not worse_by(LOWER, -12.0, 10)
    assert welch_p([5.0, 5.0], [6.0, 6.0], HIGHER) == 0.0
    assert welch_p([6.0, 6.0], [6.0, 6.0], HIGHER) == 1.0


def test_confirmation_reproduces_or_not() -> None:
    baseline = reps(1000, seed=1)
    (flagged,) = judge(
        run_tests({"a": {CPU: reps(600, seed=2)}}, {"a": {CPU: baseline}}, {}),
        alpha=0.05,
        regression_pct=10,
        baseline_run="r1",
    )
    kept = confirm(flagged, reps(610, seed=3), baseline, alpha=0.05, regression_pct=10, run_id="c1")
    gone = confirm(
        flagged, reps(1005, seed=4), baseline, alpha=0.05, regression_pct=10, run_id="c1"
    )
    empty = confirm(flagged, [], baseline, alpha=0.05, regression_pct=10, run_id="c1")
    assert kept["confirmed"] and kept["run_id"] == "c1"
    assert not gone["confirmed"]
    assert not gone["confirmed"] and gone["confirmed"] is not None
    # A re-measure that brought nothing back decides nothing: the finding stands
    # unconfirmed (None), it is not cleared (False).
    assert empty["confirmed"] is None and empty["reason"]


def test_the_fingerprint_names_what_differs_from_the_peers() -> None:
    def facts(quota: float | None, kernel: str = "6.1.0") -> dict[str, object]:
        return {
            "kernel": kernel,
            "os": "Debian 12",
            "fingerprint": {"cpu_governor": "ondemand", "cpu_quota_cores": quota},
        }

    host = host_fingerprint(facts(0.2, "6.1.0-rt"), {"thermal.max_c": 71.0})
    peers = [host_fingerprint(facts(None), {"thermal.max_c": t}) for t in (55.0, 56.0, 54.0)]
    diff = {d["key"]: d for d in fingerprint_diff(host, peers)}
    assert set(diff) == {"kernel", "cpu_quota_cores", "thermal.max_c"}
    assert diff["kernel"] == {"key": "kernel", "value": "6.1.0-rt", "peers": "6.1.0"}
    assert diff["thermal.max_c"]["peers"] == 55.0
    same = host_fingerprint(facts(None), {"thermal.max_c": 56.5})
    assert fingerprint_diff(same, peers) == []
    assert fingerprint_diff(host, []) == []
