"""Folded stacks: parsing py-spy's ``--format raw`` output and summarising it.

A folded file has one line per distinct stack: frames joined by ``;`` from the root to
the leaf, a space, and how many samples saw that stack, e.g.
``<module> (app.py:12);decode (app.py:4) 91``. py-spy writes frames as
``name (file:line)``, ``name (file)`` (no line, e.g. ``--native``) or a bare ``name``,
and with ``--threads`` / ``--subprocesses`` it puts pseudo-frames for the thread
(``thread (14317): MainThread``) and the process (``process 42:"python3 app.py"``) in
front of the Python frames. Those are not functions: they are stripped from the stacks
and the thread names are recorded on the profile instead.

Everything here is pure except :func:`read_folded`. Device output is untrusted: nothing
in it can make the parser raise; a line that cannot be read is counted in
``malformed_lines`` and skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_LINE_CHARS = 1 << 20
"""A longer line is not a stack any profiler would write; it is counted as malformed."""

DEFAULT_MAX_BYTES = 64 << 20

# A count beyond this is corrupt data, not a sample count (2**63 has 19 digits).
_MAX_COUNT_DIGITS = 18

_COUNT = re.compile(r"[0-9]+")
_FILE_LINE = re.compile(r"(?P<file>.*):(?P<line>[0-9]{1,9})")
# py-spy's thread frame: `thread (TID)` or `thread (TID): NAME`; TID is decimal (native
# thread id) or hex like 0x7F3A2C1B8740 (macOS, or when the native id is unknown).
_THREAD = re.compile(r"thread \((?P<tid>0[xX][0-9a-fA-F]+|[0-9]+)\)(?:: (?P<name>.*))?")
# py-spy's process frame with --subprocesses: `process PID:"COMMAND LINE"`.
_PROCESS = re.compile(r'process (?P<pid>[0-9]+):"(?P<cmd>.*)"')


@dataclass(frozen=True)
class Frame:
    """One stack frame. ``file`` and ``line`` are None where the profiler gave none."""

    function: str
    file: str | None
    line: int | None

    @property
    def key(self) -> tuple[str, str | None]:
        """Identity when summing: the same function at another line is the same function."""
        return (self.function, self.file)


@dataclass(frozen=True)
class StackProfile:
    """Sample counts per distinct stack (root first), pseudo-frames removed.

    ``stacks`` keeps line numbers (two lines of one function are two stacks); every
    aggregate below merges frames by ``(function, file)``. A stack may be empty ``()``
    when a sample held only pseudo-frames (an idle thread with ``--idle``): such samples
    count in ``total_samples`` and in nothing else.
    """

    stacks: dict[tuple[Frame, ...], int]
    total_samples: int
    malformed_lines: int
    threads: list[str]
    processes: list[str] = field(default_factory=list)
    truncated: bool = False  # read_folded stopped at max_bytes


@dataclass(frozen=True)
class FunctionStat:
    function: str
    file: str | None
    self_samples: int
    total_samples: int
    self_pct: float
    total_pct: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "file": self.file,
            "self_samples": self.self_samples,
            "total_samples": self.total_samples,
            "self_pct": self.self_pct,
            "total_pct": self.total_pct,
        }


def parse_frame(text: str) -> Frame:
    """``name (file:line)`` | ``name (file)`` | ``name``.

    The split is at the first `` (`` whose remainder ends with ``)``: file paths with
    spaces and parentheses (``Program Files (x86)``) are more common than function names
    with them, and a native C++ name like ``f(int)`` has no space before its parenthesis.
    """
    if text.endswith(")"):
        cut = text.find(" (")
        if cut > 0:
            function = text[:cut]
            location = text[cut + 2 : -1]
            match = _FILE_LINE.fullmatch(location)
            if match:
                return Frame(function, match["file"] or None, int(match["line"]))
            return Frame(function, location or None, None)
    return Frame(text, None, None)


def parse_folded(text: str) -> StackProfile:
    """Parse folded-stack text. Never raises on bad content; see the module docstring."""
    return _Builder().feed_lines(text.split("\n")).build()


def read_folded(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> StackProfile:
    """Parse a folded file, reading at most ``max_bytes``.

    Past the cap the rest is ignored, the profile says ``truncated`` and the line cut in
    half is counted as malformed. Bytes that are not UTF-8 are replaced, not fatal.
    """
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    truncated = len(data) > max_bytes
    builder = _Builder()
    if truncated:
        data = data[:max_bytes]
        last_newline = data.rfind(b"\n")
        data = data[: last_newline + 1] if last_newline >= 0 else b""
        builder.malformed += 1
    builder.feed_lines(data.decode("utf-8", errors="replace").split("\n"))
    return builder.build(truncated=truncated)


class _Builder:
    def __init__(self) -> None:
        self.stacks: dict[tuple[Frame, ...], int] = {}
        self.total = 0
        self.malformed = 0
        self.threads: dict[str, None] = {}  # an ordered set: first seen first
        self.processes: dict[str, None] = {}
        # A profile repeats the same few hundred frames many times over.
        self._frames: dict[str, Frame] = {}

    def feed_lines(self, lines: Iterable[str]) -> _Builder:
        for raw in lines:
            if not raw or raw.isspace():
                continue
            if len(raw) > MAX_LINE_CHARS:
                self.malformed += 1
                continue
            # Only "\n" ends a line (str.splitlines would also split on characters a
            # hostile function name can hold); trailing whitespace and "\r" go.
            parsed = self._parse_line(raw.rstrip())
            if parsed is None:
                self.malformed += 1
                continue
            frames, count = parsed
            if count:
                self.stacks[frames] = self.stacks.get(frames, 0) + count
                self.total += count
        return self

    def _parse_line(self, line: str) -> tuple[tuple[Frame, ...], int] | None:
        stack, sep, count_text = line.rpartition(" ")
        if not sep or len(count_text) > _MAX_COUNT_DIGITS:
            return None
        if not _COUNT.fullmatch(count_text):
            return None
        if not stack:
            # py-spy writes " N" for samples in which it found no Python frame at all
            # (the interpreter starting up or shutting down): real samples, no stack.
            return (), int(count_text)
        parts = [part for part in stack.split(";") if part]
        if not parts:
            return None
        # Pseudo-frames only ever lead the stack: processes (outermost parent first),
        # then the thread. A Python frame is never written in either form.
        start = 0
        while start < len(parts):
            part = parts[start]
            if part.startswith("process ") and (process := _PROCESS.fullmatch(part)):
                self.processes.setdefault(f"{process['pid']}: {process['cmd']}")
            elif part.startswith("thread (") and (thread := _THREAD.fullmatch(part)):
                self.threads.setdefault(thread["name"] or thread["tid"])
            else:
                break
            start += 1
        frames = tuple(self._frame(part) for part in parts[start:])
        return frames, int(count_text)

    def _frame(self, text: str) -> Frame:
        frame = self._frames.get(text)
        if frame is None:
            frame = self._frames[text] = parse_frame(text)
        return frame

    def build(self, truncated: bool = False) -> StackProfile:
        return StackProfile(
            stacks=self.stacks,
            total_samples=self.total,
            malformed_lines=self.malformed,
            threads=list(self.threads),
            processes=list(self.processes),
            truncated=truncated,
        )


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole > 0 else 0.0


def top_functions(profile: StackProfile, limit: int = 25) -> list[FunctionStat]:
    """Functions by self samples (the leaf), then by total samples (anywhere on the stack).

    A recursive function counts once per stack in its total, so no total exceeds 100%.
    """
    self_counts: dict[tuple[str, str | None], int] = {}
    total_counts: dict[tuple[str, str | None], int] = {}
    for frames, count in profile.stacks.items():
        if not frames:
            continue
        leaf = frames[-1].key
        self_counts[leaf] = self_counts.get(leaf, 0) + count
        for key in {frame.key for frame in frames}:
            total_counts[key] = total_counts.get(key, 0) + count

    whole = profile.total_samples
    stats = [
        FunctionStat(
            function=function,
            file=file,
            self_samples=self_counts.get((function, file), 0),
            total_samples=total,
            self_pct=_pct(self_counts.get((function, file), 0), whole),
            total_pct=_pct(total, whole),
        )
        for (function, file), total in total_counts.items()
    ]
    stats.sort(key=lambda s: (-s.self_samples, -s.total_samples, s.function, s.file or ""))
    return stats[: max(limit, 0)]


class _Node:
    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.value = 0
        self.children: dict[tuple[str, str | None], _Node] = {}


def flame_tree(
    profile: StackProfile, min_fraction: float = 0.002, max_depth: int = 64
) -> dict[str, Any]:
    """The profile as a JSON-ready tree for a flame graph.

    ``{"name", "file", "value", "children"}`` per node; the root is ``"all"`` with the
    total. Children are merged by ``(function, file)`` and sorted by value, largest first.
    A node smaller than ``min_fraction`` of the total is dropped (its samples stay in its
    parent's value), and frames deeper than ``max_depth`` are cut off the same way.
    """
    root = _Node()
    root.value = profile.total_samples
    for frames, count in profile.stacks.items():
        node = root
        for frame in frames[: max(max_depth, 0)]:
            child = node.children.get(frame.key)
            if child is None:
                child = node.children[frame.key] = _Node()
            child.value += count
            node = child

    threshold = min_fraction * profile.total_samples

    # Iterative, so a caller's generous max_depth cannot hit Python's recursion limit.
    out: dict[str, Any] = {"name": "all", "file": None, "value": root.value, "children": []}
    pending: list[tuple[_Node, list[dict[str, Any]]]] = [(root, out["children"])]
    while pending:
        node, into = pending.pop()
        kept = [(key, child) for key, child in node.children.items() if child.value >= threshold]
        kept.sort(key=lambda item: (-item[1].value, item[0][0], item[0][1] or ""))
        for (function, file), child in kept:
            entry: dict[str, Any] = {
                "name": function,
                "file": file,
                "value": child.value,
                "children": [],
            }
            into.append(entry)
            pending.append((child, entry["children"]))
    return out


def merge_profiles(profiles: Iterable[StackProfile]) -> StackProfile:
    """One profile summing several (several processes, files or hosts of one model)."""
    stacks: dict[tuple[Frame, ...], int] = {}
    total = malformed = 0
    threads: dict[str, None] = {}
    processes: dict[str, None] = {}
    truncated = False
    for profile in profiles:
        for frames, count in profile.stacks.items():
            stacks[frames] = stacks.get(frames, 0) + count
        total += profile.total_samples
        malformed += profile.malformed_lines
        threads.update(dict.fromkeys(profile.threads))
        processes.update(dict.fromkeys(profile.processes))
        truncated = truncated or profile.truncated
    return StackProfile(
        stacks=stacks,
        total_samples=total,
        malformed_lines=malformed,
        threads=list(threads),
        processes=list(processes),
        truncated=truncated,
    )
