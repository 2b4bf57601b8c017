"""summary.md's per-host tables of the profilers that have them (tracemalloc, memray,
line-profiler, nsys's NVTX ranges, open-files, prometheus, tcpdump's top talkers) and the
workload's own metrics: one table each, a row per host (or per host and name), every device
string escaped by md_text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.report.allocations import site_text
from orchestrator.report.descriptors import open_files_rows
from orchestrator.report.formats import MISSING
from orchestrator.report.lineprof import line_views
from orchestrator.report.mdtable import md_text
from orchestrator.report.mdtable import num as _num
from orchestrator.report.mdtable import table as _table
from orchestrator.report.nvtx import nvtx_views
from orchestrator.report.scraped import scrape_markdown
from orchestrator.report.sweep import sweep_view
from orchestrator.report.talkers import talker_markdown
from orchestrator.report.workload import workload_views
from orchestrator.values import dicts as _dicts
from orchestrator.values import mapping as _mapping


def profiler_tables(hosts: list[Mapping[str, Any]]) -> list[str]:
    """The profilers' per-host tables, those some host has, in a fixed order."""
    out: list[str] = []
    parts = (_allocations, _memray, _line_profile, _nvtx, _open_files, scrape_markdown)
    for part in (*parts, talker_markdown):
        out += part(hosts)
    return out


def sweep_tables(report: Mapping[str, Any]) -> list[str]:
    """A sweep: per KPI, a row per group with each value's median and the best value."""
    view = sweep_view(report)
    if view is None:
        return []
    out = [f"## Sweep over {md_text(view['variable'])}", ""]
    for part in view["kpis"]:
        header = ["group", *(f"{view['variable']}={v}" for v in view["steps"]), "best"]
        rows = [
            [
                md_text(row["group"]),
                *(_num(cell["median"], 3) if cell else MISSING for cell in row["cells"]),
                md_text(row["best"]) if row["best"] is not None else MISSING,
            ]
            for row in part["rows"]
        ]
        right = set(range(1, len(view["steps"]) + 1))
        out += [
            f"### {md_text(part['kpi'])}",
            "",
            *_table([md_text(h) for h in header], rows, right),
            "",
        ]
    return out


def workload_table(hosts: list[Mapping[str, Any]]) -> list[str]:
    """The workload's own metrics, each host's names (FLEETPROF_METRICS_FILE)."""
    return _workload(hosts)


def _allocations(hosts: list[Mapping[str, Any]]) -> list[str]:
    """One table: each host's site that grew most (tracemalloc), and its traced peak."""
    rows: list[list[str]] = []
    for host in hosts:
        tables, metrics = _mapping(host.get("tables")), _mapping(host.get("metrics"))
        growth = _dicts(tables.get("tracemalloc.growth"))
        if not growth and "tracemalloc.peak_mb" not in metrics:
            continue
        top = growth[0] if growth else {}
        rows.append(
            [
                md_text(host.get("name")),
                md_text(site_text(top)) if top else MISSING,
                _num(top.get("growth_mb"), 3),
                _num(top.get("mb_per_min"), 3),
                _num(metrics.get("tracemalloc.growth_mb_per_min"), 3),
                _num(metrics.get("tracemalloc.peak_mb"), 2),
            ]
        )
    if not rows:
        return []
    header = ["host", "top growth site", "grew MB", "MB/min", "all MB/min", "peak MB"]
    return ["## Allocations per host", "", *_table(header, rows, {2, 3, 4, 5}), ""]


def _memray(hosts: list[Mapping[str, Any]]) -> list[str]:
    """One table: each host's site holding the most at the peak (memray), its peak and
    what it left allocated."""
    rows: list[list[str]] = []
    for host in hosts:
        tables, metrics = _mapping(host.get("tables")), _mapping(host.get("metrics"))
        peak = _dicts(tables.get("memray.peak"))
        if not peak and "memray.peak_mb" not in metrics:
            continue
        top = peak[0] if peak else {}
        rows.append(
            [
                md_text(host.get("name")),
                md_text(f"{top.get('function') or '?'} {site_text(top)}") if top else MISSING,
                _num(top.get("size_mb"), 3),
                _num(metrics.get("memray.peak_mb"), 2),
                _num(metrics.get("memray.leaked_mb"), 2),
                _num(metrics.get("memray.total_allocated_mb"), 1),
            ]
        )
    if not rows:
        return []
    header = ["host", "top site at the peak", "its MB", "peak MB", "leaked MB", "allocated MB"]
    return ["## memray per host", "", *_table(header, rows, {2, 3, 4, 5}), ""]


def _line_profile(hosts: list[Mapping[str, Any]]) -> list[str]:
    """One table: each host's profiled functions (line-profiler) and the hottest line of each."""
    rows: list[list[str]] = []
    for host in hosts:
        for view in line_views(_mapping(host.get("tables"))):
            hot = view["hottest"] or {}
            rows.append(
                [
                    md_text(host.get("name")),
                    md_text(view["function"]),
                    _num(view["time_s"], 3),
                    md_text(hot.get("line")) if hot else MISSING,
                    _num(hot.get("pct"), 1),
                    md_text(hot.get("text") or "") if hot else MISSING,
                ]
            )
    if not rows:
        return []
    header = ["host", "function", "time s", "hottest line", "of function %", "source"]
    return ["## line-profiler per host", "", *_table(header, rows, {2, 4}), ""]


def _open_files(hosts: list[Mapping[str, Any]]) -> list[str]:
    """One table: each host's open descriptors (open-files), escaped here."""
    rows = [[md_text(cell) for cell in row] for row in open_files_rows(hosts)]
    header = ["host", "peak", "growth /min", "leak", "sockets", "most-opened path"]
    return ["## open-files per host", "", *_table(header, rows, {1, 2}), ""] if rows else []


def _nvtx(hosts: list[Mapping[str, Any]]) -> list[str]:
    """One table: each host's NVTX ranges (nsys), the most total time first."""
    rows = [
        [
            md_text(host.get("name")),
            md_text(view["name"]),
            md_text(view["style"] or ""),
            _num(view["count"], 0),
            _num(view["total_ms"], 3),
            _num(view["avg_us"], 1),
            _num(view["pct"], 1),
        ]
        for host in hosts
        for view in nvtx_views(_mapping(host.get("tables")))
    ]
    if not rows:
        return []
    header = ["host", "range", "style", "instances", "total ms", "avg µs", "of ranges %"]
    return ["## NVTX ranges per host (nsys)", "", *_table(header, rows, {3, 4, 5, 6}), ""]


def _workload(hosts: list[Mapping[str, Any]]) -> list[str]:
    """One table: each host's own metrics (FLEETPROF_METRICS_FILE), by name."""
    rows = [
        [
            md_text(host.get("name")),
            md_text(view["name"]),
            md_text(view["unit"] or ""),
            _num(view["count"], 0),
            _num(view["mean"], 3),
            _num(view["p50"], 3),
            _num(view["p95"], 3),
            _num(view["last"], 3),
        ]
        for host in hosts
        for view in workload_views(_mapping(host.get("tables")))
    ]
    if not rows:
        return []
    header = ["host", "metric", "unit", "values", "mean", "p50", "p95", "last"]
    return ["## The workload's own metrics", "", *_table(header, rows, {3, 4, 5, 6, 7}), ""]
