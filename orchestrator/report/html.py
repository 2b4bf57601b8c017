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
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

MISSING = "\u2013"  # an en dash stands for a value the report does not have

STATUSES = ("ok", "partial", "failed", "unreachable", "skipped")
"""Known host statuses, in the order the page lists them; each has a CSS class."""

# Hosts get their sections open by default only in a small fleet; in a big one the
# fleet table is the overview and a section opens on demand.
OPEN_SECTIONS_UP_TO = 4

# Flame graph geometry, in SVG user units (the SVG scales to the page width).
FLAME_WIDTH = 1200.0
FLAME_ROW = 17.0
FLAME_FONT = 11.0
FLAME_CHAR = FLAME_FONT * 0.6  # monospace advance, so truncation is predictable
FLAME_MIN_WIDTH = 0.5  # narrower rects are invisible; leaving them out keeps pages small

# Collapse/expand all sections and filter the fleet table. Kept constant so the page's
# CSP can allow exactly this script by its hash.
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
"""
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'"
)


def render_html(report: Mapping[str, Any]) -> str:
    """The whole page for one parsed ``report.json`` (schema ``fleetprof.report/1``)."""
    hosts = [_host_view(i, h) for i, h in enumerate(_dicts(report.get("hosts")), start=1)]
    summary = _mapping(report.get("summary"))
    template = _environment().get_template("report.html.j2")
    return template.render(
        report=report,
        hosts=hosts,
        open_sections=len(hosts) <= OPEN_SECTIONS_UP_TO,
        counts=[(s, summary.get(s, 0)) for s in STATUSES],
        host_count=summary.get("hosts", len(hosts)),
        groups=[_group_view(g) for g in _dicts(report.get("groups"))],
        outliers=_dicts(report.get("outliers")),
        regressions=_dicts(report.get("regressions")),
        regression_columns=_columns(_dicts(report.get("regressions"))),
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
    return env


# -- formatting helpers (also used as template filters) ---------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value)


def fmt_num(value: Any, digits: int = 1) -> str:
    """A number for a table cell: ints with thousands separators, a dash when absent."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    number = _number(value)
    if number is None:
        return MISSING if value is None else str(value)
    return f"{number:,.{digits}f}"


def fmt_count(value: Any) -> str:
    """A count (samples, hosts) as an integer, even when the report holds it as a float."""
    number = _number(value)
    return MISSING if number is None else f"{round(number):,}"


def fmt_duration(value: Any) -> str:
    seconds = _number(value)
    if seconds is None:
        return MISSING
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def status_class(status: Any) -> str:
    """A CSS class for a status; unknown values get a neutral one, never their own text."""
    return f"st-{status}" if status in STATUSES else "st-unknown"


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


def _host_view(index: int, host: Mapping[str, Any]) -> HostView:
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
    return HostView(
        index=index,
        name=str(host.get("name", "?")),
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
        flame_svg=flame_svg(flame) if isinstance(flame, Mapping) else None,
        data_quality=[str(w) for w in host.get("data_quality") or []],
    )


def _group_view(group: Mapping[str, Any]) -> dict[str, Any]:
    hosts = group.get("hosts") or []
    metrics = [
        (str(name), _mapping(stats)) for name, stats in _mapping(group.get("metrics")).items()
    ]
    return {
        "hw_model": str(group.get("hw_model") or "unknown"),
        "hosts": [str(h) for h in hosts] if isinstance(hosts, list) else [],
        "metrics": sorted(metrics),
    }


def _bar(pct: Any) -> float:
    """A bar width in percent, clamped: it lands in a style attribute, so only a number."""
    number = _number(pct)
    return 0.0 if number is None else round(min(max(number, 0.0), 100.0), 2)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(str(k) for k in row))
    return list(columns)


# -- flame graph ----------------------------------------------------------------------


def frame_colour(function: str) -> str:
    """A warm colour that depends only on the name, so a function looks the same on
    every host and in every run (``hash()`` is salted per process; crc32 is not)."""
    digest = zlib.crc32(function.encode("utf-8", errors="replace"))
    v1, v2, v3 = digest & 0xFF, (digest >> 8) & 0xFF, (digest >> 16) & 0xFF
    red = 205 + v1 * 50 // 255
    green = v2 * 190 // 255
    blue = v3 * 55 // 255
    return f"rgb({red},{green},{blue})"


def _fit(label: str, width: float) -> str:
    chars = int((width - 6) / FLAME_CHAR)
    if chars < 3:
        return ""
    return label if len(label) <= chars else label[: chars - 1] + "…"


def flame_svg(tree: Mapping[str, Any]) -> Markup | None:
    """An icicle graph (root on top) of a ``flame_tree`` dict as inline SVG markup.

    Width is proportional to samples, one row per stack depth. Each frame has a
    ``<title>`` tooltip: "function (file) — N samples, X%". None when there are no samples.
    """
    total = _number(tree.get("value"))
    if not total or total <= 0:
        return None
    scale = FLAME_WIDTH / total
    parts: list[str] = []
    depth_seen = 0
    # (node, x, depth); explicit stack so a deep tree cannot hit the recursion limit
    pending: list[tuple[Mapping[str, Any], float, int]] = [(tree, 0.0, 0)]
    while pending:
        node, x, depth = pending.pop()
        value = _number(node.get("value")) or 0.0
        width = value * scale
        if width < FLAME_MIN_WIDTH:
            continue
        depth_seen = max(depth_seen, depth)
        name = str(node.get("name", ""))
        file = node.get("file")
        is_root = depth == 0
        label = name if file is None else f"{name} ({file})"
        samples = int(value) if value.is_integer() else value
        tooltip = f"{label} — {samples:,} samples, {100.0 * value / total:.2f}%"
        fill = "rgb(200,200,200)" if is_root else frame_colour(name)
        y = depth * FLAME_ROW
        parts.append(
            f'<g><title>{escape(tooltip)}</title><rect x="{x:.2f}" y="{y:.2f}" '
            f'width="{width:.2f}" height="{FLAME_ROW - 1:.0f}" fill="{fill}" rx="2"/>'
        )
        text = _fit(name, width)
        if text:
            parts.append(f'<text x="{x + 3:.2f}" y="{y + FLAME_ROW - 5:.2f}">{escape(text)}</text>')
        parts.append("</g>")
        child_x = x
        children = node.get("children")
        for child in children if isinstance(children, list) else []:
            if isinstance(child, Mapping):
                pending.append((child, child_x, depth + 1))
                child_x += (_number(child.get("value")) or 0.0) * scale
    height = (depth_seen + 1) * FLAME_ROW
    head = (
        f'<svg class="flame" role="img" '
        f'viewBox="0 0 {FLAME_WIDTH:.0f} {height:.0f}" width="100%" '
        f'font-family="monospace" font-size="{FLAME_FONT:.0f}">'
    )
    # Every device string above went through escape(); the rest are our numbers.
    return Markup(head + "".join(parts) + "</svg>")
