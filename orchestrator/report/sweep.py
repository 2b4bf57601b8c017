"""A benchmark sweep in report.html and summary.md (report.json ``sweep``): per KPI, one
chart (x: the values, one line per group: its median) and one table row per group (each
value's median and its spread over the group's hosts, the best value). Checked again
(report.json may be old or edited); the template and md_text escape every name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.report.charts import PALETTE, Chart, Line, line_chart
from orchestrator.values import mapping, number, visible

MAX_KPIS = 12


def _text(value: Any) -> str:
    return visible(value) if isinstance(value, str) else str(value)


def sweep_view(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """variable, steps (the values), and per KPI its chart and rows; None without a sweep."""
    sweep = report.get("sweep")
    if not isinstance(sweep, Mapping):
        return None
    values = [_text(v) for v in sweep.get("values") or [] if isinstance(v, str | int | float)]
    groups = mapping(sweep.get("groups"))
    kpis: dict[str, list[dict[str, Any]]] = {}
    for group, per_kpi in sorted(groups.items()):
        for kpi, entry in sorted(mapping(per_kpi).items()):
            cells = mapping(mapping(entry).get("values"))
            best = mapping(entry).get("best")
            kpis.setdefault(_text(kpi), []).append(
                {
                    "group": _text(group),
                    "best": _text(best) if best is not None else None,
                    "cells": [_cell(cells.get(value)) for value in values],
                }
            )
    parts = []
    for kpi, rows in list(kpis.items())[:MAX_KPIS]:
        parts.append({"kpi": kpi, "rows": rows, "chart": _chart(kpi, values, rows)})
    # "steps", not "values": Jinja would read a dict's "values" as its method.
    return {"variable": _text(sweep.get("variable")), "steps": values, "kpis": parts}


def _cell(cell: Any) -> dict[str, float | None] | None:
    if not isinstance(cell, Mapping):
        return None
    return {key: number(cell.get(key)) for key in ("median", "min", "max", "n")}


def _chart(kpi: str, values: list[str], rows: list[dict[str, Any]]) -> Chart | None:
    lines = [
        Line(
            row["group"],
            PALETTE[index % len(PALETTE)],
            [float(i) for i in range(len(values))],
            [cell["median"] if cell else None for cell in row["cells"]],
        )
        for index, row in enumerate(rows)
    ]
    return line_chart(kpi, "", lines, categories=values, x_title="value")
