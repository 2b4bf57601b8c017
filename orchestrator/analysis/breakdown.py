"""A py-spy profile broken down by thread, by process and by native library (pure).

py-spy names every sample's thread with ``--threads`` (the plan always asks) and its
process with ``--subprocesses``; the parser keeps each thread's samples apart
(:class:`~orchestrator.analysis.stacks.ThreadPart`). From those this module makes the
rows of a host's ``tables`` in report.json (``pyspy.threads``, ``pyspy.processes``,
``pyspy.native``), the profile of any set of parts, the sampling rate per tick, and the
fleet's view of its processes merged by command line.

Shares are of the host's samples, like ``top_functions``' ``self_pct``: a thread's
``share_pct`` is the part of the host's profile that thread is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.analysis.native import frame_kind, is_unresolved, library_of
from orchestrator.analysis.stacks import (
    Stack,
    StackProfile,
    ThreadPart,
    gc_paused,
    top_functions,
)
from orchestrator.analysis.trees import flame_tree

MAX_THREAD_FLAMES = 8  # the busiest threads of a host get a flame graph of their own
# A thread's or process's flame graph keeps frames of at least 1% of its samples (the
# host's keeps 0.2%): a fleet's report holds one per thread of every host.
PART_MIN_FRACTION = 0.01
MAX_PROCESS_FUNCTIONS = 10
MAX_COMMANDS = 20


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole > 0 else 0.0


def profile_of(profile: StackProfile, parts: Sequence[ThreadPart]) -> StackProfile:
    """The samples of ``parts`` (of ``profile``) as a profile of their own."""
    if len(parts) == 1:
        stacks: Mapping[Stack, int] = parts[0].stacks
    else:
        summed: dict[Stack, int] = {}
        with gc_paused():
            for part in parts:
                for stack, count in part.stacks.items():
                    summed[stack] = summed.get(stack, 0) + count
        stacks = summed
    return StackProfile(
        stacks=stacks,
        total_samples=sum(p.samples for p in parts),
        malformed_lines=0,
        threads=list(dict.fromkeys(p.label for p in parts if p.tid)),
        processes=list(dict.fromkeys(f"{p.pid}: {p.command}" for p in parts if p.pid is not None)),
        parts=tuple(parts),
        _shared=profile._shared,
    )


def _functions(profile: StackProfile, limit: int) -> list[dict[str, Any]]:
    return [
        {"function": s.function, "file": s.file, "self_pct": s.self_pct, "total_pct": s.total_pct}
        for s in top_functions(profile, limit=limit)
    ]


def _busiest(row: dict[str, Any]) -> tuple[int, str]:
    return -int(row["samples"]), str(row.get("pid") or row.get("command"))


def _by_samples(parts: Iterable[ThreadPart]) -> list[ThreadPart]:
    return sorted(parts, key=lambda p: (-p.samples, p.pid or 0, p.label))


def thread_rows(profile: StackProfile) -> list[dict[str, Any]]:
    """One row per thread py-spy named, busiest first: ``pid`` (null without
    ``--subprocesses``), ``tid``, ``name`` (null where py-spy could not read it),
    ``samples``, ``share_pct``; and, when the host has several threads, the busiest
    ones' own ``flamegraph`` (those with at least 1% of the host's samples)."""
    threads = [p for p in profile.parts if p.tid is not None]
    flames = len(threads) > 1
    # A thread with a sliver of the samples gets no flame graph (each costs about what
    # the host's own does to make, and report.json holds them for every host).
    min_samples = max(1, round(PART_MIN_FRACTION * profile.total_samples))
    rows = []
    for rank, part in enumerate(_by_samples(threads)):
        row: dict[str, Any] = {
            "pid": part.pid,
            "tid": part.tid,
            "name": part.name,
            "samples": part.samples,
            "share_pct": _pct(part.samples, profile.total_samples),
        }
        if flames and rank < MAX_THREAD_FLAMES and part.samples >= min_samples:
            row["flamegraph"] = flame_tree(profile_of(profile, [part]), PART_MIN_FRACTION)
        rows.append(row)
    return rows


def _processes(parts: Iterable[ThreadPart]) -> dict[int, list[ThreadPart]]:
    by_pid: dict[int, list[ThreadPart]] = {}
    for part in parts:
        if part.pid is not None:
            by_pid.setdefault(part.pid, []).append(part)
    return by_pid


def process_rows(profile: StackProfile) -> list[dict[str, Any]]:
    """One row per process (``--subprocesses``), busiest first: ``pid``, ``parent_pid``,
    ``command``, ``samples``, ``share_pct``, ``threads`` (their labels), and the
    process's own ``top_functions`` and ``flamegraph``."""
    rows = []
    for pid, parts in _processes(profile.parts).items():
        own = profile_of(profile, parts)
        rows.append(
            {
                "pid": pid,
                "parent_pid": parts[0].parent_pid,
                "command": parts[0].command,
                "samples": own.total_samples,
                "share_pct": _pct(own.total_samples, profile.total_samples),
                "threads": [p.label for p in _by_samples(parts)],
                "top_functions": _functions(own, MAX_PROCESS_FUNCTIONS),
                "flamegraph": flame_tree(own, PART_MIN_FRACTION) if own.total_samples else None,
            }
        )
    return sorted(rows, key=_busiest)


