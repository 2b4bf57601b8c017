"""``report.json`` -> ``summary.md``: a short Markdown summary for tickets and CI comments.

GitHub-flavoured Markdown: the run, the status counts, the nightly check's verdict,
findings and regressions (when the report has ``check{}``, docs/check.md), a fleet table
with a few key metrics, the outliers and the top functions per group. Every device string
goes through :func:`md_text`, so a host or function name cannot open a link, an image, a
code span, raw HTML or a heading, nor break a table row. Only layout happens here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.report.allocations import site_text
from orchestrator.report.descriptors import open_files_rows
from orchestrator.report.formats import (
    MISSING,
    REGRESSION_KEYS,
    confirmed_text,
    fingerprint_text,
    stability_text,
)
from orchestrator.report.lineprof import line_views
from orchestrator.report.nvtx import nvtx_views
from orchestrator.report.workload import workload_views
from orchestrator.values import dicts as _dicts
from orchestrator.values import mapping as _mapping
from orchestrator.values import number as _number

STATUSES = ("ok", "partial", "failed", "unreachable", "skipped", "busy")

# The fleet table's metric columns, each shown only when some host has it: the first
# key a host has wins (the memory profiler's peak before the system sampler's).
KEY_METRICS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("samples", ("pyspy.samples",), 0),
    ("fps", ("workload.fps",), 1),
    ("target CPU %", ("target.cpu_pct.mean",), 1),
    ("RSS peak MB", ("memory.rss_peak_mb", "target.rss_mb.peak"), 1),
    ("max °C", ("thermal.max_c",), 1),
    ("min freq ratio", ("cpufreq.min_ratio",), 2),
)
MAX_ROWS = 100  # per table: a CI comment has a size limit; the HTML has everything
TOP_FUNCTIONS = 5
HOT_LINES = 5  # per group: its hottest lines, whichever function they are in
MAX_GROUP_HOSTS = 8  # host columns per group in the top-functions table
MAX_LISTED_HOSTS = 10  # host names in one line of text (the re-measured hosts)

# Backslash-escapable ASCII punctuation that means something inline in (GitHub) Markdown;
# < > & become entities instead, so no raw HTML survives. Line-start syntax (lists, "1.")
# cannot occur: a device string never starts a line here (table cells, after "### ").
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|~])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def md_text(value: Any) -> str:
    """A device string as literal Markdown text, on one line (a table cell is one line)."""
    text = "" if value is None else str(value)
    text = _CONTROL.sub(" ", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", text)


def _num(value: Any, digits: int = 1) -> str:
    number = _number(value)
    if number is None:
        return MISSING
    if digits == 0:
        return f"{round(number):,}"
    return f"{number:,.{digits}f}"


def _signed(value: Any) -> str:
    number = _number(value)
    return MISSING if number is None else f"{number:+.2f}"


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _group_of(item: Mapping[str, Any]) -> Any:
    return item.get("group") if item.get("group") is not None else item.get("hw_model")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """A GFM table; ``right``: the indices of right-aligned (numeric) columns. The header
    cells are ours, the row cells already escaped."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        lines.append("")
        lines.append(f"… and {len(rows) - MAX_ROWS} more (see report.html)")
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """The whole summary.md for one parsed ``report.json`` (schema ``fleetprof.report/1``).

    A report with ``check{}`` starts (after the run's header) with the check's section,
    which holds the regressions; without it they come last."""
    return _render(report, check_always=False)


def check_markdown(report: Mapping[str, Any]) -> str:
    """``fleetprof check --markdown FILE``: the check's verdict and findings, then the run's
    summary. The same text as summary.md for a check's report; a report without
    ``check{}`` still gets a Check section saying so."""
    return _render(report, check_always=True)


def _render(report: Mapping[str, Any], check_always: bool) -> str:
    check = report.get("check")
    regressions = _dicts(report.get("regressions"))
    out: list[str] = []
    out += _header(report)
    if isinstance(check, Mapping):
        out += _check(check, regressions)
    elif check_always:
        out += ["## Check", "", "This report has no check results.", ""]
    out += _fleet(_dicts(report.get("hosts")))
    out += _outliers(_dicts(report.get("outliers")))
    out += _workload(_dicts(report.get("hosts")))
    out += _group_functions(report)
    out += _group_hot_lines(_dicts(report.get("groups")))
    out += _matrices(report)
    out += _group_cprofile(_dicts(report.get("groups")))
    out += _allocations(_dicts(report.get("hosts")))
    out += _memray(_dicts(report.get("hosts")))
    out += _line_profile(_dicts(report.get("hosts")))
    out += _nvtx(_dicts(report.get("hosts")))
    out += _open_files(_dicts(report.get("hosts")))
    if not isinstance(check, Mapping):
        out += _regressions(regressions)
    return "\n".join(out).rstrip("\n") + "\n"


