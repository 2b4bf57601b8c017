"""Outliers inside a group: robust z, the noise floor, small groups, direction."""

from __future__ import annotations

import pytest

from orchestrator.analysis.directions import BOTH, HIGHER, LOWER, SKIP, direction, is_bad_side
from orchestrator.analysis.outliers import (
    function_share_outliers,
    metric_outliers,
    robust_z,
    spread_floor,
)


def _group(metric: str, *values: float) -> dict[str, dict[str, float]]:
    return {f"h{i}": {metric: v} for i, v in enumerate(values, start=1)}


def test_robust_z_is_0_6745_deviations_over_mad() -> None:
    assert robust_z(20.0, 10.0, 2.0) == pytest.approx(0.6745 * 5)
    assert robust_z(10.0, 10.0, 0.0) == 0.0
    # The floor replaces a spread below it.
    assert robust_z(20.0, 10.0, 0.1, floor=5.0) == pytest.approx(0.6745 * 2)


def test_the_floor_is_five_percent_of_the_median_or_the_metrics_own_or_an_epsilon() -> None:
    assert spread_floor(100.0) == pytest.approx(5.0)
    assert spread_floor(-100.0) == pytest.approx(5.0)
    assert spread_floor(100.0, 50.0) == 50.0
    assert 0 < spread_floor(0.0) < 1e-3


def test_one_slow_host_among_peers_is_flagged_with_its_group_median() -> None:
    found = metric_outliers("model-a", _group("workload.fps", 25.0, 25.4, 24.8, 9.1), 3.5)
    assert [(o.host, o.metric, o.value) for o in found] == [("h4", "workload.fps", 9.1)]
    outlier = found[0]
    assert outlier.group == "model-a"
    assert outlier.group_median == pytest.approx(24.9)
    assert outlier.robust_z < -3.5
    assert outlier.to_dict()["hw_model"] == "model-a"
    assert outlier.to_dict()["kind"] == "metric"


def test_nearly_identical_hosts_do_not_flag_noise() -> None:
    # MAD 0.01 would score the 3% slower host at z = -50; the 5% floor keeps it at -0.4.
    values = (25.00, 25.01, 25.00, 24.99, 24.25)
    assert metric_outliers("m", _group("workload.fps", *values), 3.5) == []


def test_a_metric_floor_absorbs_start_lateness_noise() -> None:
    found = metric_outliers("m", _group("session.late_by_ms", 2.0, 3.0, 2.5, 30.0), 3.5)
    assert found == []
    found = metric_outliers("m", _group("session.late_by_ms", 2.0, 3.0, 2.5, 700.0), 3.5)
    assert [o.host for o in found] == ["h4"]


def test_groups_of_fewer_than_three_hosts_never_flag() -> None:
    assert metric_outliers("m", _group("workload.fps", 25.0, 1.0), 3.5) == []
    assert metric_outliers("m", _group("workload.fps", 25.0), 3.5) == []


def test_directional_metrics_flag_only_the_bad_side() -> None:
    fast = _group("workload.fps", 25.0, 25.0, 25.0, 60.0)
    assert metric_outliers("m", fast, 3.5) == []
    cool = _group("thermal.max_c", 60.0, 61.0, 60.0, 30.0)
    assert metric_outliers("m", cool, 3.5) == []
    hot = _group("thermal.max_c", 60.0, 61.0, 60.0, 90.0)
    assert [o.host for o in metric_outliers("m", hot, 3.5)] == ["h4"]
    # A load description is unusual on either side.
    low = _group("target.cpu_pct.mean", 90.0, 91.0, 90.0, 20.0)
    assert [o.host for o in metric_outliers("m", low, 3.5)] == ["h4"]


def test_bookkeeping_metrics_are_skipped() -> None:
    assert metric_outliers("m", _group("pyspy.samples", 600, 600, 600, 100), 3.5) == []
    assert metric_outliers("m", _group("iotop.samples", 6, 6, 6, 1), 3.5) == []


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("workload.fps", HIGHER),
        ("probe.cpu.single_ops_per_s", HIGHER),
        ("probe.disk.read_mb_per_s", HIGHER),
        ("pyspy.effective_rate_hz", HIGHER),
        ("session.late_by_ms", LOWER),
        ("thermal.cpu_thermal.max_c", LOWER),
        ("pyspy.max_lag_s", LOWER),
        ("pyspy.behind_warnings", LOWER),
        ("cpufreq.reduced_time_pct", LOWER),
        ("target.cpu_pct.mean", BOTH),
        ("memory.rss_peak_mb", BOTH),
        ("pyspy.samples", SKIP),
        ("pyspy.requested_rate_hz", SKIP),
        ("system.samples", SKIP),
        ("something.new", BOTH),
    ],
)
def test_the_direction_table(metric: str, expected: str) -> None:
    assert direction(metric) == expected


def test_bad_side() -> None:
    assert is_bad_side("workload.fps", -4.0) and not is_bad_side("workload.fps", 4.0)
    assert is_bad_side("thermal.max_c", 4.0) and not is_bad_side("thermal.max_c", -4.0)
    assert is_bad_side("target.cpu_pct.mean", 4.0) and is_bad_side("target.cpu_pct.mean", -4.0)
    assert not is_bad_side("pyspy.samples", -10.0)


F = ("decode_frame", "app.py")
G = ("detect_motion", "app.py")


def test_a_function_taking_40_percent_on_one_host_and_10_on_its_peers_is_flagged() -> None:
    shares = {
        "h1": {F: 10.0, G: 30.0},
        "h2": {F: 11.0, G: 29.0},
        "h3": {F: 10.5, G: 30.5},
        "h4": {F: 40.0, G: 30.0},
    }
    found = function_share_outliers("m", shares, 3.5)
    assert [(o.host, o.function, o.file, o.value) for o in found] == [
        ("h4", "decode_frame", "app.py", 40.0)
    ]
    assert found[0].kind == "function_share"
    assert found[0].metric == "function.self_pct"
    assert found[0].group_median == pytest.approx(10.75)


def test_function_shares_have_a_two_point_floor_and_ignore_small_functions() -> None:
    # 45 vs 44-46: MAD 0.5 would score 4 points as z = 5.4; the floor keeps it at 1.3.
    close = {"h1": {F: 45.0}, "h2": {F: 44.5}, "h3": {F: 45.5}, "h4": {F: 49.0}}
    assert function_share_outliers("m", close, 3.5) == []
    # 4% vs 0%: far in z, but below 5% on the host and on its peers.
    small = {"h1": {}, "h2": {}, "h3": {G: 0.1}, "h4": {F: 4.0}}
    assert function_share_outliers("m", small, 3.5) == []


def test_a_function_missing_on_one_host_counts_as_zero_there() -> None:
    shares = {"h1": {F: 30.0}, "h2": {F: 31.0}, "h3": {F: 29.0}, "h4": {G: 30.0}}
    found = function_share_outliers("m", shares, 3.5)
    assert ("h4", "decode_frame", 0.0) in [(o.host, o.function, o.value) for o in found]
    assert {o.host for o in found} == {"h4"}


def test_function_shares_need_three_hosts() -> None:
    assert function_share_outliers("m", {"h1": {F: 10.0}, "h2": {F: 40.0}}, 3.5) == []
