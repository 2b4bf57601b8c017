"""Allocation sites across hosts (pure): where each host's memory grew (tracemalloc) or
stood at its peak (memray), one row per site and one column per host, in the layout of
the hot-function matrix (``function_matrix``), so the report renders both alike.

A site is a function, its file and its line. A cell is the site's MiB on that host, null
where the host's table does not list it (each host lists its top sites only, so null
means "below that host's last row", not zero).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from orchestrator.values import number

MATRIX_SITES = 20

# report.json key -> (the hosts' table, the value of a row that is a cell).
SITE_MATRICES = {
    "tracemalloc_growth_matrix": ("tracemalloc.growth", "growth_mb"),
    "memray_peak_matrix": ("memray.peak", "size_mb"),
}
# The same layout for tables whose rows are named, not sites: the row's name column. A
# row is a name (the ``function`` of the layout) without a file.
NAMED_MATRICES = {
    "strace_syscall_matrix": ("strace.syscalls", "calls_per_s", "syscall"),
}

SiteKey = tuple[str, str, int | None]


def _key(row: Mapping[str, Any]) -> SiteKey | None:
    file = row.get("file")
    if not isinstance(file, str) or not file:
        return None
    line = row.get("line")
    function = row.get("function")
    return (
        function if isinstance(function, str) and function else "?",
        file,
        line if isinstance(line, int) and not isinstance(line, bool) else None,
    )


def named_key(column: str) -> Callable[[Mapping[str, Any]], SiteKey | None]:
    """A row's key by its ``column`` (a syscall's name), without file or line."""

    def key(row: Mapping[str, Any]) -> SiteKey | None:
        name = row.get(column)
        return (name, "", None) if isinstance(name, str) and name else None

    return key


def site_matrix(
    columns: Sequence[str],
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    value: str,
    limit: int = MATRIX_SITES,
    key_of: Callable[[Mapping[str, Any]], SiteKey | None] = _key,
) -> dict[str, Any] | None:
    """The ``limit`` sites with the largest ``value`` on any host x the hosts of
    ``columns`` that list some site (in that order); None where no host lists one.
    ``key_of``: a row's site (:func:`named_key` for rows that are names: file null)."""
    cells_by_host: dict[str, dict[SiteKey, float]] = {}
    for host in columns:
        found: dict[SiteKey, float] = {}
        for row in tables.get(host) or ():
            key, found_value = key_of(row), number(row.get(value))
            if key is not None and found_value is not None:
                found[key] = found.get(key, 0.0) + found_value
        if found:
            cells_by_host[host] = found
    hosts = [host for host in columns if host in cells_by_host]
    if not hosts:
        return None
    peak: dict[SiteKey, float] = {}
    for host in hosts:
        for key, cell in cells_by_host[host].items():
            peak[key] = max(peak.get(key, cell), cell)
    rows = sorted(peak, key=lambda k: (-peak[k], k[1], k[2] or 0, k[0]))[: max(limit, 0)]
    cells = [
        [
            round(cells_by_host[host][key], 3) if key in cells_by_host[host] else None
            for host in hosts
        ]
        for key in rows
    ]
    return {
        "functions": [
            {
                "function": function,
                "file": (file if line is None else f"{file}:{line}") if file else None,
            }
            for function, file, line in rows
        ],
        "hosts": hosts,
        "cells": cells,
        # No outlier test on sites (a host lists its top sites only): the layout's flags.
        "deviant": [[False] * len(hosts) for _ in rows],
    }
