"""The outlier rules on real noise (docs/report.md, Outliers; docs/check.md): identical
hosts give no outlier, one host of four at 35% of its group's CPU probe is flagged every
time, a group without spread gives a finite score.

The noise is real: tests/fixtures/probe/cpu-single-identical-6x20.json holds the device
runner's own CPU probe loop run as six identical hosts x twenty runs x five repetitions
on this project's shared 2-core controller while other test suites loaded it (a 22%
median coefficient of variation per repetition: far noisier than a real board)."""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

import pytest

from orchestrator.analysis.outliers import (
    RULE_LOSS,
    function_share_outliers,
    loss_z,
    metric_outliers,
    noise_floor,
    robust_z,
    spread_floor,
)
from tests.support.paths import FIXTURES

FIXTURE = FIXTURES / "probe" / "cpu-single-identical-6x20.json"
CPU = "probe.cpu.single_ops_per_s"
THRESHOLD = 3.5


def real_runs() -> list[dict[str, list[float]]]:
    """Per run, host -> its repetitions' ops/s."""
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return [
        {host: [r["iterations"] / r["seconds"] for r in reps] for host, reps in run.items()}
        for run in data["runs"]
    ]


def outliers_of(reps: dict[str, list[float]]) -> list[Any]:
    metrics = {h: {CPU: statistics.median(r)} for h, r in reps.items()}
    return metric_outliers("board", metrics, THRESHOLD, {h: {CPU: r} for h, r in reps.items()})


def test_the_fixture_is_what_the_docstring_says() -> None:
    runs = real_runs()
    assert len(runs) == 20 and all(len(run) == 6 for run in runs)
    cvs = [statistics.pstdev(r) / statistics.mean(r) for run in runs for r in run.values()]
    assert statistics.median(cvs) > 0.1  # noisy on purpose: a loaded machine


def test_six_identical_hosts_over_twenty_runs_give_no_outlier() -> None:
    flagged = [(i, o.host) for i, run in enumerate(real_runs()) for o in outliers_of(run)]
    assert flagged == []


def test_groups_of_four_identical_hosts_give_no_outlier() -> None:
    for run in real_runs():
        hosts = sorted(run)
        for members in (hosts[:4], hosts[2:], hosts[::2] + hosts[1:2]):
            assert outliers_of({h: run[h] for h in members}) == []


def test_without_the_repetitions_noise_floor_the_small_mad_flags_noise() -> None:
    # Why noise_floor exists: the same values without their repetitions flag hosts.
    flagged = 0
    for run in real_runs():
        metrics = {h: {CPU: statistics.median(r)} for h, r in run.items()}
        flagged += len(metric_outliers("board", metrics, THRESHOLD))
    assert flagged >= 1


def test_one_host_of_four_at_35_percent_of_its_group_is_flagged_every_time() -> None:
    cases = 0
    for run in real_runs():
        names = sorted(run)
        for hosts in (names[:4], names[2:], names[::2] + names[1:2]):
            for victim in hosts:
                peers = statistics.median(statistics.median(run[h]) for h in hosts if h != victim)
                scale = 0.35 * peers / statistics.median(run[victim])
                reps = {h: [x * scale for x in run[h]] if h == victim else run[h] for h in hosts}
                found = outliers_of(reps)
                assert [o.host for o in found] == [victim], (victim, found)
                cases += 1
    assert cases == 240


def test_two_low_hosts_of_four_are_not_one_host_that_lost() -> None:
    # A loaded test fleet's first check of identical boards: the all-core probe's workers
    # started late on two of them (ops/s a fifth of the others'). Neither stands alone.
    values = {"b1": 43_643.0, "b2": 46_000.0, "b3": 6_364.0, "b4": 5_482.0}
    metric = "probe.cpu.all_ops_per_s"
    assert metric_outliers("m", {h: {metric: v} for h, v in values.items()}, THRESHOLD) == []
    # One of them alone that low among noisy peers is flagged, by the relative loss.
    values.update(b1=30_000.0, b3=52_000.0)
    [found] = metric_outliers("m", {h: {metric: v} for h, v in values.items()}, THRESHOLD)
    assert (found.host, found.rule) == ("b4", RULE_LOSS)


