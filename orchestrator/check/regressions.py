"""Each host against its own baseline: which metrics got worse, and is it real (pure).

A metric is tested where both runs have repetitions behind it (the probe's ``samples``):
Welch's t-test (scipy, unequal variances), one-sided in the metric's bad direction
(:mod:`orchestrator.analysis.directions`), two-sided for metrics where either side is
unusual. Hundreds of hosts x metrics are tested each night, so the p-values of one check
are adjusted together (Benjamini-Hochberg, scipy's ``false_discovery_control``) and a
host x metric is flagged only when its q-value is at most ``alpha`` **and** its median
moved past ``regression_pct`` in the bad direction: significant and large enough to
matter.

A flagged finding is then confirmed or not by a re-measure of the flagged hosts alone
(:func:`confirm`), and described by what differs on the host from its peers
(:func:`fingerprint_diff`).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.analysis.directions import BOTH, HIGHER, LOWER, rule_for
from orchestrator.values import number

WELCH = "welch-t"
MIN_REPS = 2


def _stats() -> Any:
    # Imported on first use, as in compare.py: scipy takes a noticeable part of a second.
    from scipy import stats  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return stats


Samples = Mapping[str, Mapping[str, Sequence[float]]]  # host -> metric -> repetitions


@dataclass(frozen=True)
class Tested:
    """One host x metric tested against the baseline, before the FDR correction."""

    host: str
    group: str
    metric: str
    direction: str
    baseline: float  # medians
    value: float
    change_pct: float | None  # None where the baseline is 0
    p_value: float
    n: int
    baseline_n: int


@dataclass(frozen=True)
class Regression:
    """A tested host x metric after the correction: flagged or not."""

    host: str
    group: str
    metric: str
    direction: str
    baseline: float
    value: float
    change_pct: float | None
    test: str
    p_value: float
    q_value: float
    n: int
    baseline_n: int
    baseline_run: str | None
    flagged: bool
    confirmed: bool | None = None
    confirm: dict[str, Any] | None = None
    fingerprint: list[dict[str, Any]] = field(default_factory=list)
    stability: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["flagged"]
        return data


def _finite(values: Sequence[Any]) -> list[float]:
    return [n for v in values if (n := number(v)) is not None]


def _change_pct(baseline: float, value: float) -> float | None:
    if baseline == 0:
        return None
    return round((value - baseline) / abs(baseline) * 100.0, 2)


def worse_by(direction: str, change_pct: float | None, threshold_pct: float) -> bool:
    """Did the median move past the threshold on the side that hurts?"""
    if change_pct is None:
        return False
    if direction == HIGHER:
        return change_pct <= -threshold_pct
    if direction == LOWER:
        return change_pct >= threshold_pct
    return abs(change_pct) >= threshold_pct


def welch_p(current: Sequence[float], baseline: Sequence[float], direction: str) -> float:
    """One-sided (two-sided for BOTH) p-value that ``current`` is worse than ``baseline``."""
    alternative = {HIGHER: "less", LOWER: "greater"}.get(direction, "two-sided")
    if statistics.pvariance(current) == 0 and statistics.pvariance(baseline) == 0:
        # No spread on either side: the difference is exact, or there is none.
        a, b = current[0], baseline[0]
        hurts = {"less": a < b, "greater": a > b}.get(alternative, a != b)
        return 0.0 if hurts else 1.0
    result = _stats().ttest_ind(current, baseline, equal_var=False, alternative=alternative)
    p = float(result.pvalue)
    return p if math.isfinite(p) else 1.0


def run_tests(
    current: Samples,
    baseline: Samples,
    groups: Mapping[str, str],
    metrics: Sequence[str] | None = None,
) -> list[Tested]:
    """Every host x metric with at least MIN_REPS repetitions on both sides."""
    tested: list[Tested] = []
    for host in sorted(current):
        before = baseline.get(host)
        if before is None:
            continue
        names = sorted(current[host]) if metrics is None else sorted(metrics)
        for metric in names:
            direction = rule_for(metric).direction
            if direction not in (HIGHER, LOWER, BOTH):
                continue
            now = _finite(current[host].get(metric) or [])
            then = _finite(before.get(metric) or [])
            if len(now) < MIN_REPS or len(then) < MIN_REPS:
                continue
            base_median, median = statistics.median(then), statistics.median(now)
            tested.append(
                Tested(
                    host=host,
                    group=groups.get(host, ""),
                    metric=metric,
                    direction=direction,
                    baseline=round(base_median, 4),
                    value=round(median, 4),
                    change_pct=_change_pct(base_median, median),
                    p_value=welch_p(now, then, direction),
                    n=len(now),
                    baseline_n=len(then),
                )
            )
    return tested


def judge(
    tested: Sequence[Tested],
    *,
    alpha: float,
    regression_pct: float,
    baseline_run: str | None,
) -> list[Regression]:
    """Benjamini-Hochberg across everything tested; flag the significant, large, bad ones."""
    if not tested:
        return []
    q_values = _stats().false_discovery_control([t.p_value for t in tested], method="bh")
    judged = []
    for item, q in zip(tested, q_values, strict=True):
        q_value = float(q)
        judged.append(
            Regression(
                host=item.host,
                group=item.group,
                metric=item.metric,
                direction=item.direction,
                baseline=item.baseline,
                value=item.value,
                change_pct=item.change_pct,
                test=WELCH,
                p_value=item.p_value,
                q_value=q_value,
                n=item.n,
                baseline_n=item.baseline_n,
                baseline_run=baseline_run,
                flagged=q_value <= alpha
                and worse_by(item.direction, item.change_pct, regression_pct),
            )
        )
    return judged


def confirm(
    regression: Regression,
    remeasured: Sequence[float],
    baseline: Sequence[float],
    *,
    alpha: float,
    regression_pct: float,
    run_id: str,
) -> dict[str, Any]:
    """The re-measure of one flagged host x metric against the same baseline. A single
    targeted test, so no FDR correction: confirmed when it is again significant at
    ``alpha`` and past the threshold on the same side."""
    now, then = _finite(remeasured), _finite(baseline)
    if len(now) < MIN_REPS or len(then) < MIN_REPS:
        return {
            "run_id": run_id,
            "value": None,
            "change_pct": None,
            "p_value": None,
            # Nothing to judge by: the finding stands unconfirmed, it is not cleared.
            "confirmed": None,
            "reason": "the re-measure brought no repetitions back",
        }
    median = statistics.median(now)
    change = _change_pct(statistics.median(then), median)
    p = welch_p(now, then, regression.direction)
    return {
        "run_id": run_id,
        "value": round(median, 4),
        "change_pct": change,
        "p_value": p,
        "confirmed": p <= alpha and worse_by(regression.direction, change, regression_pct),
        "reason": None,
    }


# --- what differs on the host -------------------------------------------------------------

# Run metrics that explain a slow device, with the smallest difference worth a mention.
RUN_KEYS: dict[str, float] = {
    "thermal.max_c": 3.0,
    "cpufreq.reduced_time_pct": 5.0,
    "cpufreq.capped_time_pct": 5.0,
    "cpufreq.min_ratio": 0.05,
}
RELATIVE_TOLERANCE = 0.05


def _differs(value: Any, peers: Sequence[Any], floor: float) -> tuple[bool, Any]:
    numbers = [p for p in peers if isinstance(p, int | float) and not isinstance(p, bool)]
    if isinstance(value, int | float) and not isinstance(value, bool) and numbers:
        typical = statistics.median(numbers)
        tolerance = max(floor, abs(typical) * RELATIVE_TOLERANCE)
        return abs(value - typical) > tolerance, round(typical, 3)
    texts = [str(p) for p in peers if p is not None]
    if not texts:
        return value is not None and bool(peers), None
    common, _ = Counter(texts).most_common(1)[0]
    return str(value) != common if value is not None else True, common


def fingerprint_diff(
    host: Mapping[str, Any], peers: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Keys (kernel, firmware, CPU governor, frequencies, quota, temperature, throttled
    time) where the host is not like its peers: ``{key, value, peers}`` with the peers'
    most common value (the median for numbers). Each mapping is one host's flattened
    fingerprint (see :func:`host_fingerprint`)."""
    if not peers:
        return []
    keys = sorted(set(host) | {k for p in peers for k in p})
    found = []
    for key in keys:
        floor = RUN_KEYS.get(key, 0.0)
        differs, typical = _differs(host.get(key), [p.get(key) for p in peers], floor)
        if differs:
            found.append({"key": key, "value": host.get(key), "peers": typical})
    return found


def host_fingerprint(
    facts: Mapping[str, Any] | None, metrics: Mapping[str, float]
) -> dict[str, Any]:
    """One host's facts.json fingerprint plus the run metrics that explain slowness."""
    facts = facts or {}
    flat: dict[str, Any] = {"kernel": facts.get("kernel"), "os": facts.get("os")}
    fingerprint = facts.get("fingerprint")
    if isinstance(fingerprint, Mapping):
        flat.update({str(k): v for k, v in fingerprint.items()})
    for key in RUN_KEYS:
        if key in metrics:
            flat[key] = metrics[key]
    return flat
