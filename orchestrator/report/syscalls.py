"""strace's syscall table of a host (report.json ``hosts[].tables["strace.syscalls"]``) as
rows for report.html's "System calls" part: checked again (report.json may be old or
edited), its first SYSCALL_ROWS rows; the renderer escapes the names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.profilers.strace import TABLE
from orchestrator.values import dicts, number, visible

SYSCALL_ROWS = 20


def syscall_views(tables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The host's syscalls, the most time first, as the parser kept them."""
    return [
        {
            "syscall": visible(name) if isinstance(name := row.get("syscall"), str) else "?",
            **{
                key: number(row.get(key))
                for key in ("calls", "calls_per_s", "errors", "seconds", "usecs_per_call")
            },
            "time_pct": number(row.get("time_pct")),
        }
        for row in dicts(tables.get(TABLE))[:SYSCALL_ROWS]
    ]