def _header(report: Mapping[str, Any]) -> list[str]:
    summary = _mapping(report.get("summary"))
    hosts = _dicts(report.get("hosts"))
    compare = _mapping(report.get("compare"))
    duration = _number(report.get("duration_s"))
    facts = [
        f"**run** {md_text(report.get('run_id'))}",
        f"**started** {md_text(report.get('started_at'))}",
        f"**duration** {MISSING if duration is None else f'{duration:.1f} s'}",
        f"**mode** {md_text(report.get('mode'))}",
    ]
    if compare.get("group_by") is not None:
        facts.append(f"**grouped by** {md_text(compare.get('group_by'))}")
    total = summary.get("hosts", len(hosts))
    counts = " · ".join(
        f"{_num(summary.get(s, 0), 0)} {s}" for s in STATUSES if s != "busy" or summary.get(s)
    )
    return [
        f"# fleetprof: {md_text(report.get('campaign'))}",
        "",
        " · ".join(facts),
        "",
        f"**{_num(total, 0)} hosts:** {counts}",
        "",
    ]


def _fleet(hosts: list[Mapping[str, Any]]) -> list[str]:
    if not hosts:
        return []
    columns = [
        (label, keys, digits)
        for label, keys, digits in KEY_METRICS
        if any(k in _mapping(h.get("metrics")) for h in hosts for k in keys)
    ]
    rows = []
    for host in hosts:
        metrics = _mapping(host.get("metrics"))
        status = host.get("status")
        notes = _list(host.get("data_quality"))
        row = [
            md_text(host.get("name")),
            md_text(_group_of(host)),
            f"**{md_text(status)}**" if status != "ok" else "ok",
        ]
        for _, keys, digits in columns:
            value = next((metrics[k] for k in keys if k in metrics), None)
            row.append(_num(value, digits))
        flag = f"⚠ {len(notes)} data-quality note{'s' if len(notes) > 1 else ''}" if notes else ""
        row.append(" ".join(p for p in (md_text(host.get("reason")), flag) if p))
        rows.append(row)
    header = ["host", "group", "status", *(label for label, _, _ in columns), "reason / notes"]
    right = set(range(3, 3 + len(columns)))
    return ["## Fleet", "", *_table(header, rows, right), ""]


def _outlier_kind(outlier: Mapping[str, Any]) -> str:
    """The outlier's kind, and the rule when it is not the robust z (relative loss)."""
    kind = str(outlier.get("kind") or "metric")
    rule = outlier.get("rule")
    return f"{kind} (relative loss)" if rule == "relative_loss" else kind


def _outliers(outliers: list[Mapping[str, Any]]) -> list[str]:
    if not outliers:
        return ["## Outliers", "", "None: every host is within its group.", ""]
    rows = []
    for o in outliers:
        what = md_text(o.get("metric"))
        if o.get("function") is not None:
            what = f"{md_text(o.get('function'))} ({md_text(o.get('file'))}) · {what}"
        rows.append(
            [
                md_text(o.get("host")),
                md_text(_group_of(o)),
                md_text(_outlier_kind(o)),
                what,
                _num(o.get("value"), 2),
                _num(o.get("group_median"), 2),
                _signed(o.get("robust_z")),
            ]
        )
    header = ["host", "group", "kind", "metric / function", "value", "group median", "robust z"]
    return ["## Outliers", "", *_table(header, rows, {4, 5, 6}), ""]


# The matrices laid out like the hot-function matrix, other than py-spy's own:
# (report.json key, heading, what a cell is).
MATRICES = (
    (
        "cprofile_function_matrix",
        "cProfile: own time per host",
        "tottime % of each host's profiled time",
    ),
    (
        "tracemalloc_growth_matrix",
        "tracemalloc: growth by site per host",
        "MiB grown between the first and last snapshot",
    ),
    ("memray_peak_matrix", "memray: memory at the peak by site per host", "MiB held at the peak"),
)


def _matrices(report: Mapping[str, Any]) -> list[str]:
    """Each of MATRICES the report has (report.md): its first rows x its first hosts."""
    out: list[str] = []
    for key, title, what in MATRICES:
        matrix = _mapping(report.get(key))
        hosts = [str(h) for h in _list(matrix.get("hosts"))][:MAX_GROUP_HOSTS]
        functions = _dicts(matrix.get("functions"))[: 2 * TOP_FUNCTIONS]
        if not hosts or not functions:
            continue
        cells = _list(matrix.get("cells"))
        rows = []
        for i, function in enumerate(functions):
            values = _list(cells[i]) if i < len(cells) else []
            rows.append(
                [md_text(function.get("function")), md_text(function.get("file"))]
                + [_num(values[j] if j < len(values) else None, 1) for j in range(len(hosts))]
            )
        header = ["function", "file", *(md_text(h) for h in hosts)]
        out += [f"## {title}", "", what, "", *_table(header, rows, set(range(2, len(header)))), ""]
    return out


