"""``fleetprof history``'s table: one row per campaign x host x metric from the history
store's series, with its latest value and a sparkline of the last runs.

Only layout: the points come from :meth:`HistoryStore.series`; host and metric names
are device strings and go into the table as literal text (no rich markup, no control
characters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from orchestrator.check.store import SeriesPoint
from orchestrator.report.formats import MISSING
from orchestrator.report.terminal import device_text

BARS = "▁▂▃▄▅▆▇█"
# A flat series sits at half height: no change is neither a low nor a high.
MIDDLE = "▄"

Key = tuple[str, str, str]  # campaign, host, metric


def sparkline(values: Sequence[float | None]) -> str:
    """One bar per value scaled between the series' min and max; a space for a gap."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    if not known:
        return " " * len(values)
    low, high = min(known), max(known)
    span = high - low
    bars = []
    for value in values:
        if value is None or not math.isfinite(value):
            bars.append(" ")
        elif span == 0:
            bars.append(MIDDLE)
        else:
            bars.append(BARS[round((value - low) / span * (len(BARS) - 1))])
    return "".join(bars)


def history_table(points: Sequence[SeriesPoint], *, title: str) -> Table:
    """The table ``fleetprof history`` prints; a campaign column only when the points
    span several campaigns. ``title`` is shown literally."""
    columns = _run_columns(points)
    rows = _rows(points, columns)
    several = len(columns) > 1
    table = Table(title=Text(title), title_justify="left", header_style="bold")
    if several:
        table.add_column("campaign", overflow="fold", max_width=32)
    table.add_column("host", overflow="fold", min_width=8, max_width=40)
    table.add_column("metric", overflow="fold", max_width=48)
    table.add_column("runs", justify="right", no_wrap=True)
    table.add_column("first", justify="right", no_wrap=True)
    table.add_column("latest", justify="right", no_wrap=True)
    table.add_column("change", justify="right", no_wrap=True)
    table.add_column("trend", no_wrap=True)
    for (campaign, host, metric), values in rows.items():
        known = [v for v in values if v is not None]
        cells = [device_text(host), device_text(metric), Text(str(len(known)))]
        cells += [Text(_value(known[0])), Text(_value(known[-1])), _change(known)]
        cells.append(Text(sparkline(values), style="cyan"))
        table.add_row(*([device_text(campaign)] if several else []), *cells)
    return table


def _run_columns(points: Sequence[SeriesPoint]) -> dict[str, dict[str, int]]:
    """Per campaign, each run's position in time, so every row's sparkline shares the
    campaign's axis and a run without the metric shows as a gap."""
    columns: dict[str, dict[str, int]] = {}
    for point in sorted(points, key=lambda p: p.started_at):
        runs = columns.setdefault(point.campaign, {})
        runs.setdefault(point.run_id, len(runs))
    return columns


def _rows(
    points: Sequence[SeriesPoint], columns: dict[str, dict[str, int]]
) -> dict[Key, list[float | None]]:
    rows: dict[Key, list[float | None]] = {}
    for point in points:
        runs = columns[point.campaign]
        key = (point.campaign, point.host, point.metric)
        rows.setdefault(key, [None] * len(runs))[runs[point.run_id]] = point.value
    return dict(sorted(rows.items()))


def _value(value: float) -> str:
    if not math.isfinite(value):
        return MISSING
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"


def _change(known: Sequence[float]) -> Text:
    """first -> latest in percent of the first value."""
    if len(known) < 2 or known[0] == 0:
        return Text(MISSING, style="dim")
    pct = (known[-1] - known[0]) / abs(known[0]) * 100
    return Text(f"{pct:+.1f}%") if math.isfinite(pct) else Text(MISSING, style="dim")
