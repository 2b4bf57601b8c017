"""Time-series line charts as inline SVG, for the HTML page.

A host's ``series`` (report.json) is flat: ``<source>.t`` is a source's time axis in
seconds and every other ``<source>.<name>`` list is aligned with it, None where a sample
has no value (see ``ProfileResult.series``). A chart here is a set of polylines over
shared axes; a None breaks a line. Only layout: values are scaled to a display unit
(bytes/s to MiB/s, a ratio to %) and nothing else is computed.

Trend charts (:func:`trend_charts`) draw the report's ``history{}``: x is the run (one
category per recorded run, oldest first), one line per host.

Labels can be device strings (host names in a group overlay): they go through
``markupsafe.escape`` like everything else that lands in the SVG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

from orchestrator.values import number as _number

# Geometry in SVG user units; the SVG scales to its box's width.
WIDTH = 440.0
HEIGHT = 190.0
LEFT, RIGHT, TOP, BOTTOM = 54.0, 12.0, 10.0, 30.0
FONT = 10.0

# Distinct, colour-blind-friendlier line colours (Okabe-Ito, then Tableau); overlays with
# more hosts than colours cycle.
PALETTE = (
    "#0072b2",
    "#d55e00",
    "#009e73",
    "#cc79a7",
    "#e69f00",
    "#56b4e9",
    "#6b6b6b",
    "#8c564b",
    "#bcbd22",
    "#9467bd",
)


@dataclass(frozen=True)
class SeriesSpec:
    key: str  # the series' key in report.json, e.g. "system.target.cpu_pct"
    label: str


@dataclass(frozen=True)
class ChartSpec:
    title: str
    unit: str  # "%", "MB", "°C", "bytes/s" (shown scaled), "ratio" (shown as %)
    series: tuple[SeriesSpec, ...]


def _s(key: str, label: str) -> SeriesSpec:
    return SeriesSpec(key, label)


HOST_CHARTS = (
    ChartSpec("CPU", "%", (_s("system.cpu_pct", "system"), _s("system.target.cpu_pct", "target"))),
    ChartSpec(
        "Target memory",
        "MB",
        (
            _s("memory.rss_mb", "RSS"),
            _s("memory.pss_mb", "PSS"),
            _s("system.target.rss_mb", "RSS (system sampler)"),
        ),
    ),
    ChartSpec("System memory used", "%", (_s("system.mem.used_pct", "used"),)),
    ChartSpec(
        "Disk I/O",
        "bytes/s",
        (
            _s("system.target.read_bytes_per_s", "target read"),
            _s("system.target.write_bytes_per_s", "target write"),
            _s("iotop.target.read_bytes_per_s", "target read (iotop)"),
            _s("iotop.target.write_bytes_per_s", "target write (iotop)"),
            _s("iotop.total.read_bytes_per_s", "system read (iotop)"),
            _s("iotop.total.write_bytes_per_s", "system write (iotop)"),
        ),
    ),
    ChartSpec(
        "Network (all interfaces but lo)",
        "bytes/s",
        (_s("system.net.rx_bytes_per_s", "received"), _s("system.net.tx_bytes_per_s", "sent")),
    ),
    ChartSpec("Temperature", "°C", (_s("system.thermal.max_c", "hottest zone"),)),
    ChartSpec("CPU frequency", "ratio", (_s("system.cpufreq.min_ratio", "slowest core"),)),
    ChartSpec(
        "Open descriptors",
        "count",
        (
            _s("fds.total", "all"),
            _s("fds.file", "files"),
            _s("fds.socket", "sockets"),
            _s("fds.pipe", "pipes"),
            _s("fds.anon_inode", "anon inodes"),
        ),
    ),
)
"""The charts of one host's section, in order; a chart none of whose series the host has
is left out."""

GROUP_SERIES = (
    ("Target CPU", "%", ("system.target.cpu_pct",)),
    ("System CPU", "%", ("system.cpu_pct",)),
    ("Target RSS", "MB", ("memory.rss_mb", "system.target.rss_mb")),
    (
        "Target writes",
        "bytes/s",
        ("iotop.target.write_bytes_per_s", "system.target.write_bytes_per_s"),
    ),
    (
        "Target reads",
        "bytes/s",
        ("iotop.target.read_bytes_per_s", "system.target.read_bytes_per_s"),
    ),
    ("Network received (all interfaces but lo)", "bytes/s", ("system.net.rx_bytes_per_s",)),
    ("Network sent (all interfaces but lo)", "bytes/s", ("system.net.tx_bytes_per_s",)),
    ("Hottest thermal zone", "°C", ("system.thermal.max_c",)),
    ("Slowest core frequency", "ratio", ("system.cpufreq.min_ratio",)),
)
"""The series overlaid per group (one line per host of the group), one chart each; a host
lacking the first key (no memory or iotop profiler) is drawn from the next."""


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    xs: list[float | None]
    ys: list[float | None]
    width: float = 1.5
    markers: bool = True  # categorical x only: a marker with a tooltip on every point


@dataclass(frozen=True)
class Chart:
    title: str
    svg: Markup
    legend: list[tuple[str, str]]  # (label, colour); labels are escaped by the template


def _numbers(value: Any) -> list[float | None] | None:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return None
    return [_number(v) for v in value]


def axis_key(key: str) -> str:
    """The time axis of a series: its source's ``<source>.t``."""
    return key.split(".", 1)[0] + ".t"


