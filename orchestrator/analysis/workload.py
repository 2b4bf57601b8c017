"""The workload's own numbers, summarized (pure): each name's values over the window become
``workload.<name>`` (the mean) and ``workload.<name>.p50``, ``.p95``, ``.last`` and
``.count``. What the program wrote is read by ``orchestrator/stages/workload.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.values import WORKLOAD_STATS

PREFIX = "workload."
TABLE = "workload.metrics"  # hosts[].tables: one row per name
STATS = WORKLOAD_STATS


@dataclass
class Points:
    """One name's values in the order the program wrote them, with its unit (the first
    one given) and the times it gave (device clock, seconds; None where it gave none)."""

    unit: str | None = None
    values: list[float] = field(default_factory=list)
    times: list[float | None] = field(default_factory=list)
    other_units: int = 0  # lines that named another unit than the first


def quantile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default, R's type 7)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(name: str, points: Points) -> dict[str, float]:
    """``workload.<name>`` and its statistics; nothing for a name without values."""
    values = points.values
    if not values:
        return {}
    key = PREFIX + name
    return {
        key: round(math.fsum(values) / len(values), 6),
        f"{key}.p50": round(quantile(values, 0.5), 6),
        f"{key}.p95": round(quantile(values, 0.95), 6),
        f"{key}.last": round(values[-1], 6),
        f"{key}.count": float(len(values)),
    }


def base_name(metric: str) -> str | None:
    """The workload name a ``workload.*`` metric summarizes (``workload.fps.p95`` -> ``fps``);
    None for other metrics. Names may hold dots, so a statistic is only the last part."""
    if not metric.startswith(PREFIX):
        return None
    rest = metric[len(PREFIX) :]
    head, _, tail = rest.rpartition(".")
    return head if head and tail in STATS else rest


def repetitions(points: Points, count: int) -> list[float]:
    """The window's values as ``count`` consecutive repetitions, each the mean of its
    share (by the program's times where it gave them all, else by the order it wrote
    them): the spread the nightly check tests, as a probe's repetitions are. Empty when a
    share would hold no value."""
    values = points.values
    if len(values) < count:
        return []
    times = points.times
    if len(times) == len(values) and all(t is not None for t in times):
        stamps = [float(t) for t in times if t is not None]
        start, end = min(stamps), max(stamps)
        span = (end - start) or 1.0
        slots = [min(count - 1, int((t - start) / span * count)) for t in stamps]
    else:
        slots = [index * count // len(values) for index in range(len(values))]
    shares: list[list[float]] = [[] for _ in range(count)]
    for slot, value in zip(slots, values, strict=True):
        shares[slot].append(value)
    if any(not share for share in shares):
        return []
    return [round(math.fsum(share) / len(share), 6) for share in shares]