def test_the_issues_group_a_host_at_a_third_of_noisy_peers_is_a_relative_loss() -> None:
    # 629,852 ops/s against peers spread from 1.5M to 2.3M: z = -1.8, under 3.5.
    values = {"h1": 629_852.0, "h2": 1_500_000.0, "h3": 1_900_000.0, "h4": 2_300_000.0}
    [found] = metric_outliers("m", {h: {CPU: v} for h, v in values.items()}, THRESHOLD)
    assert found.host == "h1" and found.rule == RULE_LOSS
    assert -3.5 < found.robust_z < -1.0
    assert found.peers_median == 1_900_000.0
    assert found.to_dict()["rule"] == "relative_loss"


def test_the_relative_loss_rule_flags_from_48_percent_of_the_peers_down() -> None:
    assert loss_z(CPU, 48.0, 100.0) == pytest.approx(-3.507, abs=1e-3)
    assert loss_z(CPU, 35.0, 100.0) == pytest.approx(-4.384, abs=1e-3)
    values = {"h1": 55.0, "h2": 80.0, "h3": 100.0, "h4": 120.0}
    assert metric_outliers("m", {h: {CPU: v} for h, v in values.items()}, THRESHOLD) == []
    # Only for higher-is-better metrics with a positive peers' median.
    assert loss_z("thermal.cpu.max_c", 20.0, 100.0) is None
    assert loss_z("target.cpu_pct.mean", 20.0, 100.0) is None
    assert loss_z(CPU, 20.0, 0.0) is None
    # A threshold above every score flags nothing, by either rule.
    values["h1"] = 1.0
    assert metric_outliers("m", {h: {CPU: v} for h, v in values.items()}, 1000.0) == []


def test_a_zero_spread_group_gives_a_finite_score() -> None:
    # The issue's case: target.rchar_per_s 101,302 against a median of 0.
    zero = spread_floor(0.0, None, 101_302.0)
    z = robust_z(101_302.0, 0.0, 0.0, zero)
    assert math.isfinite(z) and z == pytest.approx(0.6745 / 0.05)  # the bound: 13.5
    values = {"h1": 0.0, "h2": 0.0, "h3": 0.0, "h4": 101_302.0}
    # Under the 1 MiB/s I/O noise floor it is not an outlier at all...
    assert (
        metric_outliers("m", {h: {"target.rchar_per_s": v} for h, v in values.items()}, 3.5) == []
    )
    # ...and a metric without such a floor scores at most 13.5, not 68,328,468,800.
    [found] = metric_outliers("m", {h: {"some.count": v} for h, v in values.items()}, 3.5)
    assert found.robust_z == pytest.approx(13.49)
    # Identical values everywhere: 0; a median that is not 0: 13.5 x the relative gap.
    assert robust_z(5.0, 5.0, 0.0, spread_floor(5.0, None, 5.0)) == 0.0
    assert robust_z(10.0, 5.0, 0.0, spread_floor(5.0, None, 10.0)) == pytest.approx(6.745)


def test_a_zero_spread_function_share_is_finite() -> None:
    hot: tuple[str, str | None] = ("hot", "a.py")
    shares: dict[str, dict[tuple[str, str | None], float]] = {
        "h1": {},
        "h2": {},
        "h3": {},
        "h4": {hot: 30.0},
    }
    [found] = function_share_outliers("m", shares, 3.5)
    assert found.function == "hot" and math.isfinite(found.robust_z)
    assert found.robust_z == pytest.approx(0.6745 * 30 / 2.0, abs=0.01)


def test_the_noise_floor_is_the_typical_standard_error_of_the_hosts_medians() -> None:
    assert noise_floor([]) == 0.0
    assert noise_floor([[1.0, 2.0]]) == 0.0  # too few repetitions to say
    se = 1.2533 * statistics.stdev([90.0, 100.0, 110.0]) / math.sqrt(3)
    assert noise_floor([[90.0, 100.0, 110.0]] * 3) == pytest.approx(0.6745 * se)
