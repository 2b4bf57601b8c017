"""line-profiler's tables of a host (report.json ``hosts[].tables["line_profiler.*"]``) as
rows for report.html's "Line profile" part and summary.md: checked again (report.json may
be old or edited), the lines grouped under their function."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.values import dicts, number

FUNCTIONS = "line_profiler.functions"
LINES = "line_profiler.lines"


def _key(row: Mapping[str, Any]) -> tuple[str, str, Any]:
    """Which function a row is: a line's ``function_line``, a function's own ``line``."""
    start = row.get("function_line", row.get("line"))
    return (str(row.get("function")), str(row.get("file")), start)


def line_views(tables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each profiled function (the most time first) with its lines, in line order."""
    lines: dict[tuple[str, str, Any], list[dict[str, Any]]] = {}
    for row in dicts(tables.get(LINES)):
        text = row.get("text")
        lines.setdefault(_key(row), []).append(
            {
                "line": row.get("line") if isinstance(row.get("line"), int) else None,
                "hits": number(row.get("hits")),
                "time_s": number(row.get("time_s")),
                "per_hit_us": number(row.get("per_hit_us")),
                "pct": number(row.get("pct")),
                "text": text if isinstance(text, str) else None,
            }
        )
    views = []
    for function in dicts(tables.get(FUNCTIONS)):
        rows = lines.get(_key(function), [])
        views.append(
            {
                "function": str(function.get("function")),
                "site": f"{function.get('file')}:{function.get('line')}",
                "time_s": number(function.get("time_s")),
                "lines": rows,
                "hottest": max(rows, key=lambda r: r["pct"] or 0.0) if rows else None,
            }
        )
    return views
