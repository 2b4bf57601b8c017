"""Comparing two runs: function shares tested across hosts (the independent units; one
window per host and run is one observation), corrected for many functions; a host's own
shares and the metrics reported as changes without a significance claim."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.analysis.stacks import StackProfile, parse_folded
from orchestrator.check.compare import (
    CompareError,
    benjamini_hochberg,
    compare_across_hosts,
    compare_metrics,
    compare_profiles,
    compare_runs,
    paired_p,
    top_changes,
)


def profile(**self_samples: int) -> StackProfile:
    """One stack per function, ``main`` at the root, the function the leaf."""
    return parse_folded(
        "".join(
            f"main (app.py:1);{name} (app.py:{i + 2}) {n}\n"
            for i, (name, n) in enumerate(self_samples.items())
            if n
        )
    )


def report(campaign: str, run_id: str, hosts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": "fleetprof.report/1",
        "campaign": campaign,
        "run_id": run_id,
        "started_at": "2026-01-01T00:00:00+00:00",
        "hosts": hosts,
    }


def host(name: str, **metrics: float) -> dict[str, Any]:
    return {"name": name, "hw_model": "box", "status": "ok", "metrics": metrics}


def change(result: Any, function: str) -> Any:
    [found] = [c for c in result.functions if c.function == function]
    return found


def fleet(*per_host: tuple[dict[str, int], dict[str, int]]) -> dict[str, Any]:
    """host -> (A, B) profiles from (A's self samples, B's self samples) per host."""
    return {f"h{i}": (profile(**a), profile(**b)) for i, (a, b) in enumerate(per_host)}


def test_a_hosts_window_against_its_window_is_described_not_tested() -> None:
    result = compare_profiles(profile(hot=400, rest=3600), profile(hot=1600, rest=2400))
    hot = change(result, "hot")
    assert (hot.a_pct, hot.b_pct, hot.delta_pct, hot.direction) == (10.0, 40.0, 30.0, "up")
    assert (hot.a_samples, hot.b_samples) == (400, 1600)
    # One window against one window: thousands of samples, still one observation each.
    assert hot.test is None and hot.p_value is None and hot.q_value is None
    assert not hot.significant and result.tested is None


def test_a_share_moving_on_every_host_is_significant_across_hosts() -> None:
    pairs = fleet(
        ({"hot": 100, "rest": 900}, {"hot": 400, "rest": 600}),
        ({"hot": 120, "rest": 880}, {"hot": 380, "rest": 620}),
        ({"hot": 90, "rest": 910}, {"hot": 420, "rest": 580}),
        ({"hot": 110, "rest": 890}, {"hot": 390, "rest": 610}),
    )
    result = compare_across_hosts(pairs)
    hot = change(result, "hot")
    assert hot.a_pct == pytest.approx(10.5) and hot.b_pct == pytest.approx(39.75)
    assert hot.test == "paired-t" and hot.hosts == 4
    assert hot.q_value is not None and hot.q_value < 0.01 and hot.significant
    assert result.tested == "paired t-test across 4 hosts"
    assert (result.a_samples, result.b_samples) == (4000, 4000)


def test_a_move_on_one_host_of_four_is_not_a_fleet_change() -> None:
    pairs = fleet(
        ({"hot": 100, "rest": 900}, {"hot": 400, "rest": 600}),
        ({"hot": 120, "rest": 880}, {"hot": 110, "rest": 890}),
        ({"hot": 90, "rest": 910}, {"hot": 100, "rest": 900}),
        ({"hot": 110, "rest": 890}, {"hot": 105, "rest": 895}),
    )
    assert not change(compare_across_hosts(pairs), "hot").significant


def test_fewer_than_three_hosts_are_not_tested() -> None:
    pairs = fleet(
        ({"hot": 100, "rest": 900}, {"hot": 400, "rest": 600}),
        ({"hot": 120, "rest": 880}, {"hot": 380, "rest": 620}),
    )
    result = compare_across_hosts(pairs)
    assert result.tested is None
    assert all(c.test is None and not c.significant for c in result.functions)


def test_paired_p_without_spread_in_the_differences() -> None:
    assert paired_p([10.0, 20.0, 30.0], [10.0, 20.0, 30.0]) == 1.0
    assert paired_p([10.0, 20.0, 30.0], [15.0, 25.0, 35.0]) == 0.0
    assert 0.0 < paired_p([10.0, 20.0, 30.0], [15.0, 24.0, 36.0]) < 0.05


def test_benjamini_hochberg_adjusts_each_p_value_by_its_rank() -> None:
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.2])
    # Ranked: 0.01*4/1, then 0.03*4/2 = 0.06 capped by the next rank's 0.04*4/3.
    assert q == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
    assert benjamini_hochberg([]) == []


def test_functions_in_only_one_run_are_compared_against_zero() -> None:
    pairs = fleet(
        *[({"old": 500 + i, "rest": 500}, {"new": 500, "rest": 500 + i}) for i in range(4)]
    )
    result = compare_across_hosts(pairs)
    assert change(result, "old").b_pct == 0.0 and change(result, "old").significant
    assert change(result, "new").a_pct == 0.0 and change(result, "new").direction == "up"


def test_top_changes_put_significant_ones_first() -> None:
    result = compare_profiles(profile(hot=400, rest=3600), profile(hot=1600, rest=2400))
    assert [c.function for c in top_changes(result, 1)] in (["hot"], ["rest"])
    assert top_changes(result, 0) == []


def test_metrics_report_their_change_and_flag_moves_beyond_the_threshold() -> None:
    changes = {
        m.metric: m
        for m in compare_metrics(
            {
                "fps": 25.0,
                "cpu": 50.0,
                "zero": 0.0,
                "only_a": 1.0,
                "text": "x",
                "nan": float("nan"),
            },
            {"fps": 20.0, "cpu": 51.0, "zero": 2.0, "only_b": 1.0, "text": "y", "nan": 1.0},
        )
    }
    assert set(changes) == {"fps", "cpu", "zero"}
    assert changes["fps"].delta == -5.0 and changes["fps"].delta_pct == -20.0
    assert changes["fps"].changed
    assert not changes["cpu"].changed
    assert changes["zero"].delta_pct is None and changes["zero"].changed


def test_runs_are_compared_per_common_host_and_fleet_wide() -> None:
    a = report(
        "camp", "r1", [host("edge-1", fps=25.0), host("edge-2", fps=30.0), host("old", fps=1.0)]
    )
    b = report(
        "camp", "r2", [host("edge-1", fps=20.0), host("edge-2", fps=30.0), host("new", fps=1.0)]
    )
    profiles_a = {"edge-1": profile(hot=400, rest=3600), "edge-2": profile(hot=100, rest=900)}
    profiles_b = {"edge-1": profile(hot=1600, rest=2400)}
    result = compare_runs(a, b, profiles_a, profiles_b)
    assert result.warnings == []
    assert (result.only_in_a, result.only_in_b) == (["old"], ["new"])
    assert [h.host for h in result.hosts] == ["edge-1", "edge-2"]
    edge1, edge2 = result.hosts
    assert edge1.profile is not None and change(edge1.profile, "hot").delta_pct == 30.0
    assert "not tested" in edge1.notes[-1] and "at least 3 hosts" in edge1.notes[-1]
    assert edge2.profile is None and "run B" in edge2.notes[0]
    assert [m.metric for m in edge1.metrics if m.changed] == ["fps"]
    # Fleet-wide: only the hosts with stacks in both runs; one host is not tested.
    assert result.fleet is not None and result.fleet.a_samples == 4000
    assert result.fleet.tested is None
    data = result.to_dict()
    assert data["schema"] == "fleetprof.compare/1"
    assert data["hosts"][0]["profile"]["functions"][0]["direction"] in ("up", "down")


def test_hosts_with_an_incomplete_window_are_left_out_and_named() -> None:
    late = {**host("edge-3", fps=1.0), "incomplete": "started 10.2 s late in a 15 s window"}
    a = report("camp", "r1", [host(f"edge-{i}", fps=25.0) for i in (1, 2, 3, 4)])
    b = report("camp", "r2", [*(host(f"edge-{i}", fps=25.0) for i in (1, 2, 4)), late])
    stacks = {f"edge-{i}": profile(hot=100, rest=900) for i in (1, 2, 3, 4)}
    moved = {**stacks, "edge-3": profile(hot=900, rest=100)}
    result = compare_runs(a, b, stacks, moved)
    assert [h.host for h in result.hosts] == ["edge-1", "edge-2", "edge-4"]
    assert result.incomplete == [
        {"host": "edge-3", "run": "B", "reason": "started 10.2 s late in a 15 s window"}
    ]
    assert any("edge-3 left out" in w and "run B" in w for w in result.warnings)
    assert result.only_in_a == [] and result.only_in_b == []
    assert result.fleet is not None and result.fleet.tested == "paired t-test across 3 hosts"
    assert not change(result.fleet, "hot").significant
    assert result.to_dict()["incomplete"][0]["host"] == "edge-3"
    # An old report without the key: complete.
    assert compare_runs(a, a, stacks, stacks).incomplete == []


def test_different_campaigns_are_compared_with_a_warning() -> None:
    result = compare_runs(report("one", "r1", []), report("two", "r2", []), {}, {})
    assert "different campaigns" in result.warnings[0]
    assert result.fleet is None


@pytest.mark.parametrize(
    "bad",
    [None, [], {"schema": "other/1", "hosts": []}, {"schema": "fleetprof.report/1"}],
)
def test_something_that_is_not_a_report_is_refused(bad: Any) -> None:
    with pytest.raises(CompareError):
        compare_runs(bad, report("c", "r", []), {}, {})


def test_alpha_must_be_a_probability() -> None:
    with pytest.raises(CompareError):
        compare_runs(report("c", "r", []), report("c", "r", []), {}, {}, alpha=1.5)
