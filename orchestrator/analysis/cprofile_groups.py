"""cProfile across a group's hosts (pure): each group's functions summed over its hosts
(calls, own and cumulative time) with their share of the group's profiled time, for
report.json ``groups[].cprofile`` (docs/report.md).

A host's ``cprofile.functions`` table lists its top functions only (the profiler's
``top`` by own time, and as many by cumulative time), so a function's sums are over the
hosts that list it (``hosts``: how many); the share's denominator is every host's whole
profiled time (``cprofile.tottime_s``), so shares of different groups compare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.values import number as _number

GROUP_FUNCTIONS = 30  # a group's merged functions kept, by own time
CPROFILE_TOTAL = "cprofile.tottime_s"  # the host's whole profiled time (profilers/cprofile.py)

Key = tuple[str, str, int]


def merge_functions(
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    totals: Mapping[str, float | None],
    limit: int = GROUP_FUNCTIONS,
) -> dict[str, Any] | None:
    """``tables``: host -> its ``cprofile.functions`` rows; ``totals``: host -> its
    ``cprofile.tottime_s`` (None: the sum of its rows' own time stands in). The merged
    view, or None when no host has a row."""
    summed: dict[Key, dict[str, float]] = {}
    total = 0.0
    hosts = []
    for host in sorted(tables):
        rows = [r for r in tables[host] if isinstance(r, Mapping)]
        if not rows:
            continue
        hosts.append(host)
        own_total = 0.0
        for row in rows:
            values = [_number(row.get(k)) for k in ("calls", "primitive_calls")]
            times = [_number(row.get(k)) for k in ("tottime_s", "cumtime_s")]
            if None in values or None in times or not isinstance(row.get("function"), str):
                continue
            key = (str(row["function"]), str(row.get("file") or ""), int(row.get("line") or 0))
            into = summed.setdefault(
                key, {"calls": 0.0, "primitive": 0.0, "own": 0.0, "cum": 0.0, "hosts": 0.0}
            )
            names = ("calls", "primitive", "own", "cum")
            for name, value in zip(names, values + times, strict=True):
                into[name] += value or 0.0
            into["hosts"] += 1
            own_total += times[0] or 0.0
        listed = totals.get(host)
        total += listed if listed is not None and listed >= own_total else own_total
    if not hosts:
        return None
    ranked = sorted(summed.items(), key=lambda kv: (-kv[1]["own"], kv[0]))[: max(limit, 0)]
    return {
        "hosts": hosts,
        "tottime_s": round(total, 6),
        "functions": [_row(key, sums, total) for key, sums in ranked],
    }


def call_times(
    calls: int, primitive: int, tottime: float, cumtime: float, total: float
) -> dict[str, Any]:
    """A cProfile row's counts and times as report.json holds them, a host's or a
    group's: ``ncalls`` as pstats prints it, per-call times, own time as a % of ``total``."""
    return {
        "ncalls": calls if calls == primitive else f"{calls}/{primitive}",
        "calls": calls,
        "primitive_calls": primitive,
        "tottime_s": round(tottime, 6),
        "cumtime_s": round(cumtime, 6),
        "tottime_per_call_us": round(1e6 * tottime / calls, 3) if calls else None,
        "cumtime_per_call_us": round(1e6 * cumtime / primitive, 3) if primitive else None,
        "tottime_pct": round(100.0 * tottime / total, 2) if total > 0 else None,
    }


def _row(key: Key, sums: Mapping[str, float], total: float) -> dict[str, Any]:
    cum = sums["cum"]
    return {
        "function": key[0],
        "file": key[1],
        "line": key[2],
        **call_times(int(sums["calls"]), int(sums["primitive"]), sums["own"], cum, total),
        "cumtime_pct": round(100.0 * cum / total, 2) if total > 0 else None,
        "hosts": int(sums["hosts"]),
    }


def with_group_cprofile(
    groups: list[dict[str, Any]],
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    totals: Mapping[str, float | None],
) -> list[dict[str, Any]]:
    """report.json ``groups``, each with ``cprofile``: its hosts' functions merged
    (:func:`merge_functions`; ``tables`` holds the hosts with data only), or None."""
    for group in groups:
        names = [str(name) for name in group.get("hosts") or ()]
        group["cprofile"] = merge_functions(
            {n: tables[n] for n in names if n in tables}, {n: totals.get(n) for n in names}
        )
    return groups