def _group_cprofile(groups: list[Mapping[str, Any]]) -> list[str]:
    """One table: each group's functions by cProfile's own time, its hosts summed
    (``groups[].cprofile``): exact calls, and shares of the group's profiled time."""
    rows: list[list[str]] = []
    for group in groups:
        for function in _dicts(_mapping(group.get("cprofile")).get("functions"))[:TOP_FUNCTIONS]:
            rows.append(
                [
                    md_text(_group_of(group)),
                    md_text(function.get("function")),
                    md_text(f"{function.get('file') or '?'}:{function.get('line')}"),
                    md_text(function.get("ncalls")),
                    _num(function.get("tottime_pct"), 1),
                    _num(function.get("cumtime_pct"), 1),
                    md_text(function.get("hosts")),
                ]
            )
    if not rows:
        return []
    header = ["group", "function", "file:line", "calls", "tottime %", "cumtime %", "hosts"]
    return ["## cProfile per group", "", *_table(header, rows, {3, 4, 5, 6}), ""]


def _group_functions(report: Mapping[str, Any]) -> list[str]:
    """Per group: its own ``top_functions`` where the report has them, else the
    function matrix's rows for the group's hosts (self % per host)."""
    groups = _dicts(report.get("groups"))
    matrix = _mapping(report.get("function_matrix"))
    columns = [str(h) for h in _list(matrix.get("hosts"))]
    functions = _dicts(matrix.get("functions"))
    cells = _list(matrix.get("cells"))
    out: list[str] = []
    for group in groups:
        name = md_text(_group_of(group))
        tops = _dicts(group.get("top_functions"))
        if tops:
            rows = [
                [
                    md_text(t.get("function")),
                    md_text(t.get("file")),
                    _num(t.get("self_pct"), 1),
                    _num(t.get("total_pct"), 1),
                ]
                for t in tops[:TOP_FUNCTIONS]
            ]
            out += [
                f"### {name}",
                "",
                *_table(["function", "file", "self %", "total %"], rows, {2, 3}),
                "",
            ]
            continue
        members = {str(h) for h in _list(group.get("hosts"))}
        indices = [i for i, h in enumerate(columns) if h in members]
        if not indices or not functions:
            continue
        shown = indices[:MAX_GROUP_HOSTS]
        rows = []
        for f, function in enumerate(functions):
            values = _list(cells[f]) if f < len(cells) else []
            picked = [values[i] if i < len(values) else None for i in shown]
            if all(_number(v) is None for v in picked):
                continue
            rows.append(
                [md_text(function.get("function")), md_text(function.get("file"))]
                + [_num(v, 1) for v in picked]
            )
        if not rows:
            continue
        header = ["function", "file", *(md_text(columns[i]) for i in shown)]
        out += [f"### {name}", "", "self % of samples per host", ""]
        out += _table(header, rows[:TOP_FUNCTIONS], set(range(2, len(header))))
        if len(indices) > len(shown):
            out += ["", f"… and {len(indices) - len(shown)} more hosts (see report.html)"]
        out.append("")
    return ["## Top functions per group", "", *out] if out else []


def _group_hot_lines(groups: list[Mapping[str, Any]]) -> list[str]:
    """One table: each group's hottest lines (py-spy's hot lines, its hosts merged),
    whichever function they are in, with the source text where a device read it."""
    rows: list[list[str]] = []
    for group in groups:
        lines = [
            (function, line)
            for function in _dicts(group.get("hot_lines"))
            for line in _dicts(function.get("lines"))
        ]
        lines.sort(key=lambda pair: -(_number(pair[1].get("self_pct")) or 0.0))
        for function, line in lines[:HOT_LINES]:
            text = line.get("text")
            rows.append(
                [
                    md_text(_group_of(group)),
                    md_text(function.get("function")),
                    md_text(f"{function.get('file') or '?'}:{line.get('line')}"),
                    _num(line.get("self_pct"), 1),
                    _num(line.get("function_pct"), 1),
                    md_text(text) if text is not None else MISSING,
                ]
            )
    if not rows:
        return []
    header = ["group", "function", "file:line", "self %", "of function %", "source"]
    return ["## Hot lines per group", "", *_table(header, rows, {3, 4}), ""]


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


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _verdict(check: Mapping[str, Any]) -> str:
    verdict = check.get("verdict")
    findings = len(_dicts(check.get("findings")))
    if verdict == "pass":
        text = "pass"
    elif verdict == "findings":
        text = _plural(findings, "finding")
    elif verdict == "incomplete":
        text = "incomplete" + (f" · {_plural(findings, 'finding')}" if findings else "")
    else:
        text = md_text(verdict) or MISSING
    code = _number(check.get("exit_code"))
    return f"**verdict: {text}**" + ("" if code is None else f" (exit code {round(code)})")


