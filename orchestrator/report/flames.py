"""Flame graphs and differential flame graphs as inline SVG, for the HTML page.

Every string in a tree can come from a device (function and file names): each one goes
through ``markupsafe.escape`` before it is put into the markup.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup, escape

from orchestrator.values import number as _number

# Flame graph geometry, in SVG user units (the SVG scales to the page width).
FLAME_WIDTH = 1200.0
FLAME_ROW = 17.0
FLAME_FONT = 11.0
FLAME_CHAR = FLAME_FONT * 0.6  # monospace advance, so truncation is predictable
FLAME_MIN_WIDTH = 0.5  # narrower rects are invisible; leaving them out keeps pages small
# A differential frame is fully red or blue at this difference in share (or at the tree's
# biggest, when that is larger), so a small noise-level difference stays pale.
DIFF_FULL = 0.05

# -- flame graph ----------------------------------------------------------------------


def frame_colour(function: str, kind: Any = "python") -> str:
    """A colour that depends only on the name, so a function looks the same on every
    host and in every run (``hash()`` is salted per process; crc32 is not): warm for
    Python code, blue for native code (a flame graph node's ``kind``)."""
    digest = zlib.crc32(function.encode("utf-8", errors="replace"))
    v1, v2, v3 = digest & 0xFF, (digest >> 8) & 0xFF, (digest >> 16) & 0xFF
    if kind == "native":
        return f"rgb({70 + v1 * 50 // 255},{140 + v2 * 60 // 255},{205 + v3 * 50 // 255})"
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
        kind = node.get("kind")
        label = name if file is None else f"{name} ({file})"
        label += " [native]" if kind == "native" else ""
        samples = int(value) if value.is_integer() else value
        tooltip = f"{label} — {samples:,} samples, {100.0 * value / total:.2f}%"
        fill = "rgb(200,200,200)" if is_root else frame_colour(name, kind)
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


# -- differential flame graph -----------------------------------------------------------


def diff_colour(delta: float, full: float) -> str:
    """Red where side a has more, blue where it has less; paler for a smaller difference."""
    strength = min(abs(delta) / full, 1.0) if full > 0 else 0.0
    base = (236, 236, 236)
    target = (214, 39, 40) if delta > 0 else (31, 100, 200)
    red, green, blue = (round(c + (t - c) * strength) for c, t in zip(base, target, strict=True))
    return f"rgb({red},{green},{blue})"


def _share(node: Mapping[str, Any], key: str) -> float:
    number = _number(node.get(key))
    return max(number, 0.0) if number is not None else 0.0


def diff_flame_svg(tree: Mapping[str, Any], a_label: str, b_label: str) -> Markup | None:
    """A differential icicle graph of a diff tree (nodes with ``a`` and ``b`` shares).

    A frame is as wide as the larger of its two shares (children that would overflow their
    parent are squeezed to fit), red where ``a`` has more, blue where it has less, with
    both shares in its tooltip. None when both sides are empty.
    """
    root_width = max(_share(tree, "a"), _share(tree, "b"))
    if root_width <= 0:
        return None
    scale = FLAME_WIDTH / root_width
    biggest = 0.0
    pending_scan: list[Mapping[str, Any]] = [tree]
    while pending_scan:
        node = pending_scan.pop()
        biggest = max(biggest, abs(_share(node, "a") - _share(node, "b")))
        pending_scan.extend(c for c in _children(node) if isinstance(c, Mapping))
    full = max(DIFF_FULL, biggest)
    parts: list[str] = []
    depth_seen = 0
    # (node, x, width, depth)
    pending: list[tuple[Mapping[str, Any], float, float, int]] = [(tree, 0.0, FLAME_WIDTH, 0)]
    while pending:
        node, x, width, depth = pending.pop()
        if width < FLAME_MIN_WIDTH:
            continue
        depth_seen = max(depth_seen, depth)
        a, b = _share(node, "a"), _share(node, "b")
        name = str(node.get("name", ""))
        file = node.get("file")
        label = name if file is None else f"{name} ({file})"
        tooltip = (
            f"{label} — {a_label}: {100 * a:.2f}%, {b_label}: {100 * b:.2f}% "
            f"({100 * (a - b):+.2f} points)"
        )
        y = depth * FLAME_ROW
        parts.append(
            f'<g><title>{escape(tooltip)}</title><rect x="{x:.2f}" y="{y:.2f}" '
            f'width="{width:.2f}" height="{FLAME_ROW - 1:.0f}" '
            f'fill="{diff_colour(a - b, full)}" rx="2"/>'
        )
        text = _fit(name, width)
        if text:
            parts.append(f'<text x="{x + 3:.2f}" y="{y + FLAME_ROW - 5:.2f}">{escape(text)}</text>')
        parts.append("</g>")
        children = [c for c in _children(node) if isinstance(c, Mapping)]
        widths = [max(_share(c, "a"), _share(c, "b")) * scale for c in children]
        squeeze = min(1.0, width / sum(widths)) if sum(widths) > 0 else 1.0
        child_x = x
        for child, child_width in zip(children, widths, strict=True):
            pending.append((child, child_x, child_width * squeeze, depth + 1))
            child_x += child_width * squeeze
    height = (depth_seen + 1) * FLAME_ROW
    head = (
        f'<svg class="flame diff" role="img" '
        f'viewBox="0 0 {FLAME_WIDTH:.0f} {height:.0f}" width="100%" '
        f'font-family="monospace" font-size="{FLAME_FONT:.0f}">'
    )
    return Markup(head + "".join(parts) + "</svg>")


def _children(node: Mapping[str, Any]) -> list[Any]:
    children = node.get("children")
    return children if isinstance(children, list) else []
