"""`fleetprof compare` on identical re-runs: no significant change beyond the stated
false-positive rate, while a real move is found (docs/commands.md, compare).

The windows are simulated as real profiles behave: each host's window of 1,500 samples
has its own function shares around the program's true ones (phases longer than the
sampling interval fall differently in every run: Dirichlet with concentration 60, a 10%
function moves by about 4 points between identical runs, as the 6.3% -> 16.0% swing the
issue saw), then multinomial sampling inside the window.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped,import-not-found,unused-ignore]

from orchestrator.analysis.stacks import StackProfile, parse_folded
from orchestrator.check.compare import DEFAULT_ALPHA, compare_across_hosts

SHARES = np.array([30, 20, 12, 10, 8, 6, 5, 4, 3, 2], dtype=float) / 100.0
NAMES = [f"fn_{i}" for i in range(len(SHARES))]
HOSTS = 6
RUNS = 20
SAMPLES = 1500
CONCENTRATION = 60.0


def window(rng: np.random.Generator, shares: np.ndarray) -> StackProfile:
    counts = rng.multinomial(SAMPLES, rng.dirichlet(shares * CONCENTRATION))
    return parse_folded(
        "".join(
            f"main (app.py:1);{name} (app.py:{i + 2}) {n}\n"
            for i, (name, n) in enumerate(zip(NAMES, counts, strict=True))
            if n
        )
    )


def runs(seed: int, shares: np.ndarray = SHARES) -> list[dict[str, StackProfile]]:
    rng = np.random.default_rng(seed)
    return [{f"h{h}": window(rng, shares) for h in range(HOSTS)} for _ in range(RUNS)]


def compared(a: dict[str, StackProfile], b: dict[str, StackProfile]) -> Any:
    return compare_across_hosts({h: (a[h], b[h]) for h in a}, DEFAULT_ALPHA)


def sample_level_significant(a: dict[str, StackProfile], b: dict[str, StackProfile]) -> bool:
    """What compare did before: one chi-square per function on the merged sample counts
    (samples as independent draws), Benjamini-Hochberg across the functions."""
    total_a = sum(p.total_samples for p in a.values())
    total_b = sum(p.total_samples for p in b.values())
    p_values = []
    for name in NAMES:
        hits_a = sum(n for k, n in _self(a).items() if k == name)
        hits_b = sum(n for k, n in _self(b).items() if k == name)
        table = [[hits_a, total_a - hits_a], [hits_b, total_b - hits_b]]
        p_values.append(stats.chi2_contingency(table, correction=True).pvalue)
    return bool(min(stats.false_discovery_control(p_values, method="bh")) < DEFAULT_ALPHA)


def _self(profiles: dict[str, StackProfile]) -> dict[str, int]:
    found: dict[str, int] = {}
    for profile in profiles.values():
        for (function, _), n in profile.self_counts.items():
            found[function] = found.get(function, 0) + n
    return found


def test_identical_reruns_of_six_hosts_show_no_significant_change() -> None:
    """Twenty identical runs of six hosts, every pair of runs compared (190 comparisons):
    the share of comparisons with any significant function stays at the false discovery
    rate (alpha = 5%; under no change at all BH bounds the chance of any call by alpha),
    where the test on samples calls most of them significant."""
    history = runs(seed=13)
    pairs = list(combinations(range(RUNS), 2))
    flagged = [i for i, j in pairs if compared(history[i], history[j]).significant]
    rate = len(flagged) / len(pairs)
    assert rate <= 0.08, (rate, flagged)
    old = sum(sample_level_significant(history[i], history[j]) for i, j in pairs[:40])
    assert old >= 30, old  # the old test: most identical re-runs "changed"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_false_positive_rate_holds_over_independent_pairs(seed: int) -> None:
    history = runs(seed=100 + seed)
    flagged = sum(bool(compared(history[i], history[i + 1]).significant) for i in range(0, RUNS, 2))
    assert flagged <= 2  # of 10 independent comparisons, at alpha 5%


def test_a_real_move_of_one_function_is_found_across_six_hosts() -> None:
    """fn_3 10% -> 25% and fn_0 30% -> 15% on every host, under the same window noise
    (a 30% function's share moves by about 6 points between identical windows): found in
    most comparisons of six hosts (the power this noise leaves: 65-90% over seeds), and
    the calls of unchanged functions stay within the false discovery rate."""
    moved = SHARES.copy()
    moved[3], moved[0] = 0.25, 0.15
    before, after = runs(seed=7), runs(seed=8, shares=moved)
    up = down = calls = false_calls = 0
    for i in range(RUNS):
        result = compared(before[i], after[i])
        called = {c.function: c.direction for c in result.significant}
        up += called.get("fn_3") == "up"
        down += called.get("fn_0") == "down"
        calls += len(called)
        false_calls += len(set(called) - {"fn_0", "fn_3"})
    assert up >= 15 and down >= 12, (up, down)
    assert false_calls <= 0.1 * calls, (false_calls, calls)
