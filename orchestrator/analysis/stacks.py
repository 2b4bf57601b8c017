"""Folded stacks: parsing py-spy's ``--format raw`` output and summarising it.

A folded file has one line per distinct stack: frames joined by ``;`` from the root to
the leaf, a space, and how many samples saw that stack, e.g.
``<module> (app.py:12);decode (app.py:4) 91``. py-spy writes frames as
``name (file:line)``, ``name (file)`` (no line, e.g. ``--native``) or a bare ``name``,
and with ``--threads`` / ``--subprocesses`` it puts pseudo-frames for the thread
(``thread (14317): MainThread``) and the process (``process 42:"python3 app.py"``) in
front of the Python frames. Those are not functions: they are stripped from the stacks,
and each thread's samples are kept apart as one :class:`ThreadPart` of the profile.
Unresolved native addresses become one frame per library (:mod:`.native`).

Everything here is pure except :func:`read_folded`. Device output is untrusted: nothing
in it can make the parser raise; a line that cannot be read is counted in
``malformed_lines`` and skipped.

A fleet's report holds every host's profile at once (docs/performance.md: 500 hosts of
20,000 stacks of 10 to 40 frames). What keeps that affordable:

- The profiles parsed while any of them is alive share one ``Frame`` per frame text, one
  tuple per distinct stack and one key per function: a fleet runs one software, so most
  stacks of one host are stacks of its peers. A profile keeps its stacks and counts in
  two arrays (:class:`StackCounts`), half a dict's size.
- Frames are named tuples: hashing a 30-frame stack is done in C.
- Flame graphs and diffs read a tree only down to a small share of the samples, so it is
  made only that far (:class:`LazyTree`): most of a profile's call tree is never built.
- Nothing built here is cyclic, so the cyclic garbage collector is paused while the big
  structures are built (:func:`gc_paused`): otherwise it rescans every object alive, all
  the hosts' profiles, again and again; it took 70% of a report's time.
"""

from __future__ import annotations

import gc
import re
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from orchestrator.analysis.counts import StackCounts as StackCounts
from orchestrator.analysis.native import fold_unresolved
from orchestrator.values import visible

MAX_LINE_CHARS = 1 << 20
"""A longer line is not a stack any profiler would write; it is counted as malformed."""

DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_MAX_DEPTH = 64

# A count beyond this is corrupt data, not a sample count (2**63 has 19 digits).
_MAX_COUNT_DIGITS = 18

_FILE_LINE = re.compile(r"(?P<file>.*):(?P<line>[0-9]{1,9})")
# py-spy's thread frame: `thread (TID)` or `thread (TID): NAME`; TID is decimal (native
# thread id) or hex like 0x7F3A2C1B8740 (macOS, or when the native id is unknown).
_THREAD = re.compile(r"thread \((?P<tid>0[xX][0-9a-fA-F]+|[0-9]+)\)(?:: (?P<name>.*))?")
# py-spy's process frame with --subprocesses: `process PID:"COMMAND LINE"`.
_PROCESS = re.compile(r'process (?P<pid>[0-9]+):"(?P<cmd>.*)"')
_PSEUDO_PREFIXES = ("process ", "thread (")

FunctionKey = tuple[str, str | None]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Automatic cyclic garbage collection off while the block runs (if it was on).

    For code that builds hundreds of thousands of acyclic objects (stacks, call trees,
    JSON-ready dicts): each collection would walk every container alive, and a big
    fleet's report has millions of them. Cycles made meanwhile are collected later.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Frame(NamedTuple):
    """One stack frame. ``file`` and ``line`` are None where the profiler gave none."""

    function: str
    file: str | None
    line: int | None

    @property
    def key(self) -> FunctionKey:
        """Identity when summing: the same function at another line is the same function."""
        return (self.function, self.file)


# Frame -> its key, in C (a frame is a tuple whose first two items are its key).
_KEY: Callable[[Frame], FunctionKey] = itemgetter(0, 1)


Stack = tuple[Frame, ...]


