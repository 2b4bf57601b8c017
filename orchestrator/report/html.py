"""``report.json`` -> one self-contained HTML page.

The page loads nothing from anywhere: CSS and the few lines of JS are inline, the flame
graphs are SVG drawn here. Every string in a report can come from a device (host
names, function and file names, reasons) and is escaped: the template autoescapes and
the SVG is built from ``markupsafe.escape``-d pieces. A Content-Security-Policy allows
only the page's own script (by hash), so even a missed escape could not run code.

Only layout happens here; every number shown is already in the report.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from orchestrator.analysis.fleet import CPROFILE_EDGES, CPROFILE_TABLE
from orchestrator.analysis.stacks import gc_paused
from orchestrator.report.allocations import allocation_views, memray_views
from orchestrator.report.charts import Chart, group_charts, host_charts, trend_charts
from orchestrator.report.check_views import (
    check_view,
    flagged_by_metric,
    group_name,
    regression_view,
)
from orchestrator.report.descriptors import open_files_view
from orchestrator.report.flames import FLAME_WIDTH as FLAME_WIDTH
from orchestrator.report.flames import diff_flame_svg as diff_flame_svg
from orchestrator.report.flames import flame_svg as flame_svg
from orchestrator.report.flames import frame_colour as frame_colour
from orchestrator.report.formats import (
    REGRESSION_KEYS,
    fmt_count,
    fmt_duration,
    fmt_num,
    fmt_sci,
    fmt_signed,
    text_or_none,
)
from orchestrator.report.lineprof import line_views
from orchestrator.report.nvtx import nvtx_views
from orchestrator.report.scraped import scrape_views
from orchestrator.report.sweep import sweep_view
from orchestrator.report.syscalls import syscall_views
from orchestrator.report.talkers import talker_views
from orchestrator.report.workload import workload_units, workload_views
from orchestrator.values import dicts as _dicts
from orchestrator.values import mapping as _mapping
from orchestrator.values import number as _number

STATUSES = ("ok", "partial", "failed", "unreachable", "skipped", "busy")
"""Known host statuses, in the order the page lists them; each has a CSS class."""

VERDICTS = ("pass", "findings", "incomplete")
"""The nightly check's verdicts (docs/check.md); each has a CSS class."""

# Hosts get their sections open by default only in a small fleet; in a big one the
# fleet table is the overview and a section opens on demand.
OPEN_SECTIONS_UP_TO = 4

# Every host's section has its charts and flame graph up to this many hosts (the analysis
# diffs at most this many hosts against their group, too). In a bigger fleet only the
# hosts it diffs (the outliers first) have them drawn, the others their tables: a flame
# graph is about 200 KB of SVG and a host's charts 50 KB, and 500 hosts made a page of
# 220 MB that browsers would not open. report.json keeps every host's series and tree.
DRAWN_UP_TO = 50
# Of a drawn host, the busiest threads and processes get a flame graph of their own each.
PARTS_DRAWN = 8
CPROFILE_ROWS = 15  # cProfile functions and edges shown per host

# The hot-function matrix's cells are coloured by self %, full at the matrix's maximum.
HEAT_RGB = (230, 85, 13)

# Collapse/expand all sections and filter the fleet table. Kept constant so the page's
# CSP can allow exactly this script by its hash. Its last line marks the page when it ran
# to the end: the browser test looks for that mark.
_SCRIPT = """
document.querySelectorAll("[data-toggle]").forEach(function (b) {
  b.addEventListener("click", function () {
    var open = b.getAttribute("data-toggle") === "open";
    document.querySelectorAll("details.host").forEach(function (d) { d.open = open; });
  });
});
var filter = document.getElementById("fleet-filter");
if (filter) {
  filter.addEventListener("input", function () {
    var q = filter.value.toLowerCase();
    document.querySelectorAll("#fleet tbody tr").forEach(function (tr) {
      tr.hidden = q !== "" && tr.textContent.toLowerCase().indexOf(q) < 0;
    });
  });
}
document.documentElement.setAttribute("data-script", "done");
"""
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'"
)