def series_of(
    series: Mapping[str, Any], key: str
) -> tuple[list[float | None], list[float | None]] | None:
    """(times, values) of one series, or None when the host does not have it.

    Falls back to a plain ``t`` axis (the first report.json example's shape)."""
    ys = _numbers(series.get(key))
    xs = _numbers(series.get(axis_key(key)))
    if xs is None:
        xs = _numbers(series.get("t"))
    if not ys or xs is None or not any(v is not None for v in ys):
        return None
    n = min(len(xs), len(ys))
    return xs[:n], ys[:n]


_BYTE_UNITS = ("B/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s")


def display_unit(unit: str, peak: float) -> tuple[str, float]:
    """(the unit shown, the factor values are multiplied by)."""
    if unit == "ratio":
        return "% of max", 100.0
    if unit == "bytes/s":
        power = 0
        while power < len(_BYTE_UNITS) - 1 and abs(peak) >= 1024.0 ** (power + 1):
            power += 1
        return _BYTE_UNITS[power], 1.0 / 1024.0**power
    return unit, 1.0


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering low..high."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _tick_label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10000:
        return f"{value / 1000:g}k"
    return f"{value:.4g}"


def line_chart(
    title: str,
    unit: str,
    lines: Sequence[Line],
    *,
    categories: Sequence[str] | None = None,
    category_titles: Sequence[str] | None = None,
    x_title: str = "time (s)",
    from_zero: bool = True,
) -> Chart | None:
    """Lines over shared axes (x: seconds, y: from 0 unless values go below it).

    With ``categories`` the x axis is categorical instead: x = i is the i-th category,
    labelled (thinned to fit, the last one always) with ``categories[i]``, and every point
    of a line with ``markers`` gets one with a tooltip naming the line,
    ``category_titles[i]`` and the value.
    ``from_zero=False`` fits the y axis to the values (a trend of a few percent is then
    visible)."""
    drawn = [line for line in lines if any(y is not None for y in line.ys)]
    if not drawn:
        return None
    values = [y for line in drawn for y in line.ys if y is not None]
    times = [x for line in drawn for x in line.xs if x is not None]
    shown, factor = display_unit(unit, max(abs(v) for v in values))
    low = min(values) * factor
    y_ticks = nice_ticks(min(0.0, low) if from_zero else low, max(values) * factor or 1.0)
    y_low, y_high = y_ticks[0], y_ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    x_labels: list[tuple[float, str]]
    if categories is not None:
        x_low, x_high = -0.5, max(len(categories), 1) - 0.5
        x_labels = [(float(i), categories[i]) for i in _category_ticks(categories, plot_w)]
    else:
        x_ticks = nice_ticks(0.0, max(times) if times else 1.0, 5)
        x_low, x_high = x_ticks[0], x_ticks[-1]
        x_labels = [(tick, _tick_label(tick)) for tick in x_ticks]

    def px(x: float) -> float:
        return LEFT + (x - x_low) / (x_high - x_low) * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - (y * factor - y_low) / (y_high - y_low) * plot_h

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH:.0f} {HEIGHT:.0f}" '
        f'width="100%" font-size="{FONT:.0f}">',
        f"<title>{escape(title)}{f' ({escape(shown)})' if shown else ''}</title>",
    ]
    for tick in y_ticks:
        y = py(tick / factor)
        parts.append(
            f'<line class="grid" x1="{LEFT:.1f}" x2="{WIDTH - RIGHT:.1f}" '
            f'y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{LEFT - 4:.1f}" y="{y + 3:.1f}" text-anchor="end">'
            f"{escape(_tick_label(tick))}</text>"
        )
    for tick, label in x_labels:
        x = px(tick)
        parts.append(
            f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h:.1f}" '
            f'y2="{TOP + plot_h + 4:.1f}"/>'
            f'<text x="{x:.1f}" y="{TOP + plot_h + 14:.1f}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    parts.append(
        f'<line class="axis" x1="{LEFT:.1f}" x2="{LEFT:.1f}" y1="{TOP:.1f}" '
        f'y2="{TOP + plot_h:.1f}"/><line class="axis" x1="{LEFT:.1f}" '
        f'x2="{WIDTH - RIGHT:.1f}" y1="{TOP + plot_h:.1f}" y2="{TOP + plot_h:.1f}"/>'
        f'<text x="{WIDTH - RIGHT:.1f}" y="{HEIGHT - 3:.1f}" text-anchor="end">'
        f"{escape(x_title)}</text>"
        f'<text x="12" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">{escape(shown)}</text>'
    )
    for line in drawn:
        parts.append(f'<g stroke="{line.colour}" fill="{line.colour}">')
        parts.append(f"<title>{escape(line.label)}</title>")
        for run in _runs(line.xs, line.ys):
            if len(run) > 1:
                points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in run)
                parts.append(
                    f'<polyline fill="none" stroke-width="{line.width:.1f}" points="{points}"/>'
                )
            if categories is not None and line.markers:
                for x, y in run:
                    index = int(x)
                    at = category_titles[index] if category_titles else categories[index]
                    tip = f"{line.label} · {at}: {y * factor:.4g}{f' {shown}' if shown else ''}"
                    parts.append(
                        f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5">'
                        f"<title>{escape(tip)}</title></circle>"
                    )
            elif len(run) == 1:
                x, y = run[0]
                parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2"/>')
        parts.append("</g>")
    parts.append("</svg>")
    # Every string above is escaped or one of our numbers and constant colours.
    return Chart(title, Markup("".join(parts)), [(line.label, line.colour) for line in drawn])


