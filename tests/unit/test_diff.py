"""Differential flame trees."""

from __future__ import annotations

from typing import Any

from orchestrator.analysis.diff import CallTree, diff_tree, profile_diff
from orchestrator.analysis.stacks import StackProfile, merge_profiles, parse_folded


def _profile(text: str) -> StackProfile:
    return parse_folded(text)


A = _profile("main (a.py:1);decode (a.py:5) 60\nmain (a.py:1);detect (a.py:9) 40\n")
B = _profile("main (a.py:1);decode (a.py:5) 20\nmain (a.py:1);detect (a.py:9) 180\n")


def _nodes(tree: dict[str, Any]) -> list[dict[str, Any]]:
    out, pending = [], [tree]
    while pending:
        node = pending.pop()
        out.append(node)
        pending.extend(node["children"])
    return out


def _child(node: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in node["children"] if c["name"] == name)


def test_each_side_is_a_fraction_of_its_own_total() -> None:
    tree = profile_diff(A, B)
    assert (tree["name"], tree["a"], tree["b"]) == ("all", 1.0, 1.0)
    main = _child(tree, "main")
    assert (main["a"], main["b"], main["file"]) == (1.0, 1.0, "a.py")
    assert (_child(main, "decode")["a"], _child(main, "decode")["b"]) == (0.6, 0.1)
    assert (_child(main, "detect")["a"], _child(main, "detect")["b"]) == (0.4, 0.9)


def test_children_never_sum_past_their_parent() -> None:
    tree = profile_diff(A, merge_profiles([A, B]))
    for node in _nodes(tree):
        for side in ("a", "b"):
            assert sum(c[side] for c in node["children"]) <= node[side] + 1e-9


def test_a_node_small_on_both_sides_is_pruned_but_one_large_side_keeps_it() -> None:
    a = _profile("main;hot 999\nmain;tiny 1\nmain;rare 1\n")
    b = _profile("main;hot 500\nmain;tiny 1\nmain;rare 499\n")
    main = _child(profile_diff(a, b), "main")
    names = [c["name"] for c in main["children"]]
    assert "tiny" not in names
    assert "rare" in names and _child(main, "rare")["a"] < 0.005


def test_a_host_against_its_group_without_itself() -> None:
    trees = [CallTree.of(p) for p in (A, B, B)]
    group = CallTree.sum(trees)
    tree = diff_tree(trees[0], group, subtract=trees[0])
    rest = profile_diff(A, merge_profiles([B, B]))
    assert tree == rest
    assert group.value == A.total_samples + 2 * B.total_samples


def test_an_empty_side_is_all_zeros() -> None:
    tree = profile_diff(A, parse_folded(""))
    assert tree["b"] == 0.0
    assert all(node["b"] == 0.0 for node in _nodes(tree))


def test_depth_is_limited() -> None:
    deep = _profile(";".join(f"f{i}" for i in range(100)) + " 10\n")
    tree = diff_tree(CallTree.of(deep, max_depth=5), CallTree.of(deep, max_depth=5))
    assert _depth(tree) == 5


def _depth(node: dict[str, Any]) -> int:
    return max((1 + _depth(c) for c in node["children"]), default=0)