def _check(check: Mapping[str, Any], regressions: list[Mapping[str, Any]]) -> list[str]:
    baseline = _mapping(check.get("baseline"))
    confirm = _mapping(check.get("confirm"))
    if baseline.get("run_id") is not None:
        used = f"{md_text(baseline.get('run_id'))} ({md_text(baseline.get('source'))})"
        if baseline.get("path") is not None:
            used += f" · {md_text(baseline.get('path'))}"
    else:
        used = "none (nothing to compare with)"
    if confirm.get("enabled") is True:
        hosts = [md_text(h) for h in _list(confirm.get("hosts"))]
        remeasure = f"{md_text(confirm.get('run_id'))} on {_plural(len(hosts), 'host')}"
        if hosts:
            more = len(hosts) - MAX_LISTED_HOSTS
            remeasure += ": " + ", ".join(hosts[:MAX_LISTED_HOSTS])
            remeasure += f" … and {more} more" if more > 0 else ""
    else:
        remeasure = "off"
    judged = len(_dicts(check.get("hosts")))
    alpha = _number(check.get("alpha"))
    settings = [
        f"**regression threshold** {_num(check.get('regression_pct'), 1)} %",
        f"**alpha** {MISSING if alpha is None else f'{alpha:g}'}",
        f"**tests** {_num(check.get('tests'), 0)}",
        f"**re-measure** {remeasure}",
    ]
    out = [
        "## Check",
        "",
        f"{_verdict(check)} · {_plural(judged, 'host')} judged",
        "",
        f"**baseline** {used}",
        "",
        " · ".join(settings),
        "",
    ]
    findings = _dicts(check.get("findings"))
    out += ["### Findings", ""]
    out += _findings(findings) if findings else ["No confirmed findings.", ""]
    unconfirmed = _dicts(check.get("unconfirmed"))
    if unconfirmed:
        out += [
            "### Unconfirmed",
            "",
            "Flagged, but the re-measure did not reproduce them: they do not fail the check.",
            "",
            *_findings(unconfirmed),
        ]
    if regressions:
        out += ["### Regressions", "", *_regression_table(regressions), ""]
    return out


def _findings(findings: list[Mapping[str, Any]]) -> list[str]:
    rows = [
        [md_text(f.get(key)) for key in ("kind", "host", "metric", "message")] for f in findings
    ]
    return [*_table(["kind", "host", "metric", "message"], rows, set()), ""]


def _confirmed(row: Mapping[str, Any]) -> str:
    text = confirmed_text(row.get("confirmed"))
    change = _number(_mapping(row.get("confirm")).get("change_pct"))
    return md_text(text) + ("" if change is None else f" (re-measure {change:+.1f} %)")


def _regression_table(regressions: list[Mapping[str, Any]]) -> list[str]:
    extra: dict[str, None] = {}
    for row in regressions:
        extra.update(dict.fromkeys(str(k) for k in row if str(k) not in REGRESSION_KEYS))
    rows = []
    for r in regressions:
        change = _number(r.get("change_pct"))
        q = _number(r.get("q_value"))
        fingerprint = "; ".join(fingerprint_text(f) for f in _dicts(r.get("fingerprint")))
        rows.append(
            [
                md_text(r.get("host")),
                md_text(r.get("metric")),
                _num(r.get("baseline"), 2),
                _num(r.get("value"), 2),
                MISSING if change is None else f"{change:+.1f}",
                MISSING if q is None else f"{q:.3g}",
                _confirmed(r),
                stability_text(r.get("stability")),
                md_text(fingerprint),
                *(
                    _num(r.get(c), 2) if _number(r.get(c)) is not None else md_text(r.get(c))
                    for c in extra
                ),
            ]
        )
    header = [
        "host", "metric", "baseline", "value", "change %", "q", "confirmed", "stability",
        "fingerprint", *(md_text(c) for c in extra),
    ]  # fmt: skip
    return _table(header, rows, {2, 3, 4, 5, 7})


def _regressions(regressions: list[Mapping[str, Any]]) -> list[str]:
    if not regressions:
        return []
    return ["## Regressions", "", *_regression_table(regressions), ""]