@dataclass(frozen=True)
class StackProfile:
    """Sample counts per distinct stack (root first), pseudo-frames removed.

    ``stacks`` keeps line numbers (two lines of one function are two stacks); every
    aggregate below merges frames by ``(function, file)``. A stack may be empty ``()``
    when a sample held only pseudo-frames (an idle thread with ``--idle``): such samples
    count in ``total_samples`` and in nothing else.
    """

    stacks: Mapping[tuple[Frame, ...], int]
    total_samples: int
    malformed_lines: int
    threads: list[str]
    processes: list[str] = field(default_factory=list)
    truncated: bool = False  # read_folded stopped at max_bytes
    # The samples of each thread (and process) py-spy named, when it named any
    # (``--threads``, ``--subprocesses``); empty otherwise. Their stacks are the same
    # objects as the profile's, so a part costs only its counts.
    parts: tuple[ThreadPart, ...] = ()
    # The frames and stacks this profile shares with the others parsed meanwhile; kept
    # alive by the profiles that use it, and no part of what a profile is.
    _shared: Any = field(default=None, compare=False, repr=False)

    @cached_property
    def self_counts(self) -> dict[FunctionKey, int]:
        """Samples per function as the leaf (its self time); computed once."""
        counts: dict[FunctionKey, int] = {}
        get = counts.get
        for frames, count in self.stacks.items():
            if frames:
                key = _KEY(frames[-1])
                counts[key] = get(key, 0) + count
        return counts


@dataclass(frozen=True)
class ThreadPart:
    """The samples of one thread of one process, as py-spy's pseudo-frames named them.

    ``tid`` is py-spy's text for the thread (the native id in decimal, or a hex pthread
    id); ``name`` the Python thread name, which py-spy cannot always read: a thread it
    named once keeps that name for its unnamed samples. ``pid``/``command`` come with
    ``--subprocesses`` (``parent_pid`` when py-spy showed the process's parent).
    """

    pid: int | None
    command: str | None
    parent_pid: int | None
    tid: str | None
    name: str | None
    samples: int
    stacks: Mapping[Stack, int]

    @property
    def label(self) -> str:
        """The thread as a person names it: its name, else its id."""
        return self.name or self.tid or "?"


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
            if location == "unresolved":  # a library's unresolved code, folded (native.py)
                return Frame(text, None, None)
            match = _FILE_LINE.fullmatch(location)
            if match:
                return Frame(function, match["file"] or None, int(match["line"]))
            return Frame(function, location or None, None)
    return Frame(text, None, None)


class _Frames(dict[str, Frame]):
    """Frame text -> Frame, parsed on first sight."""

    def __missing__(self, text: str) -> Frame:
        frame = self[text] = parse_frame(text)
        return frame


class _Keys(dict[Frame, FunctionKey]):
    """Frame -> its key, one tuple per key: the call trees' dicts then hold one shared key
    object each instead of a copy per node, and a lookup that finds it compares by identity."""

    def __init__(self) -> None:
        super().__init__()
        self._distinct: dict[FunctionKey, FunctionKey] = {}

    def __missing__(self, frame: Frame) -> FunctionKey:
        key = (frame.function, frame.file)
        key = self[frame] = self._distinct.setdefault(key, key)
        return key


class _Shared:
    """The frames and distinct stacks of the profiles parsed while any of them lives."""

    __slots__ = ("__weakref__", "frames", "keys", "stacks")

    # Past this many distinct stacks a new table starts (the old one lives on with the
    # profiles that use it): a long-lived process never holds more than its profiles do.
    MAX_STACKS = 4_000_000

    def __init__(self) -> None:
        self.frames = _Frames()
        self.keys = _Keys()
        self.stacks: dict[tuple[Frame, ...], tuple[Frame, ...]] = {}


_current: weakref.ref[_Shared] | None = None


def _keys_for(profile: StackProfile) -> _Keys:
    """The frame -> key table the profile shares with its peers, or a new one."""
    shared = profile._shared
    return shared.keys if isinstance(shared, _Shared) else _Keys()


def _shared() -> _Shared:
    global _current
    shared = _current() if _current is not None else None
    if shared is None or len(shared.stacks) > _Shared.MAX_STACKS:
        shared = _Shared()
        _current = weakref.ref(shared)
    return shared


def parse_folded(text: str) -> StackProfile:
    """Parse folded-stack text. Never raises on bad content; see the module docstring."""
    with gc_paused():
        return _Builder().feed_lines(visible(text.replace("\r\n", "\n")).split("\n")).build()