@dataclass(frozen=True)
class NativeShare:
    """How much of a profile's self time is native code, and how much py-spy could not name."""

    native_samples: int
    unresolved_samples: int
    libraries: list[dict[str, Any]]  # rows of ``pyspy.native``


def native_share(profile: StackProfile) -> NativeShare:
    """Self samples by kind and by library: a library's row sums its named functions and
    its unresolved code, so its cost is one row."""
    native = unresolved = 0
    by_library: dict[str, list[int]] = {}
    for (function, file), count in profile.self_counts.items():
        if frame_kind(function, file) != "native":
            continue
        native += count
        library = library_of(function, file)
        lost = is_unresolved(function, file)
        unresolved += count if lost else 0
        if library is not None:
            slot = by_library.setdefault(library, [0, 0])
            slot[0] += count
            slot[1] += count if lost else 0
    whole = profile.total_samples
    rows: list[dict[str, Any]] = [
        {
            "library": library,
            "self_samples": own,
            "self_pct": _pct(own, whole),
            "unresolved_samples": lost,
            "unresolved_pct": _pct(lost, whole),
        }
        for library, (own, lost) in by_library.items()
    ]
    rows.sort(key=lambda r: (-int(r["self_samples"]), str(r["library"])))
    return NativeShare(native, unresolved, rows)


@dataclass(frozen=True)
class SamplingRate:
    """Sampling ticks per second. ``exact`` when every thread was sampled at every tick
    (``idle: true`` without ``gil: true``); otherwise a lower bound (py-spy drops the
    samples of idle threads, or of those without the GIL, and never counts its ticks)."""

    hz: float
    ticks: int
    exact: bool


def sampling_rate(
    profile: StackProfile, window_s: float, *, idle: bool, gil: bool
) -> SamplingRate | None:
    """The rate py-spy sampled at, per tick rather than per thread sample: py-spy takes
    one sample of every (kept) thread per tick, so a thread alive through the window has
    one sample per tick and the busiest thread's count is the number of ticks. Without
    thread frames (an old run), all samples are taken as one thread's."""
    if window_s <= 0:
        return None
    threads = [p.samples for p in profile.parts if p.tid is not None]
    ticks = max(threads) if threads else profile.total_samples
    return SamplingRate(ticks / window_s, ticks, bool(threads) and idle and not gil)


def processes_by_command(profiles: Mapping[str, StackProfile]) -> list[dict[str, Any]]:
    """Every process of every host merged by its command line (``--subprocesses``): one
    row per command, busiest first, with ``hosts``, ``processes`` (how many), ``samples``,
    ``share_pct`` (of all those hosts' samples), ``top_functions`` and ``flamegraph``.
    Empty when no host's profile names processes."""
    groups: dict[str, list[tuple[str, StackProfile, ThreadPart]]] = {}
    total = 0
    for host, profile in sorted(profiles.items()):
        named = [p for p in profile.parts if p.pid is not None]
        if named:
            total += profile.total_samples
        for part in named:
            groups.setdefault(part.command or "", []).append((host, profile, part))
    rows = []
    for command, members in groups.items():
        merged = profile_of(members[0][1], [part for _, _, part in members])
        rows.append(
            {
                "command": command,
                "hosts": sorted({host for host, _, _ in members}),
                "processes": len({(host, part.pid) for host, _, part in members}),
                "samples": merged.total_samples,
                "share_pct": _pct(merged.total_samples, total),
                "top_functions": _functions(merged, MAX_PROCESS_FUNCTIONS),
                "flamegraph": flame_tree(merged) if merged.total_samples else None,
            }
        )
    return sorted(rows, key=_busiest)[:MAX_COMMANDS]