def render_html(report: Mapping[str, Any]) -> str:
    """The whole page for one parsed ``report.json`` (schema ``fleetprof.report/1``)."""
    with gc_paused():
        return _render_html(report)


def _render_html(report: Mapping[str, Any]) -> str:
    diffs = _mapping(report.get("diffs"))
    host_diffs = _mapping(diffs.get("host_vs_group"))
    raw_hosts = _dicts(report.get("hosts"))
    draw_all = len(raw_hosts) <= DRAWN_UP_TO
    hosts = [
        _host_view(i, h, host_diffs, draw_all or str(h.get("name", "?")) in host_diffs)
        for i, h in enumerate(raw_hosts, start=1)
    ]
    anchors = {h.name: h.index for h in reversed(hosts)}  # a repeated name: its first
    summary = _mapping(report.get("summary"))
    compare = _mapping(report.get("compare"))
    template = _environment().get_template("report.html.j2")
    regressions = _dicts(report.get("regressions"))
    check = check_view(report.get("check"))
    return template.render(
        report=report,
        hosts=hosts,
        anchors=anchors,
        open_sections=len(hosts) <= OPEN_SECTIONS_UP_TO,
        counts=[(s, summary.get(s, 0)) for s in STATUSES if s != "busy" or summary.get(s)],
        host_count=summary.get("hosts", len(hosts)),
        group_by=str(compare.get("group_by") or "hw_model"),
        threshold=compare.get("threshold"),
        groups=[_group_view(g, raw_hosts) for g in _dicts(report.get("groups"))],
        outliers=[_outlier_view(o) for o in _dicts(report.get("outliers"))],
        matrix=_matrix_view(report.get("function_matrix"), raw_hosts),
        cprofile_matrix=_matrix_view(report.get("cprofile_function_matrix"), raw_hosts),
        growth_matrix=_matrix_view(report.get("tracemalloc_growth_matrix"), raw_hosts),
        memray_matrix=_matrix_view(report.get("memray_peak_matrix"), raw_hosts),
        strace_matrix=_matrix_view(report.get("strace_syscall_matrix"), raw_hosts),
        comparisons=_comparisons(diffs.get("group_vs_group")),
        check=check,
        regressions=[regression_view(r) for r in regressions],
        regression_columns=[c for c in _columns(regressions) if c not in REGRESSION_KEYS],
        trends=trend_charts(report.get("history"), flagged_by_metric(report)),
        commands=_command_views(report.get("processes")),
        sweep=sweep_view(report),
        csp=Markup(CONTENT_SECURITY_POLICY),  # our constant; quotes must stay quotes
        script=Markup(_SCRIPT),
    )


@functools.cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("orchestrator.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt_num
    env.filters["count"] = fmt_count
    env.filters["duration"] = fmt_duration
    env.filters["status_class"] = status_class
    env.filters["signed"] = fmt_signed
    env.filters["verdict_class"] = verdict_class
    env.filters["sci"] = fmt_sci
    return env


# -- formatting helpers (also used as template filters) ---------------------------------


def status_class(status: Any) -> str:
    """A CSS class for a status; unknown values get a neutral one, never their own text."""
    return f"st-{status}" if status in STATUSES else "st-unknown"


def verdict_class(verdict: Any) -> str:
    """A CSS class for a check verdict, like :func:`status_class`."""
    return f"v-{verdict}" if verdict in VERDICTS else "st-unknown"


# -- views: the report's values, defaulted and shaped for the template ------------------


@dataclass(frozen=True)
class HostView:
    index: int
    name: str
    hw_model: str
    arch: str
    status: str
    reason: str | None
    start_offset_ms: Any
    samples: Any
    effective_rate_hz: Any
    requested_rate_hz: Any
    profilers: list[tuple[str, Any, Any]]
    metrics: list[tuple[str, Any]]
    top_functions: list[dict[str, Any]]
    flame_svg: Markup | None
    data_quality: list[str]
    group: str
    charts: list[Chart]
    diff_svg: Markup | None
    undrawn: bool = False  # the host has charts or a flame graph the page leaves out
    # py-spy's breakdown of the host's samples (tables pyspy.threads / .processes / .native)
    threads: list[dict[str, Any]] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)
    native: list[dict[str, Any]] = field(default_factory=list)
    hot_lines: list[dict[str, Any]] = field(default_factory=list)  # under the flame graph
    # cProfile's functions by own time, and the edges of the top ones (_cprofile_views)
    cprofile: list[dict[str, Any]] = field(default_factory=list)
    cprofile_edges: list[dict[str, Any]] = field(default_factory=list)
    allocations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # tracemalloc
    memray: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    line_profile: list[dict[str, Any]] = field(default_factory=list)  # line-profiler
    nvtx: list[dict[str, Any]] = field(default_factory=list)  # nsys's NVTX range summary
    syscalls: list[dict[str, Any]] = field(default_factory=list)  # strace's summary
    workload: list[dict[str, Any]] = field(default_factory=list)  # the program's own metrics
    open_files: dict[str, Any] = field(default_factory=dict)  # open-files (descriptors.py)
    prometheus: list[dict[str, Any]] = field(default_factory=list)  # scraped families
    talkers: dict[str, Any] = field(default_factory=dict)  # tcpdump's top talkers


