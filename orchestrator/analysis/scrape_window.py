"""Prometheus series over a window (pure): a counter's increase with its resets, a gauge's
mean and max, a histogram's quantiles from its buckets' increases as PromQL's
``histogram_quantile`` interpolates them. The profiler ``prometheus`` feeds it the scrapes
of one endpoint (orchestrator/profilers/prometheus.py)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

Points = Sequence[tuple[float, float]]
"""(time in seconds, value), in time order."""


def increase(points: Points) -> float | None:
    """How much a counter grew over ``points``: each fall is a reset, after which the
    counter grew from 0 to its new value (PromQL's ``increase``, without extrapolation)."""
    if len(points) < 2:
        return None
    grown = 0.0
    for (_, before), (_, after) in itertools.pairwise(points):
        grown += after - before if after >= before else after
    return grown


def rate(points: Points) -> float | None:
    """A counter's increase per second between its first and last point."""
    grown = increase(points)
    span = points[-1][0] - points[0][0] if points else 0.0
    if grown is None or span <= 0:
        return None
    return grown / span


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of observations counted in cumulative ``buckets`` ((upper bound,
    count) sorted by bound, the last +Inf), by linear interpolation inside the bucket the
    rank falls in (PromQL's ``histogram_quantile``): the lowest bucket starts at 0 unless
    its bound is not positive; a rank in the +Inf bucket answers the highest finite bound;
    counts that fall with the bound (a reset between two buckets' reads) are evened out."""
    if not 0 <= q <= 1 or len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return None
    monotone: list[tuple[float, float]] = []
    highest = 0.0
    for bound, count in buckets:
        highest = max(highest, count)
        monotone.append((bound, highest))
    total = monotone[-1][1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, (_, count) in enumerate(monotone) if count >= rank)
    if index == len(monotone) - 1:
        return monotone[-2][0]
    bound, count = monotone[index]
    if index == 0:
        if bound <= 0:
            return bound
        start, below = 0.0, 0.0
    else:
        start, below = monotone[index - 1]
    if count == below:
        return bound
    return start + (bound - start) * (rank - below) / (count - below)


def bucket_increases(scrapes: Sequence[dict[float, float]]) -> list[tuple[float, float]]:
    """Each bucket's increase over ``scrapes`` (cumulative count by upper bound, in time
    order), for the bounds the last scrape has; a bucket a scrape lacks is read from the
    others only."""
    if len(scrapes) < 2:
        return []
    out: list[tuple[float, float]] = []
    for bound in sorted(scrapes[-1]):
        points = [(float(i), s[bound]) for i, s in enumerate(scrapes) if bound in s]
        grown = increase(points)
        if grown is not None:
            out.append((bound, grown))
    return out
