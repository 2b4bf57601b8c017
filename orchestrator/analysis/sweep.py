"""A benchmark sweep across the fleet (pure): per group (hardware model) and per KPI (each
name the workload wrote), each value's median over the group's hosts and its spread (min,
max), and the best value by the KPI's direction (analysis/directions.py: the campaign's
``target.launch.metrics`` or the built-in rules); none where either side may be better.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.analysis.directions import HIGHER, LOWER, rule_for
from orchestrator.analysis.workload import PREFIX
from orchestrator.values import dicts, mapping, number

RUNS_TABLE = "sweep.runs"  # hosts[].tables: one row per run (stages/sweep.py)


def sweep_summary(
    variable: str,
    values: Sequence[str],
    hosts: Sequence[tuple[str, str, Mapping[str, Any]]],
) -> dict[str, Any]:
    """``hosts``: (name, group, tables) of the hosts whose window can be compared."""
    by_group: dict[str, dict[str, dict[str, list[float]]]] = {}
    for _name, group, tables in hosts:
        for row in dicts(tables.get(RUNS_TABLE)):
            value = row.get("value")
            if value not in values:
                continue
            for kpi, mean in mapping(row.get("kpis")).items():
                number_ = number(mean)
                if number_ is not None:
                    found = by_group.setdefault(group, {}).setdefault(str(kpi), {})
                    found.setdefault(str(value), []).append(number_)
    groups: dict[str, Any] = {}
    for group, kpis in sorted(by_group.items()):
        groups[group] = {}
        for kpi, per_value in sorted(kpis.items()):
            cells = {
                value: {
                    "median": round(statistics.median(runs), 6),
                    "min": round(min(runs), 6),
                    "max": round(max(runs), 6),
                    "n": len(runs),
                }
                for value in values
                if (runs := per_value.get(value))
            }
            groups[group][kpi] = {"values": cells, "best": best_value(kpi, cells)}
    return {"variable": variable, "values": list(values), "groups": groups}


def best_value(kpi: str, cells: Mapping[str, Mapping[str, float]]) -> str | None:
    """The value whose group median is best, by the KPI's direction; None when the KPI
    has no direction or fewer than two values ran."""
    direction = rule_for(PREFIX + kpi).direction
    if direction not in (HIGHER, LOWER) or len(cells) < 2:
        return None
    pick = max if direction == HIGHER else min
    return pick(cells, key=lambda value: cells[value]["median"])
