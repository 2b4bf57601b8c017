"""Call trees of a py-spy profile: summed (:class:`CallTree`), built lazily
(:class:`LazyTree`), and as JSON-ready flame graphs (:func:`flame_tree`).

Frames are merged by ``(function, file)``; each flame graph node says whether its frame
is Python or native code (``kind``, see :mod:`orchestrator.analysis.native`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from orchestrator.analysis.native import frame_kind
from orchestrator.analysis.stacks import (
    DEFAULT_MAX_DEPTH,
    FunctionKey,
    Stack,
    StackProfile,
    _Keys,
    _keys_for,
    gc_paused,
)


class _NoChildren(dict[FunctionKey, "CallTree"]):
    """The children of every leaf: one shared empty dict that refuses to grow (a tree of
    a few hundred thousand nodes has as many leaves, each with its own dict otherwise)."""

    def __setitem__(self, key: FunctionKey, value: CallTree) -> None:
        raise TypeError("a leaf's children are shared; give the node its own dict first")


_NO_CHILDREN = _NoChildren()


class CallTree:
    """Sample counts per call path, merged by ``(function, file)``; addable.

    The root's value is the profile's total (samples without any frame included), each
    node's the samples of the stacks that pass through it. A leaf's ``children`` is a
    shared empty dict: read it freely, and grow a tree with :meth:`child`.
    """

    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.value = 0
        self.children: dict[FunctionKey, CallTree] = _NO_CHILDREN

    def child(self, key: FunctionKey) -> CallTree:
        """The child for ``key``, added when missing."""
        found = self.children.get(key)
        if found is None:
            found = type(self)()
            if self.children is _NO_CHILDREN:
                self.children = {key: found}
            else:
                self.children[key] = found
        return found

    @classmethod
    def of(cls, profile: StackProfile, max_depth: int = DEFAULT_MAX_DEPTH) -> CallTree:
        """The profile's tree; frames deeper than ``max_depth`` are cut off (their samples
        stay in the node above)."""
        root = cls()
        root.value = profile.total_samples
        depth = max(max_depth, 0)
        key_of = _keys_for(profile).__getitem__
        with gc_paused():
            for frames, count in profile.stacks.items():
                node = root
                # A slice of a whole tuple is the tuple itself: no copy for most stacks.
                for key in map(key_of, frames[:depth]):
                    child = node.children.get(key)
                    if child is None:
                        child = cls()
                        if node.children is _NO_CHILDREN:
                            node.children = {key: child}
                        else:
                            node.children[key] = child
                    child.value += count
                    node = child
        return root

    @classmethod
    def sum(cls, trees: Iterable[CallTree]) -> CallTree:
        total = cls()
        for tree in trees:
            total.add(tree)
        return total

    def add(self, other: CallTree) -> None:
        with gc_paused():
            pending = [(self, other)]
            while pending:
                into, source = pending.pop()
                into.value += source.value
                for key, child in source.children.items():
                    pending.append((into.child(key), child))


class Tree(Protocol):
    """What :func:`flame_of_tree` and the diffs read of a call tree: a node's samples and
    its children by ``(function, file)``."""

    @property
    def value(self) -> int: ...

    @property
    def children(self) -> Mapping[FunctionKey, Tree]: ...


class LazyTree:
    """A profile's call tree made only as far as it is read.

    A node keeps the stacks that pass through it until its children are first asked for;
    then it splits them by their next frame and lets them go. Flame graphs and diffs read
    the nodes above a small share of the samples and the children of those, a few thousand
    of a group's few hundred thousand: the rest is never made. (A group of 125 hosts'
    full tree took 50 MB, and a report holds one per group.)
    """

    __slots__ = ("_children", "_counts", "_depth", "_keys", "_max_depth", "_stacks", "value")

    def __init__(
        self,
        stacks: list[Stack],
        counts: list[int],
        value: int,
        depth: int,
        max_depth: int,
        keys: _Keys,
    ) -> None:
        self.value = value
        self._stacks: list[Stack] | None = stacks
        self._counts: list[int] | None = counts
        self._depth = depth
        self._max_depth = max_depth
        self._keys = keys
        self._children: dict[FunctionKey, LazyTree] | None = None

    @classmethod
    def of(cls, profile: StackProfile, max_depth: int = DEFAULT_MAX_DEPTH) -> LazyTree:
        """The profile's tree; frames deeper than ``max_depth`` are cut off (their samples
        stay in the node above), as in :meth:`CallTree.of`."""
        stacks, counts = [], []
        for stack, count in profile.stacks.items():
            if stack:
                stacks.append(stack)
                counts.append(count)
        return cls(stacks, counts, profile.total_samples, 0, max(max_depth, 0), _keys_for(profile))

    @property
    def children(self) -> dict[FunctionKey, LazyTree]:
        if self._children is None:
            self._children = self._split()
            self._stacks = self._counts = None
        return self._children

    def _split(self) -> dict[FunctionKey, LazyTree]:
        depth = self._depth
        if depth >= self._max_depth or not self._stacks or not self._counts:
            return {}
        key_of = self._keys.__getitem__
        parts: dict[FunctionKey, tuple[list[Stack], list[int]]] = {}
        with gc_paused():
            for stack, count in zip(self._stacks, self._counts, strict=True):
                if len(stack) > depth:
                    key = key_of(stack[depth])
                    part = parts.get(key)
                    if part is None:
                        parts[key] = ([stack], [count])
                    else:
                        part[0].append(stack)
                        part[1].append(count)
            below = depth + 1
            return {
                key: LazyTree(stacks, counts, sum(counts), below, self._max_depth, self._keys)
                for key, (stacks, counts) in parts.items()
            }


def flame_tree(
    profile: StackProfile, min_fraction: float = 0.002, max_depth: int = DEFAULT_MAX_DEPTH
) -> dict[str, Any]:
    """The profile as a JSON-ready tree for a flame graph.

    ``{"name", "file", "value", "children"}`` per node; the root is ``"all"`` with the
    total. Children are merged by ``(function, file)`` and sorted by value, largest first.
    A node smaller than ``min_fraction`` of the total is dropped (its samples stay in its
    parent's value), and frames deeper than ``max_depth`` are cut off the same way.
    """
    return flame_of_tree(LazyTree.of(profile, max_depth), min_fraction)


def flame_of_tree(tree: Tree, min_fraction: float = 0.002) -> dict[str, Any]:
    """:func:`flame_tree` of a call tree (a profile's, or several summed)."""
    threshold = min_fraction * tree.value
    # Iterative, so a caller's generous max_depth cannot hit Python's recursion limit.
    out: dict[str, Any] = {"name": "all", "file": None, "value": tree.value, "children": []}
    pending: list[tuple[Tree, list[dict[str, Any]]]] = [(tree, out["children"])]
    with gc_paused():
        while pending:
            node, into = pending.pop()
            kept = [
                (key, child) for key, child in node.children.items() if child.value >= threshold
            ]
            kept.sort(key=lambda item: (-item[1].value, item[0][0], item[0][1] or ""))
            for (function, file), child in kept:
                entry: dict[str, Any] = {
                    "name": function,
                    "file": file,
                    "kind": frame_kind(function, file),
                    "value": child.value,
                    "children": [],
                }
                into.append(entry)
                pending.append((child, entry["children"]))
    return out