def _category_ticks(categories: Sequence[str], plot_w: float) -> list[int]:
    """The categories that get a label: evenly spaced, as many as fit, the last always."""
    count = len(categories)
    if not count:
        return []
    widest = max(len(c) for c in categories) * FONT * 0.6 + 8.0
    fit = max(1, int(plot_w // widest))
    step = max(1, math.ceil(count / fit))
    return sorted(range(count - 1, -1, -step))


def _runs(xs: list[float | None], ys: list[float | None]) -> list[list[tuple[float, float]]]:
    """The unbroken stretches of a line: a missing x or y ends one."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys, strict=False):
        if x is None or y is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((x, y))
    return [run for run in runs if run]


WORKLOAD_CHARTS = 12  # at most this many of the program's own metrics are charted


def host_charts(series: Any, workload_units: Mapping[str, str] | None = None) -> list[Chart]:
    """One host's charts (HOST_CHARTS), those it has data for; then one per metric the
    program wrote with times (``workload.<name>``, its unit from ``workload_units``)."""
    if not isinstance(series, Mapping) or not series:
        return []
    charts = []
    for spec in HOST_CHARTS:
        lines = []
        for index, item in enumerate(spec.series):
            found = series_of(series, item.key)
            if found is not None:
                lines.append(Line(item.label, PALETTE[index % len(PALETTE)], *found))
        chart = line_chart(spec.title, spec.unit, lines)
        if chart is not None:
            charts.append(chart)
    workload = sorted(
        k for k in series if isinstance(k, str) and k.startswith("workload.") and k != "workload.t"
    )
    for key in workload[:WORKLOAD_CHARTS]:
        found = series_of(series, key)
        name = key[len("workload.") :]
        unit = (workload_units or {}).get(name, "")
        chart = (
            line_chart(f"workload: {name}", unit, [Line(name, PALETTE[0], *found)])
            if found
            else None
        )
        if chart is not None:
            charts.append(chart)
    return charts


def group_charts(members: Sequence[tuple[str, Any]]) -> list[Chart]:
    """A group's overlays: per GROUP_SERIES entry, one line per (host name, series)."""
    charts = []
    for title, unit, keys in GROUP_SERIES:
        lines = []
        for index, (host, series) in enumerate(members):
            if not isinstance(series, Mapping):
                continue
            found = next((f for k in keys if (f := series_of(series, k)) is not None), None)
            if found is not None:
                lines.append(Line(host, PALETTE[index % len(PALETTE)], *found))
        chart = line_chart(title, unit, lines)
        if chart is not None:
            charts.append(chart)
    return charts


# -- trends over runs (report.json's history{}) -----------------------------------------

OTHER_HOSTS_COLOUR = "#b8bec6"
MARKERS_UP_TO_RUNS = 60

# A unit from a metric name's parts, last part first ("target.cpu_pct.mean": "%"). Only
# for the axis label and scaling; a metric none of these fit is shown as is.
_UNIT_SUFFIXES = (
    ("_bytes_per_s", "bytes/s"),
    ("_pct", "%"),
    ("_mb", "MB"),
    ("_ratio", "ratio"),
    ("_c", "°C"),
    ("_ms", "ms"),
    ("_hz", "Hz"),
    ("_mhz", "MHz"),
)


def metric_unit(metric: str) -> str:
    for part in reversed(metric.split(".")):
        for suffix, unit in _UNIT_SUFFIXES:
            if part.endswith(suffix) or part == suffix[1:]:
                return unit
    return ""


def run_label(run: Mapping[str, Any]) -> str:
    """A run's short axis label: its start as "MM-DD HH:MM", else its run id."""
    started = run.get("started_at")
    if isinstance(started, str):
        try:
            return datetime.fromisoformat(started).strftime("%m-%d %H:%M")
        except ValueError:
            pass
    run_id = run.get("run_id")
    return "?" if run_id is None else str(run_id)


def run_title(run: Mapping[str, Any]) -> str:
    """A run in a tooltip: its id and start, as recorded."""
    parts = [str(run[k]) for k in ("run_id", "started_at") if run.get(k) is not None]
    return " · ".join(parts) or "?"


def trend_charts(history: Any, flagged: Mapping[str, Sequence[str]] | None = None) -> list[Chart]:
    """Per metric of ``history.series``, one chart over the recorded runs, one line per
    host. ``flagged``: per metric, the hosts the check flagged on it: their metrics come
    first, and in a fleet too big to colour every host, only they get a colour (and a
    thicker line), the others are drawn grey under one legend entry."""
    if not isinstance(history, Mapping):
        return []
    runs = [r if isinstance(r, Mapping) else {} for r in _sequence(history.get("runs"))]
    series = history.get("series")
    if not runs or not isinstance(series, Mapping):
        return []
    flagged = flagged or {}
    labels = [run_label(r) for r in runs]
    titles = [run_title(r) for r in runs]
    xs: list[float | None] = [float(i) for i in range(len(runs))]
    metrics = sorted(
        (str(m) for m, hosts in series.items() if isinstance(hosts, Mapping)),
        key=lambda m: (not flagged.get(m), m),
    )
    charts = []
    for metric in metrics:
        hosts = series[metric]
        members = [
            (str(host), ys)
            for host, values in hosts.items()
            if (ys := _numbers(values)) is not None and any(y is not None for y in ys)
        ]
        marked = set(flagged.get(metric, ()))
        colour_all = len(members) <= len(PALETTE)
        # Markers (with their tooltips) on every point would make a long history of a big
        # fleet heavy: only coloured lines get them, and only over a short history.
        markers = len(runs) <= MARKERS_UP_TO_RUNS
        coloured: list[Line] = []
        grey: list[Line] = []
        for host, values in members:
            # A host's list is aligned with runs; a short one misses the latest runs.
            ys = (values + [None] * len(runs))[: len(runs)]
            if colour_all or host in marked:
                colour = PALETTE[len(coloured) % len(PALETTE)]
                width = 2.5 if host in marked else 1.5
                coloured.append(Line(host, colour, xs, ys, width, markers))
            else:
                grey.append(Line(host, OTHER_HOSTS_COLOUR, xs, ys, 1.0, False))
        lines = grey + coloured  # the coloured ones drawn on top
        chart = line_chart(
            metric,
            metric_unit(metric),
            lines,
            categories=labels,
            category_titles=titles,
            x_title="run",
            from_zero=False,
        )
        if chart is None:
            continue
        if grey:
            legend = [item for item in chart.legend if item[1] != OTHER_HOSTS_COLOUR]
            others = f"{len(grey)} other host{'s' if len(grey) > 1 else ''}"
            legend.append((others, OTHER_HOSTS_COLOUR))
            chart = replace(chart, legend=legend)
        charts.append(chart)
    return charts


def _sequence(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []
