"""tracemalloc's and memray's tables of a host (report.json ``hosts[].tables["tracemalloc.*"]``
and ``["memray.*"]``) as rows for report.html's "Allocations" and "memray" parts: checked
again (report.json may be old or edited), each site as ``file:line``, its traceback as one
folded list."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.values import dicts, number

TABLES = {
    "growth": "tracemalloc.growth",
    "by_size": "tracemalloc.by_size",
    "by_count": "tracemalloc.by_count",
}


MEMRAY_TABLES = {
    "peak": "memray.peak",
    "leaked": "memray.leaked",
    "by_size": "memray.by_size",
    "by_count": "memray.by_count",
}


def site_text(row: Mapping[str, Any]) -> str:
    """A site as ``file:line`` (``?`` for what is missing)."""
    line = row.get("line")
    return f"{row.get('file') or '?'}:{line if isinstance(line, int) else '?'}"


def _row(row: Mapping[str, Any]) -> dict[str, Any]:
    traceback = row.get("traceback")
    frames = [str(f) for f in traceback] if isinstance(traceback, list) else []
    function = row.get("function")
    return {
        "site": site_text(row),
        "function": function if isinstance(function, str) else None,
        "size_mb": number(row.get("size_mb")),
        "count": number(row.get("count")),
        "growth_mb": number(row.get("growth_mb")),
        "count_diff": number(row.get("count_diff")),
        "mb_per_min": number(row.get("mb_per_min")),
        "traceback": frames[1:],  # the first frame is the site itself
    }


def allocation_views(tables: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The host's three tracemalloc tables as template rows; empty when it has none."""
    return {
        key: [_row(row) for row in dicts(tables.get(name))]
        for key, name in TABLES.items()
        if dicts(tables.get(name))
    }


def memray_views(tables: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The host's four memray tables as template rows; empty when it has none."""
    return {
        key: [_row(row) for row in dicts(tables.get(name))]
        for key, name in MEMRAY_TABLES.items()
        if dicts(tables.get(name))
    }
