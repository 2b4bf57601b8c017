"""``report.json`` -> a rich summary on the terminal.

Device strings are untrusted twice over here: rich markup (``[bold red]``) must print
literally, and terminal control sequences (ESC, ...) must not reach the terminal. Both
are neutralised by :func:`device_text`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from orchestrator.report.formats import MISSING as MISSING

STATUS_STYLES: dict[str, str] = {
    "ok": "bold green",
    "partial": "bold yellow",
    "failed": "bold red",
    "unreachable": "bold magenta",
    "skipped": "dim",
    "busy": "bold yellow",
}

# C0 controls (tab and newline included: a table cell is one line), DEL and C1 controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def device_text(value: Any, style: str = "") -> Text:
    """A device string as literal text: no markup, no control characters."""
    text = "" if value is None else str(value)
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return Text(text, style=style)


def device_markup(value: Any) -> str:
    """The same for places that take a markup string: escaped for rich markup."""
    return escape(device_text(value).plain)


def _num(value: Any, digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return MISSING
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}" if math.isfinite(value) else MISSING


def _count(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return MISSING
    return f"{round(value):,}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _status(value: Any) -> Text:
    status = "unknown" if value is None else str(value)
    return device_text(status, STATUS_STYLES.get(status, "bold"))


def _top_function(host: Mapping[str, Any]) -> Text:
    tops = _dicts(host.get("top_functions"))
    if not tops:
        reason = host.get("reason")
        return device_text(reason, "italic red") if reason else Text(MISSING, style="dim")
    top = tops[0]
    text = device_text(top.get("function"))
    text.append(f"  {_num(top.get('self_pct'), 1)}%", style="cyan")
    return text


def render_terminal(report: Mapping[str, Any], console: Console) -> None:
    """Print the fleet table and the status counts of one parsed ``report.json``."""
    title = Text.assemble(
        device_text(report.get("campaign"), "bold"), " · ", device_text(report.get("run_id"))
    )
    table = Table(title=title, title_justify="left", header_style="bold", expand=False)
    table.add_column("host", overflow="fold", min_width=8, max_width=40)
    table.add_column("model", overflow="ellipsis", min_width=8, max_width=32)
    table.add_column("status", no_wrap=True)
    table.add_column("samples", justify="right", no_wrap=True)
    table.add_column("eff. rate Hz", justify="right", no_wrap=True)
    table.add_column("start ms", justify="right", no_wrap=True)
    table.add_column("top function (self %)", overflow="ellipsis", max_width=60)

    for host in _dicts(report.get("hosts")):
        metrics = _mapping(host.get("metrics"))
        rate = Text(_num(metrics.get("pyspy.effective_rate_hz"), 1))
        requested = metrics.get("pyspy.requested_rate_hz")
        if requested is not None:
            rate.append(f" / {_num(requested, 0)}", style="dim")
        table.add_row(
            device_text(host.get("name")),
            device_text(host.get("hw_model")),
            _status(host.get("status")),
            Text(_count(metrics.get("pyspy.samples"))),
            rate,
            Text(_num(host.get("start_offset_ms"), 1)),
            _top_function(host),
        )
    console.print(table)

    summary = _mapping(report.get("summary"))
    line = Text(f"{_num(summary.get('hosts', len(_dicts(report.get('hosts')))))} hosts: ")
    shown = [s for s in STATUS_STYLES if s != "busy" or summary.get(s)]  # busy: only when some
    for i, status in enumerate(shown):
        if i:
            line.append(", ")
        count = summary.get(status, 0)
        line.append(f"{_num(count)} {status}", style=STATUS_STYLES[status] if count else "dim")
    duration = report.get("duration_s")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        line.append(f" · {_num(duration, 1)} s")
    console.print(line)

    for outlier in _dicts(report.get("outliers")):
        console.print(outlier_line(outlier))


def outlier_line(outlier: Mapping[str, Any]) -> Text:
    """One outlier: the host, its group, the metric and, for a function share, the
    function (and file); the value against the group median, the score and its rule."""
    line = Text.assemble(
        ("outlier ", "bold yellow"),
        device_text(outlier.get("host"), "bold"),
        " (",
        device_text(outlier.get("hw_model")),
        "): ",
        device_text(outlier.get("metric")),
    )
    if outlier.get("function") is not None:
        line.append(" of ")
        line.append_text(device_text(outlier.get("function"), "bold"))
        if outlier.get("file"):
            line.append(" (")
            line.append_text(device_text(outlier.get("file")))
            line.append(")")
    line.append(f" = {_num(outlier.get('value'), 2)}")
    line.append(f" vs median {_num(outlier.get('group_median'), 2)}")
    line.append(f", robust z {_num(outlier.get('robust_z'), 2)}")
    if outlier.get("rule") == "relative_loss":
        line.append(f"; relative loss against its peers' {_num(outlier.get('peers_median'), 2)}")
    return line


def render_inspection(data: Mapping[str, Any], console: Console) -> None:
    """What ``fleetprof inspect`` found in one artifact: metrics, top functions, notes."""
    console.print(device_text(f"{data.get('profiler')}: {data.get('file')}", "bold"))
    metrics = _mapping(data.get("metrics"))
    if metrics:
        table = Table(title="metrics", title_justify="left")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for name in sorted(metrics):
            table.add_row(device_text(name), _num(metrics[name], 3))
        console.print(table)
    functions = _dicts(data.get("top_functions"))
    if functions:
        table = Table(title="top functions", title_justify="left")
        table.add_column("function", overflow="fold")
        table.add_column("file", overflow="fold")
        table.add_column("self %", justify="right")
        table.add_column("total %", justify="right")
        for row in functions:
            table.add_row(
                device_text(row.get("function")),
                device_text(row.get("file") or ""),
                _num(row.get("self_pct"), 2),
                _num(row.get("total_pct"), 2),
            )
        console.print(table)
    tables = _mapping(data.get("tables"))
    for name in tables:
        _inspect_table(str(name), _dicts(tables[name]), console)
    for note in data.get("data_quality") or []:
        console.print(device_text(f"note: {note}", "yellow"))
    if not metrics and not functions and not any(_dicts(t) for t in tables.values()):
        console.print("nothing recognisable in this file")


INSPECT_ROWS = 15  # rows of each per-profiler table `fleetprof inspect` shows


def _inspect_table(name: str, rows: Sequence[Mapping[str, Any]], console: Console) -> None:
    """One of the profiler's tables (cprofile's functions, nsys's kernels): its first rows,
    its scalar columns in the first row's order."""
    if not rows:
        return
    columns = [k for k, v in rows[0].items() if not isinstance(v, (dict, list))]
    table = Table(title=name, title_justify="left")
    for column in columns:
        numeric = isinstance(rows[0].get(column), (int, float))
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for row in rows[:INSPECT_ROWS]:
        cells = [row.get(c) for c in columns]
        table.add_row(
            *(
                _num(v, 3)
                if isinstance(v, (int, float)) and not isinstance(v, bool)
                else device_text("" if v is None else str(v))
                for v in cells
            )
        )
    console.print(table)


