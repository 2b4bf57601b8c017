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
