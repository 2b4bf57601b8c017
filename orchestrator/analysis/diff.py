"""Differential flame trees: where two profiles spend their time differently (pure).

Both sides are turned into call trees merged by ``(function, file)``, like
:func:`orchestrator.analysis.stacks.flame_tree`, and walked together. Each node of the
result is ``{"name", "file", "a", "b", "children"}``: ``a`` and ``b`` are the fractions
of that side's total samples spent in the node (itself and below), so two hosts with
different sample counts (a slow board, a shorter window) compare directly. The root
``"all"`` is 1.0 on each side that has samples. Nodes below ``min_fraction`` on both
sides are dropped (their time stays in the parent), and frames deeper than
``max_depth`` are cut off the same way.

A host is compared with its group *without itself* (``subtract``), so one deviant host
in a small group does not pull the reference towards itself.
"""

from __future__ import annotations

from typing import Any

from orchestrator.analysis.stacks import DEFAULT_MAX_DEPTH as DEFAULT_MAX_DEPTH
from orchestrator.analysis.stacks import CallTree as CallTree
from orchestrator.analysis.stacks import LazyTree, StackProfile, Tree, gc_paused

DEFAULT_MIN_FRACTION = 0.005

Key = tuple[str, str | None]


def diff_tree(
    a: Tree,
    b: Tree,
    *,
    subtract: Tree | None = None,
    min_fraction: float = DEFAULT_MIN_FRACTION,
) -> dict[str, Any]:
    """``a`` against ``b`` (less ``subtract``, a part of ``b``: the host inside its group)."""

    def b_value(node: Tree | None, minus: Tree | None) -> int:
        return (node.value if node else 0) - (minus.value if minus else 0)

    a_total = a.value
    b_total = b_value(b, subtract)

    def frac(value: int, total: int) -> float:
        return round(value / total, 4) if total > 0 else 0.0

    out: dict[str, Any] = {
        "name": "all",
        "file": None,
        "a": 1.0 if a_total > 0 else 0.0,
        "b": 1.0 if b_total > 0 else 0.0,
        "children": [],
    }
    a_cut = min_fraction * a_total
    b_cut = min_fraction * b_total
    Side = Tree | None
    pending: list[tuple[Side, Side, Side, list[dict[str, Any]]]] = [
        (a, b, subtract, out["children"])
    ]
    with gc_paused():
        while pending:
            a_node, b_node, minus, into = pending.pop()
            keys = set(a_node.children if a_node else ()) | set(b_node.children if b_node else ())
            kept = []
            for key in keys:
                a_child = a_node.children.get(key) if a_node else None
                b_child = b_node.children.get(key) if b_node else None
                m_child = minus.children.get(key) if minus else None
                a_val = a_child.value if a_child else 0
                b_val = b_value(b_child, m_child)
                if (a_total and a_val >= a_cut and a_val > 0) or (
                    b_total and b_val >= b_cut and b_val > 0
                ):
                    kept.append((key, a_child, b_child, m_child, a_val, b_val))
            kept.sort(
                key=lambda k: (
                    -(k[4] / a_total if a_total else 0) - (k[5] / b_total if b_total else 0),
                    k[0][0],
                    k[0][1] or "",
                )
            )
            for (function, file), a_child, b_child, m_child, a_val, b_val in kept:
                entry: dict[str, Any] = {
                    "name": function,
                    "file": file,
                    "a": frac(a_val, a_total),
                    "b": frac(b_val, b_total),
                    "children": [],
                }
                into.append(entry)
                pending.append((a_child, b_child, m_child, entry["children"]))
    return out


def profile_diff(
    a: StackProfile, b: StackProfile, min_fraction: float = DEFAULT_MIN_FRACTION
) -> dict[str, Any]:
    """Convenience: two profiles' diff tree."""
    return diff_tree(LazyTree.of(a), LazyTree.of(b), min_fraction=min_fraction)