VERDICT_STYLES = {"pass": "bold green", "findings": "bold red", "incomplete": "bold yellow"}


def _findings_table(title: str, findings: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("kind", "host", "metric", "what"):
        table.add_column(column)
    for f in findings:
        table.add_row(
            device_text(f.get("kind")),
            device_text(f.get("host")),
            device_text(f.get("metric") or MISSING),
            device_text(f.get("message")),
        )
    return table


def render_check(report: Mapping[str, Any], console: Console) -> None:
    """The run's summary, then the check's verdict, findings and what differs on each
    regressed host (report.json ``check{}`` and ``regressions[]``)."""
    render_terminal(report, console)
    check = report.get("check")
    if not isinstance(check, Mapping):
        return
    verdict = str(check.get("verdict"))
    baseline = check.get("baseline") or {}
    findings = check.get("findings") or []
    unconfirmed = check.get("unconfirmed") or []
    line = Text("check: ")
    line.append(verdict.upper(), style=VERDICT_STYLES.get(verdict, "bold"))
    line.append(
        f"  {len(findings)} finding(s), {len(unconfirmed)} unconfirmed; "
        f"{check.get('tests', 0)} host x metric test(s) against baseline "
    )
    line.append(device_text(baseline.get("run_id") or "none"))
    line.append(f" ({device_text(baseline.get('source'))})")
    console.print(line)
    if findings:
        console.print(_findings_table("findings", findings))
    if unconfirmed:
        console.print(
            _findings_table("unconfirmed (not reproduced by the re-measure)", unconfirmed)
        )
    described: set[str] = set()
    for r in report.get("regressions") or []:
        host = str(r.get("host"))
        if not r.get("fingerprint") or host in described:
            continue
        described.add(host)
        diffs = "; ".join(
            f"{_plain(d.get('key'))}: {_plain(d.get('value'))} (peers: {_plain(d.get('peers'))})"
            for d in r["fingerprint"]
        )
        console.print(Text(f"{_plain(host)} differs from its peers: {diffs}", style="dim"))


def _plain(value: Any) -> str:
    """A fingerprint value as plain text; None (unknown, or no limit) as "none"."""
    return "none" if value is None else device_text(value).plain
