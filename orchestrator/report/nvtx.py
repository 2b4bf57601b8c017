"""nsys's NVTX range summary of a host (report.json ``hosts[].tables["nvtx_ranges"]``) as
rows for report.html's "NVTX ranges" part and summary.md: checked again (report.json may be
old or edited); the renderers escape the names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.profilers.nsys import NVTX_TABLE
from orchestrator.values import dicts, number, visible


def _text(value: Any) -> str | None:
    return visible(value) if isinstance(value, str) else None


def nvtx_views(tables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The host's NVTX ranges, the most total time first, as the parser kept them."""
    return [
        {
            "name": _text(row.get("name")) or "?",
            "style": _text(row.get("style")),
            "count": number(row.get("count")),
            "total_ms": number(row.get("total_ms")),
            "avg_us": number(row.get("avg_us")),
            "med_us": number(row.get("med_us")),
            "min_us": number(row.get("min_us")),
            "max_us": number(row.get("max_us")),
            "pct": number(row.get("pct")),
        }
        for row in dicts(tables.get(NVTX_TABLE))
    ]