def read_folded(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> StackProfile:
    """Parse a folded file, reading at most ``max_bytes``.

    Past the cap the rest is ignored, the profile says ``truncated`` and the line cut in
    half is counted as malformed. Bytes that are not UTF-8 are replaced, not fatal.
    """
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    truncated = len(data) > max_bytes
    with gc_paused():
        builder = _Builder()
        if truncated:
            data = data[:max_bytes]
            last_newline = data.rfind(b"\n")
            data = data[: last_newline + 1] if last_newline >= 0 else b""
            builder.malformed += 1
        # Frame names come from the device: control characters made visible here reach
        # no flame graph, table, export or terminal raw (docs/security.md).
        text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
        builder.feed_lines(visible(text).split("\n"))
        return builder.build(truncated=truncated)


class _Builder:
    def __init__(self) -> None:
        self.shared = _shared()
        # The distinct stacks in order of first sight, and their counts. A stack is the
        # shared (interned) tuple, so its id finds it again without hashing 30 frames.
        self.stacks: list[Stack] = []
        self.counts: list[int] = []
        self.position: dict[int, int] = {}
        self.total = 0
        self.malformed = 0
        self.processes: dict[str, None] = {}  # an ordered set: first seen first
        # Per (pid, tid): what py-spy said of the thread, and its counts by stack position.
        self.owners: dict[tuple[int | None, str | None], _Owner] = {}
        self.attributed = 0  # samples that carried a thread or process frame
        self.pseudo: dict[str, tuple[str, str, str | None] | None] = {}

    def feed_lines(self, lines: Iterable[str]) -> _Builder:
        frame_of = self.shared.frames.__getitem__
        intern = self.shared.stacks.setdefault
        stacks, counts, position = self.stacks, self.counts, self.position
        for raw in lines:
            if not raw or raw.isspace():
                continue
            if len(raw) > MAX_LINE_CHARS:
                self.malformed += 1
                continue
            # Only "\n" ends a line (str.splitlines would also split on characters a
            # hostile function name can hold); trailing whitespace and "\r" go.
            stack, sep, count_text = raw.rstrip().rpartition(" ")
            if (
                not sep
                or len(count_text) > _MAX_COUNT_DIGITS
                or not (count_text.isascii() and count_text.isdigit())
            ):
                self.malformed += 1
                continue
            count = int(count_text)
            frames: tuple[Frame, ...] = ()
            owner: _Owner | None = None
            if stack:
                # py-spy writes " N" for samples in which it found no Python frame at all
                # (the interpreter starting up or shutting down): real samples, no stack.
                parts = stack.split(";")
                if "" in parts:
                    parts = [part for part in parts if part]
                    if not parts:
                        self.malformed += 1
                        continue
                if parts[0].startswith(_PSEUDO_PREFIXES):
                    parts, owner = self._strip_pseudo_frames(parts)
                if "0x" in stack:
                    parts = fold_unresolved(parts)
                parsed = tuple(map(frame_of, parts))
                frames = intern(parsed, parsed)
            if count:
                at = position.get(id(frames))
                if at is None:
                    at = position[id(frames)] = len(stacks)
                    stacks.append(frames)
                    counts.append(count)
                else:  # seen before (another thread, say): add
                    counts[at] += count
                self.total += count
                if owner is not None:
                    owner.samples += count
                    owner.counts[at] = owner.counts.get(at, 0) + count
                    self.attributed += count
        return self

    def _strip_pseudo_frames(self, parts: list[str]) -> tuple[list[str], _Owner | None]:
        # Pseudo-frames only ever lead the stack: processes (outermost parent first),
        # then the thread. A Python frame is never written in either form. The sampled
        # thread belongs to the innermost process; the one before it is its parent.
        start = 0
        pid: int | None = None
        parent: int | None = None
        tid = name = command = None
        while start < len(parts):
            part = parts[start]
            if part in self.pseudo:
                seen = self.pseudo[part]
            else:
                seen = self.pseudo[part] = _pseudo_frame(part)
            if seen is None:
                break
            kind, first, second = seen
            if kind == "process":
                parent, pid, command = pid, int(first), second
                self.processes.setdefault(f"{first}: {second}")
            else:
                tid, name = first, second
            start += 1
        owner = None
        if start:
            key = (pid, tid)
            owner = self.owners.get(key)
            if owner is None:
                owner = self.owners[key] = _Owner(pid, command, parent, tid)
            if name and not owner.name:
                owner.name = name
        return parts[start:], owner

    def build(self, truncated: bool = False) -> StackProfile:
        stacks = StackCounts.of(self.stacks, self.counts)
        return StackProfile(
            stacks=stacks,
            total_samples=self.total,
            malformed_lines=self.malformed,
            threads=list(dict.fromkeys(o.label for o in self.owners.values() if o.tid)),
            processes=list(self.processes),
            truncated=truncated,
            parts=tuple(self._part(owner, stacks) for owner in self.owners.values()),
            _shared=self.shared,
        )

    def _part(self, owner: _Owner, whole: Mapping[Stack, int]) -> ThreadPart:
        if len(self.owners) == 1 and self.attributed == self.total:
            stacks = whole  # the only thread: its stacks are the profile's
        else:
            positions = sorted(owner.counts)
            stacks = StackCounts.of(
                [self.stacks[at] for at in positions], [owner.counts[at] for at in positions]
            )
        return ThreadPart(
            pid=owner.pid,
            command=owner.command,
            parent_pid=owner.parent,
            tid=owner.tid,
            name=owner.name,
            samples=owner.samples,
            stacks=stacks,
        )


class _Owner:
    """A thread's samples while a file is read (see :class:`ThreadPart`)."""

    __slots__ = ("command", "counts", "name", "parent", "pid", "samples", "tid")

    def __init__(
        self, pid: int | None, command: str | None, parent: int | None, tid: str | None
    ) -> None:
        self.pid, self.command, self.parent, self.tid = pid, command, parent, tid
        self.name: str | None = None
        self.samples = 0
        self.counts: dict[int, int] = {}

    @property
    def label(self) -> str:
        return self.name or self.tid or "?"


def _pseudo_frame(text: str) -> tuple[str, str, str | None] | None:
    """``("process", pid, command)``, ``("thread", tid, name)`` or None (not one)."""
    if text.startswith("process ") and (process := _PROCESS.fullmatch(text)):
        return "process", process["pid"], process["cmd"]
    if text.startswith("thread (") and (thread := _THREAD.fullmatch(text)):
        return "thread", thread["tid"], thread["name"] or None
    return None


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole > 0 else 0.0


def top_functions(profile: StackProfile, limit: int = 25) -> list[FunctionStat]:
    """Functions by self samples (the leaf), then by total samples (anywhere on the stack).

    A recursive function counts once per stack in its total, so no total exceeds 100%.
    """
    with gc_paused():
        self_counts = profile.self_counts
        # Stacks by sample count: each bucket's functions are then counted in C, once
        # per stack (a set of the stack's keys), and weighted by the bucket's count.
        buckets: dict[int, list[tuple[Frame, ...]]] = {}
        for frames, count in profile.stacks.items():
            if frames:
                bucket = buckets.get(count)
                if bucket is None:
                    buckets[count] = [frames]
                else:
                    bucket.append(frames)
        total_counts: dict[FunctionKey, int] = {}
        key_of = _keys_for(profile).__getitem__
        for count, stacks in buckets.items():
            seen = Counter(chain.from_iterable(set(map(key_of, frames)) for frames in stacks))
            for key, stacks_with_it in seen.items():
                total_counts[key] = total_counts.get(key, 0) + stacks_with_it * count

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


def merge_profiles(profiles: Iterable[StackProfile]) -> StackProfile:
    """One profile summing several (several processes, files or hosts of one model)."""
    total = malformed = 0
    threads: dict[str, None] = {}
    processes: dict[str, None] = {}
    parts: list[ThreadPart] = []
    truncated = False
    shared = None
    # Summed by identity first: the stacks of profiles parsed together are the same
    # objects, and an id hashes in no time where a 30-frame tuple takes a microsecond.
    # Equal stacks that are distinct objects meet again in the second step.
    by_id: dict[int, list[Any]] = {}
    with gc_paused():
        for profile in profiles:
            get = by_id.get
            for frames, count in profile.stacks.items():
                slot = get(id(frames))
                if slot is None:
                    by_id[id(frames)] = [frames, count]
                else:
                    slot[1] += count
            total += profile.total_samples
            malformed += profile.malformed_lines
            threads.update(dict.fromkeys(profile.threads))
            processes.update(dict.fromkeys(profile.processes))
            parts.extend(profile.parts)
            truncated = truncated or profile.truncated
            shared = shared or profile._shared
        stacks: dict[tuple[Frame, ...], int] = {}
        for frames, count in by_id.values():
            known = len(stacks)
            before = stacks.setdefault(frames, count)
            if len(stacks) == known:
                stacks[frames] = before + count
    return StackProfile(
        stacks=stacks,
        total_samples=total,
        malformed_lines=malformed,
        threads=list(threads),
        processes=list(processes),
        truncated=truncated,
        parts=tuple(parts),
        _shared=shared,
    )


# The call trees live in their own module (which needs the names above); their names
# stay importable from here.
from orchestrator.analysis import trees as _trees  # noqa: E402

CallTree = _trees.CallTree
LazyTree = _trees.LazyTree
Tree = _trees.Tree
flame_of_tree = _trees.flame_of_tree
flame_tree = _trees.flame_tree