def _hot_line_rows(value: Any) -> list[dict[str, Any]]:
    """report.json ``hot_lines`` (a host's or a group's) -> one row per line, the function
    named on its first line only."""
    rows = []
    for function in _dicts(value):
        file = text_or_none(function.get("file"))
        for index, line in enumerate(_dicts(function.get("lines"))):
            number = line.get("line")
            rows.append(
                {
                    "function": str(function.get("function", "")) if index == 0 else "",
                    "where": f"{file or '?'}:{number if isinstance(number, int) else '?'}",
                    "self_pct": line.get("self_pct"),
                    "self_bar": _bar(line.get("self_pct")),
                    "function_pct": line.get("function_pct"),
                    "text": text_or_none(line.get("text")),
                    "first": index == 0,
                }
            )
    return rows


def _host_view(
    index: int,
    host: Mapping[str, Any],
    host_diffs: Mapping[str, Any] | None = None,
    drawn: bool = True,
) -> HostView:
    metrics = _mapping(host.get("metrics"))
    profilers = [
        (str(name), info.get("status"), info.get("reason"))
        for name, info in _mapping(host.get("profilers")).items()
        if isinstance(info, Mapping)
    ]
    tops = [
        {
            "function": str(t.get("function", "")),
            "file": t.get("file"),
            "self_pct": t.get("self_pct"),
            "total_pct": t.get("total_pct"),
            "self_bar": _bar(t.get("self_pct")),
            "total_bar": _bar(t.get("total_pct")),
        }
        for t in _dicts(host.get("top_functions"))
    ]
    flame = host.get("flamegraph")
    reason = host.get("reason")
    name = str(host.get("name", "?"))
    group = group_name(host)
    diff = _mapping(host_diffs).get(name)
    return HostView(
        index=index,
        name=name,
        hw_model=str(host.get("hw_model") or "unknown"),
        arch=str(host.get("arch") or "?"),
        status=str(host.get("status") or "unknown"),
        reason=None if reason is None else str(reason),
        start_offset_ms=host.get("start_offset_ms"),
        samples=metrics.get("pyspy.samples"),
        effective_rate_hz=metrics.get("pyspy.effective_rate_hz"),
        requested_rate_hz=metrics.get("pyspy.requested_rate_hz"),
        profilers=profilers,
        metrics=sorted((str(k), v) for k, v in metrics.items()),
        top_functions=tops,
        flame_svg=flame_svg(flame) if drawn and isinstance(flame, Mapping) else None,
        data_quality=[str(w) for w in _list(host.get("data_quality"))],
        group=group,
        charts=(
            host_charts(host.get("series"), workload_units(_mapping(host.get("tables"))))
            if drawn
            else []
        ),
        diff_svg=(
            diff_flame_svg(diff, name, f"group {group}") if isinstance(diff, Mapping) else None
        ),
        undrawn=not drawn
        and (
            (isinstance(flame, Mapping) and bool(flame.get("value")))
            or bool(_mapping(host.get("series")))
        ),
        **_breakdown_views(_mapping(host.get("tables")), drawn),
        hot_lines=_hot_line_rows(host.get("hot_lines")),
        **_cprofile_views(_mapping(host.get("tables"))),
        allocations=allocation_views(_mapping(host.get("tables"))),
        memray=memray_views(_mapping(host.get("tables"))),
        line_profile=line_views(_mapping(host.get("tables"))),
        nvtx=nvtx_views(_mapping(host.get("tables"))),
        syscalls=syscall_views(_mapping(host.get("tables"))),
        workload=workload_views(_mapping(host.get("tables"))),
        open_files=open_files_view(_mapping(host.get("tables")), metrics),
        prometheus=scrape_views(_mapping(host.get("tables"))),
        talkers=talker_views(_mapping(host.get("tables")), metrics),
    )


