"""open-files' tables and metrics of a host (report.json ``hosts[].tables["open_files.*"]``,
``fds.*``) as report.html's "Open files" part and summary.md's "open-files per host" rows:
checked again (report.json may be old or edited); every string stays text for the
renderers to escape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.report.formats import MISSING
from orchestrator.values import dicts, mapping, number

PATHS = "open_files.paths"
SOCKETS = "open_files.sockets"
KINDS = "open_files.kinds"
LISTENING = "open_files.listening"
MAX_ROWS = 100


def _text(value: Any) -> str:
    return value if isinstance(value, str) else MISSING


def open_files_view(tables: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The host's "Open files" part; empty when it has no open-files tables."""
    if not any(key in tables for key in (PATHS, SOCKETS, KINDS)):
        return {}
    return {
        "total_peak": number(metrics.get("fds.total_peak")),
        "growth_per_min": number(metrics.get("fds.growth_per_min")),
        "leak": number(metrics.get("fds.leak")) == 1.0,
        "kinds": _rows(tables.get(KINDS), ("kind",), ("first", "last", "peak")),
        "sockets": _rows(tables.get(SOCKETS), ("protocol", "state"), ("peak", "last")),
        "listening": [_text(row.get("socket")) for row in dicts(tables.get(LISTENING))[:MAX_ROWS]],
        "paths": _rows(tables.get(PATHS), ("path",), ("peak", "last")),
    }


def _rows(value: Any, texts: tuple[str, ...], numbers: tuple[str, ...]) -> list[dict[str, Any]]:
    """A table's first MAX_ROWS rows: ``texts`` kept where they are strings, ``numbers``
    where they are finite numbers (else shown as missing)."""
    return [
        {**{key: _text(row.get(key)) for key in texts}, **{k: number(row.get(k)) for k in numbers}}
        for row in dicts(value)[:MAX_ROWS]
    ]


def _count(value: float | None, digits: int = 0) -> str:
    return MISSING if value is None else f"{value:,.{digits}f}"


def open_files_rows(hosts: list[Mapping[str, Any]]) -> list[list[str]]:
    """summary.md's rows, one per host with open-files: host, peak descriptors, growth per
    minute, leak, sockets by state, the most-opened path (unescaped: the caller escapes)."""
    rows = []
    for host in hosts:
        view = open_files_view(mapping(host.get("tables")), mapping(host.get("metrics")))
        if not view:
            continue
        sockets = ", ".join(
            f"{s['protocol']} {s['state']} {_count(s['peak'])}" for s in view["sockets"]
        )
        top = view["paths"][0] if view["paths"] else None
        rows.append(
            [
                str(host.get("name")),
                _count(view["total_peak"]),
                _count(view["growth_per_min"], 1),
                "yes" if view["leak"] else "no",
                sockets or MISSING,
                f"{top['path']} ({_count(top['peak'])})" if top else MISSING,
            ]
        )
    return rows
