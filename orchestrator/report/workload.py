"""The workload's own metrics of a host (report.json ``hosts[].tables["workload.metrics"]``)
as rows for report.html's "The workload's own metrics" part and summary.md: checked again
(report.json may be old or edited); the renderers escape the names and units."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.analysis.workload import TABLE
from orchestrator.values import dicts, number, visible


def _text(value: Any) -> str | None:
    return visible(value) if isinstance(value, str) else None


def workload_views(tables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per name the program wrote, in name order, as the parser kept them."""
    return [
        {
            "name": _text(row.get("name")) or "?",
            "unit": _text(row.get("unit")),
            "count": number(row.get("count")),
            "mean": number(row.get("mean")),
            "p50": number(row.get("p50")),
            "p95": number(row.get("p95")),
            "last": number(row.get("last")),
        }
        for row in dicts(tables.get(TABLE))
    ]


def workload_units(tables: Mapping[str, Any]) -> dict[str, str]:
    """name -> unit, for the charts' axes."""
    return {v["name"]: v["unit"] for v in workload_views(tables) if v["unit"]}