def _cprofile_views(tables: Mapping[str, Any]) -> dict[str, Any]:
    """The host's cProfile tables (metrics.md, cprofile), their first CPROFILE_ROWS rows."""
    rows = _dicts(tables.get(CPROFILE_TABLE))[:CPROFILE_ROWS]
    return {
        "cprofile": [dict(r, tottime_bar=_bar(r.get("tottime_pct"))) for r in rows],
        "cprofile_edges": [dict(e) for e in _dicts(tables.get(CPROFILE_EDGES))[:CPROFILE_ROWS]],
    }


def _part_row(row: Mapping[str, Any], drawn: bool, rank: int) -> dict[str, Any]:
    """A thread's or process's row; its flame graph drawn for the busiest ones."""
    flame = row.get("flamegraph")
    tops = _dicts(row.get("top_functions"))
    threads = [str(t) for t in _list(row.get("threads"))]
    return {
        "pid": row.get("pid"),
        "parent_pid": row.get("parent_pid"),
        "tid": text_or_none(row.get("tid")),
        "name": text_or_none(row.get("name")),
        "command": text_or_none(row.get("command")),
        "samples": row.get("samples"),
        "share_pct": row.get("share_pct"),
        "share_bar": _bar(row.get("share_pct")),
        "threads": ", ".join(threads),
        "top_function": text_or_none(tops[0].get("function")) if tops else None,
        "flame_svg": (
            flame_svg(flame)
            if drawn and rank < PARTS_DRAWN and isinstance(flame, Mapping)
            else None
        ),
    }


def _breakdown_views(tables: Mapping[str, Any], drawn: bool) -> dict[str, Any]:
    native = [
        {
            "library": str(r.get("library", "?")),
            "self_pct": r.get("self_pct"),
            "self_bar": _bar(r.get("self_pct")),
            "unresolved_pct": r.get("unresolved_pct"),
        }
        for r in _dicts(tables.get("pyspy.native"))
    ]
    return {
        "threads": [
            _part_row(r, drawn, i) for i, r in enumerate(_dicts(tables.get("pyspy.threads")))
        ],
        "processes": [
            _part_row(r, drawn, i) for i, r in enumerate(_dicts(tables.get("pyspy.processes")))
        ],
        "native": native,
    }


def _command_views(rows: Any) -> list[dict[str, Any]]:
    """report.json ``processes``: the fleet's processes merged by command line."""
    views = []
    for i, row in enumerate(_dicts(rows)):
        view = _part_row(row, True, i)
        view["hosts"] = ", ".join(str(h) for h in _list(row.get("hosts")))
        view["count"] = row.get("processes")
        views.append(view)
    return views


