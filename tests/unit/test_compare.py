"""Comparing two runs: function shares tested on their sample counts (corrected for many
functions), metrics reported as changes without a significance claim."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.analysis.stacks import StackProfile, parse_folded
from orchestrator.compare import (
    CompareError,
    benjamini_hochberg,
    compare_metrics,
    compare_profiles,
    compare_runs,
    proportion_test,
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


def test_a_share_moving_from_10_to_40_percent_over_thousands_of_samples_is_significant() -> None:
    before = profile(hot=400, rest=3600)
    after = profile(hot=1600, rest=2400)
    result = compare_profiles(before, after)
    hot = change(result, "hot")
    assert (hot.a_pct, hot.b_pct) == (10.0, 40.0)
    assert hot.delta_pct == 30.0 and hot.direction == "up"
    assert hot.test == "chi2"
    assert hot.q_value is not None and hot.q_value < 1e-10
    assert hot.significant
    rest = change(result, "rest")
    assert rest.significant and rest.direction == "down"


def test_a_small_change_over_few_samples_is_not_significant() -> None:
    result = compare_profiles(profile(hot=3, rest=17), profile(hot=5, rest=15))
    hot = change(result, "hot")
    assert hot.delta_pct == 10.0
    assert hot.test == "fisher"
    assert hot.p_value is not None and hot.p_value > 0.3
    assert not hot.significant


def test_an_unchanged_function_is_not_significant_even_with_many_samples() -> None:
    result = compare_profiles(profile(a=5000, b=5000), profile(a=5000, b=5000))
    assert all(not c.significant and c.p_value == pytest.approx(1.0) for c in result.functions)


def test_benjamini_hochberg_adjusts_each_p_value_by_its_rank() -> None:
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.2])
    # Ranked: 0.01*4/1, then 0.03*4/2 = 0.06 capped by the next rank's 0.04*4/3.
    assert q == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
    assert benjamini_hochberg([]) == []


def test_the_correction_is_applied_across_a_hosts_functions() -> None:
    # One function alone at p ~ 0.03 is significant; among many unchanged ones it is not.
    alone_p = proportion_test(140, 1000, 105, 1000)[1]
    assert 0.01 < alone_p < 0.05
    before = {"moved": 140, "rest": 860 - 19 * 20, **{f"f{i}": 20 for i in range(19)}}
    after = {"moved": 105, "rest": 895 - 19 * 20, **{f"f{i}": 20 for i in range(19)}}
    result = compare_profiles(profile(**before), profile(**after))
    moved = change(result, "moved")
    assert moved.p_value == pytest.approx(alone_p)
    assert moved.q_value is not None and moved.q_value > moved.p_value
    assert moved.q_value >= 0.05
    assert not moved.significant
    assert (
        compare_profiles(profile(moved=140, rest=860), profile(moved=105, rest=895), alpha=0.05)
        .functions[0]
        .significant
    )


def test_functions_in_only_one_run_are_compared_against_zero() -> None:
    result = compare_profiles(profile(old=500, rest=500), profile(new=500, rest=500))
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
    assert edge1.profile is not None and change(edge1.profile, "hot").significant
    assert edge2.profile is None and "run B" in edge2.notes[0]
    assert [m.metric for m in edge1.metrics if m.changed] == ["fps"]
    # Fleet-wide: only the hosts with stacks in both runs are merged.
    assert result.fleet is not None and result.fleet.a_samples == 4000
    data = result.to_dict()
    assert data["schema"] == "fleetprof.compare/1"
    assert data["hosts"][0]["profile"]["functions"][0]["direction"] in ("up", "down")


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
