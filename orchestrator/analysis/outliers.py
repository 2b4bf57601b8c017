"""Hosts that stand out from their group (pure).

The score is the robust z of Iglewicz and Hoaglin: ``0.6745 * (x - median) / MAD``, with
the median and the median absolute deviation taken over the group's hosts (the host
itself included, so one bad host cannot hide by moving the mean, as it would a standard
deviation). A host is an outlier when ``|z|`` reaches the campaign's
``compare.threshold`` (3.5 by default, their recommendation) on the side that hurts
(:mod:`orchestrator.analysis.directions`).

Two guards keep the score honest on real fleets:

- **The spread has a floor.** Identical boards running identical work differ by a
  fraction of a percent, so their MAD is close to zero and any wobble would score a huge
  z. The spread used is ``max(MAD, floor)``, where the floor is the largest of 5% of
  ``|median|`` (a host has to be about 26% off its peers, 3.5 / 0.6745 x 5%, before a
  tight group flags it: beyond run-to-run noise of a CPU-bound loop, well within what a
  throttled or starved board shows), the metric's own noise floor from the direction
  table (100 ms of start lateness, 2 degrees, ...), and an absolute epsilon so that a
  median of zero does not divide by zero.
- **Small groups never flag.** With fewer than three hosts there is no majority to
  call normal; such groups are still summarised in ``groups[]``.

Function shares get the same treatment: each function's self % on each host against the
group's per-host values, with a floor of 2 percentage points (a profile of a few
hundred samples moves a 45% function by about that much between runs), and only for
functions that matter (at least 5% self on the flagged host or on its peers' median).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.analysis.directions import SKIP, is_bad_side, rule_for

Z_FACTOR = 0.6745
RELATIVE_FLOOR = 0.05
ABSOLUTE_EPSILON = 1e-6
MIN_GROUP_HOSTS = 3
SHARE_FLOOR_PP = 2.0
SHARE_MIN_PCT = 5.0
SHARE_METRIC = "function.self_pct"

FunctionKey = tuple[str, str | None]


@dataclass(frozen=True)
class Outlier:
    host: str
    group: str  # the group's key value (hw_model by default), "hw_model" in report.json
    metric: str
    value: float
    group_median: float
    robust_z: float
    kind: str = "metric"  # metric | function_share
    function: str | None = None
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "hw_model": self.group,
            "metric": self.metric,
            "value": self.value,
            "group_median": self.group_median,
            "robust_z": self.robust_z,
            "kind": self.kind,
            "function": self.function,
            "file": self.file,
        }


def median_mad(values: Sequence[float]) -> tuple[float, float]:
    median = statistics.median(values)
    return median, statistics.median(abs(v - median) for v in values)


def spread_floor(median: float, metric_floor: float | None = None) -> float:
    """The smallest spread a value is compared with; see the module docstring."""
    return max(RELATIVE_FLOOR * abs(median), metric_floor or 0.0, ABSOLUTE_EPSILON)


def robust_z(value: float, median: float, mad: float, floor: float = ABSOLUTE_EPSILON) -> float:
    return Z_FACTOR * (value - median) / max(mad, floor, ABSOLUTE_EPSILON)


def metric_outliers(
    group: str, metrics: Mapping[str, Mapping[str, float]], threshold: float
) -> list[Outlier]:
    """``metrics``: host -> {metric: value} for the group's hosts that produced data."""
    by_metric: dict[str, dict[str, float]] = {}
    for host, values in metrics.items():
        for name, value in values.items():
            by_metric.setdefault(name, {})[host] = value
    found = []
    for name in sorted(by_metric):
        rule = rule_for(name)
        values = by_metric[name]
        if rule.direction == SKIP or len(values) < MIN_GROUP_HOSTS:
            continue
        median, mad = median_mad(list(values.values()))
        floor = spread_floor(median, rule.floor)
        for host in sorted(values):
            z = robust_z(values[host], median, mad, floor)
            if abs(z) >= threshold and is_bad_side(name, z):
                found.append(
                    Outlier(host, group, name, values[host], round(median, 4), round(z, 2))
                )
    return found


def function_share_outliers(
    group: str, shares: Mapping[str, Mapping[FunctionKey, float]], threshold: float
) -> list[Outlier]:
    """``shares``: host -> {(function, file): self %} for the group's hosts with a profile.

    A function missing from a host's profile took 0% there. Either side counts: a
    function taking far more (a hot spot) or far less (work that moved elsewhere) of one
    host's time than of its peers' is worth a look.
    """
    if len(shares) < MIN_GROUP_HOSTS:
        return []
    candidates = {key for per_host in shares.values() for key, pct in per_host.items()}
    candidates = {
        key for key in candidates if any(s.get(key, 0.0) >= SHARE_MIN_PCT for s in shares.values())
    }
    hosts = sorted(shares)
    found = []
    for key in sorted(candidates, key=lambda k: (k[0], k[1] or "")):
        values = [shares[h].get(key, 0.0) for h in hosts]
        median, mad = median_mad(values)
        floor = spread_floor(median, SHARE_FLOOR_PP)
        for host, value in zip(hosts, values, strict=True):
            z = robust_z(value, median, mad, floor)
            if abs(z) < threshold:
                continue
            peers = statistics.median(v for h, v in zip(hosts, values, strict=True) if h != host)
            if value < SHARE_MIN_PCT and peers < SHARE_MIN_PCT:
                continue
            found.append(
                Outlier(
                    host,
                    group,
                    SHARE_METRIC,
                    round(value, 2),
                    round(median, 2),
                    round(z, 2),
                    kind="function_share",
                    function=key[0],
                    file=key[1],
                )
            )
    return found


def severity(outliers: Sequence[Outlier]) -> dict[str, float]:
    """Per host, the largest |robust z| among its outliers."""
    worst: dict[str, float] = {}
    for item in outliers:
        worst[item.host] = max(worst.get(item.host, 0.0), abs(item.robust_z))
    return worst