def _group_view(
    group: Mapping[str, Any], hosts: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    names = [str(h) for h in _list(group.get("hosts"))]
    metrics = [
        (str(name), _mapping(stats)) for name, stats in _mapping(group.get("metrics")).items()
    ]
    by_name = {str(h.get("name")): h for h in reversed(hosts)}
    members = [(n, by_name[n].get("series")) for n in names if n in by_name]
    flame = group.get("flamegraph")
    return {
        "hw_model": group_name(group),
        "hosts": names,
        "metrics": sorted(metrics),
        "charts": group_charts(members),
        "flame_svg": flame_svg(flame) if isinstance(flame, Mapping) else None,
        "hot_lines": _hot_line_rows(group.get("hot_lines")),
        # cProfile's functions summed over the group's hosts (analysis/cprofile_groups.py)
        "cprofile": _cprofile_views(
            {CPROFILE_TABLE: _mapping(group.get("cprofile")).get("functions")}
        )["cprofile"],
    }


def _outlier_view(outlier: Mapping[str, Any]) -> dict[str, Any]:
    kind = str(outlier.get("kind") or "metric")
    function = outlier.get("function")
    return {
        "host": str(outlier.get("host", "?")),
        "group": group_name(outlier),
        "kind": kind,
        "metric": "" if outlier.get("metric") is None else str(outlier.get("metric")),
        "function": None if function is None else str(function),
        "file": None if outlier.get("file") is None else str(outlier.get("file")),
        "value": outlier.get("value"),
        "group_median": outlier.get("group_median"),
        "robust_z": outlier.get("robust_z"),
        "high": (_number(outlier.get("robust_z")) or 0.0) > 0,
    }


@dataclass(frozen=True)
class MatrixView:
    group_headers: list[tuple[str, int]]  # (group, how many host columns it spans)
    group_starts: set[int]  # the columns where a group begins (drawn with a divider)
    hosts: list[str]
    rows: list[tuple[str, str | None, list[tuple[Any, str, bool]]]]  # function, file, cells


def _matrix_view(matrix: Any, hosts: Sequence[Mapping[str, Any]]) -> MatrixView | None:
    """The hot-function matrix, its host columns under group headers. A cell is
    (self %, background style, deviant)."""
    matrix = _mapping(matrix)
    columns = [str(h) for h in _list(matrix.get("hosts"))]
    functions = _dicts(matrix.get("functions"))
    if not columns or not functions:
        return None
    group_of = {str(h.get("name")): group_name(h) for h in reversed(hosts)}
    headers: list[tuple[str, int]] = []
    for host in columns:
        group = group_of.get(host, "unknown")
        if headers and headers[-1][0] == group:
            headers[-1] = (group, headers[-1][1] + 1)
        else:
            headers.append((group, 1))
    cells = _list(matrix.get("cells"))
    deviant = _list(matrix.get("deviant"))
    peak = max((v for row in cells for v in map(_number, _list(row)) if v is not None), default=0.0)
    rows = []
    for i, function in enumerate(functions):
        values = _list(cells[i]) if i < len(cells) else []
        flags = _list(deviant[i]) if i < len(deviant) else []
        row = []
        for j in range(len(columns)):
            value = values[j] if j < len(values) else None
            flag = j < len(flags) and flags[j] is True
            row.append((value, _heat(value, peak), flag))
        file = function.get("file")
        rows.append((str(function.get("function", "")), None if file is None else str(file), row))
    starts, column = set(), 0
    for _, span in headers:
        starts.add(column)
        column += span
    return MatrixView(headers, starts, columns, rows)


def _heat(value: Any, peak: float) -> str:
    """A cell's background: the heat colour, more opaque for a bigger share. Only numbers
    go into it: it lands in a style attribute."""
    number = _number(value)
    if number is None or peak <= 0:
        return ""
    alpha = 0.06 + 0.74 * min(max(number / peak, 0.0), 1.0)
    red, green, blue = HEAT_RGB
    return f"background: rgba({red},{green},{blue},{alpha:.2f})"


def _comparisons(value: Any) -> list[dict[str, Any]]:
    comparisons = []
    for item in _dicts(value):
        a, b = str(item.get("a", "?")), str(item.get("b", "?"))
        tree = item.get("tree")
        svg = diff_flame_svg(tree, a, b) if isinstance(tree, Mapping) else None
        comparisons.append({"a": a, "b": b, "svg": svg})
    return comparisons


def _bar(pct: Any) -> float:
    """A bar width in percent, clamped: it lands in a style attribute, so only a number."""
    number = _number(pct)
    return 0.0 if number is None else round(min(max(number, 0.0), 100.0), 2)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(str(k) for k in row))
    return list(columns)
