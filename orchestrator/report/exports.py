"""Per-host profile exports for other tools, written into the run directory.

- ``hosts/<host>/profile.speedscope.json``: speedscope's file format
  (https://www.speedscope.app/file-format-schema.json), one "sampled" profile per host,
  frames shared by index, each distinct stack one sample weighted by its sample count.
- ``hosts/<host>/profile.folded``: the folded stacks normalized (``func (file:line);...
  count``, thread and process pseudo-frames removed, one line per distinct stack, the
  largest first), the input of flamegraph.pl, inferno, speedscope and most other tools.

With ``subprocesses: true`` and more than one process, each process is exported too: the
speedscope file holds one more profile per process (``<pid>: <command line>``, after the
whole host's), and ``hosts/<host>/profile.pid-<pid>.folded`` holds that process's stacks.

Both are built from the host's py-spy output in ``hosts/<host>/session/``, which came
from the device and is read as untrusted (:func:`read_folded` caps and never raises).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.analysis.breakdown import profile_of
from orchestrator.analysis.stacks import Frame, StackProfile, ThreadPart, gc_paused, read_folded
from orchestrator.profilers import pyspy
from orchestrator.stages.rundir import RunDir, write_text

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
SPEEDSCOPE_FILE = "profile.speedscope.json"
FOLDED_FILE = "profile.folded"
PROCESS_FOLDED = "profile.pid-{pid}.folded"
PROCESS_FOLDED_GLOB = "profile.pid-*.folded"


def host_profile(run: RunDir, host: str) -> StackProfile | None:
    """The host's py-spy stacks as collected, or None when it brought none back."""
    path = run.session_dir(host) / pyspy.OUTPUT
    if path.is_symlink() or not path.is_file():
        return None
    return read_folded(path, max_bytes=pyspy.MAX_BYTES)


def frame_text(frame: Frame) -> str:
    """py-spy's own frame notation, which :func:`parse_frame` reads back to the same Frame."""
    if frame.file is None:
        return frame.function
    if frame.line is None:
        return f"{frame.function} ({frame.file})"
    return f"{frame.function} ({frame.file}:{frame.line})"


class _Texts(dict[Frame, str]):
    """Frame -> its text, made on first sight: a profile repeats a few thousand frames
    hundreds of thousands of times."""

    def __missing__(self, frame: Frame) -> str:
        text = self[frame] = frame_text(frame)
        return text


class _Index(dict[Frame, int]):
    """Frame -> its index in speedscope's shared frames, appended on first sight."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[dict[str, Any]] = []

    def __missing__(self, frame: Frame) -> int:
        at = self[frame] = len(self.frames)
        entry: dict[str, Any] = {"name": frame.function}
        # The schema types file and line as string and number: absent, not null.
        if frame.file is not None:
            entry["file"] = frame.file
        if frame.line is not None:
            entry["line"] = frame.line
        self.frames.append(entry)
        return at


Stack = tuple[Frame, ...]
Row = tuple[Stack, int, str]  # a stack, its count, its folded text


class _StackTexts:
    """Stack -> its folded text (frames joined by ``;``), remembered for the stacks met
    lately: the hosts of one fleet share most of their stacks, so most hosts' exports are
    made of texts already made for a peer. Holding the stack keeps its id its own."""

    # A fleet's common stacks, not every host's own ones: about 50 MB at 20,000 stacks of
    # 10 to 40 frames per host.
    REMEMBERED = 60_000

    def __init__(self) -> None:
        self._text_of = _Texts().__getitem__
        self._known: OrderedDict[int, tuple[Stack, str]] = OrderedDict()

    def __call__(self, stack: Stack) -> str:
        known = self._known.get(id(stack))
        if known is not None and known[0] is stack:
            self._known.move_to_end(id(stack))
            return known[1]
        text = ";".join(map(self._text_of, stack))
        self._known[id(stack)] = (stack, text)
        if len(self._known) > self.REMEMBERED:
            self._known.popitem(last=False)
        return text


def _ordered(profile: StackProfile, texts: _StackTexts | None = None) -> list[Row]:
    """The stacks with their texts, largest first, then by text.

    Deterministic output: the same run always exports the same bytes."""
    text_of = texts if texts is not None else _StackTexts()
    with gc_paused():
        rows = [(stack, count, text_of(stack)) for stack, count in profile.stacks.items()]
        rows.sort(key=lambda row: (-row[1], row[2]))
    return rows


def folded_text(profile: StackProfile, ordered: list[Row] | None = None) -> str:
    """Normalized folded stacks. Samples with no Python frame at all have no stack to
    write (py-spy writes them as a line with an empty stack, which most tools reject), so
    they are left out here; the speedscope export keeps them as empty samples."""
    rows = ordered if ordered is not None else _ordered(profile)
    return "".join(f"{text} {count}\n" for stack, count, text in rows if stack and count > 0)


def _sampled(rows: list[Row], name: str, position: Callable[[Frame], int]) -> dict[str, Any]:
    with gc_paused():
        samples = [list(map(position, stack)) for stack, count, _ in rows if count > 0]
    weights = [count for _, count, _ in rows if count > 0]
    return {
        "type": "sampled",
        "name": name,
        "unit": "none",
        "startValue": 0,
        "endValue": sum(weights),
        "samples": samples,
        "weights": weights,
    }


def speedscope(
    profile: StackProfile,
    name: str,
    ordered: list[Row] | None = None,
    processes: Sequence[tuple[str, list[Row]]] = (),
) -> dict[str, Any]:
    """The profile as a speedscope file: one sampled profile for the whole host, then one
    per process (``processes``: name and ordered rows); weights are sample counts (unit
    "none"), so the first profile's sum to ``profile.total_samples``."""
    rows = ordered if ordered is not None else _ordered(profile)
    index = _Index()
    position = index.__getitem__
    profiles = [_sampled(rows, name, position)]
    profiles.extend(_sampled(own, own_name, position) for own_name, own in processes)
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "name": name,
        "exporter": f"fleetprof@{__version__}",
        "activeProfileIndex": 0,
        "shared": {"frames": index.frames},
        "profiles": profiles,
    }


def process_profiles(profile: StackProfile) -> list[tuple[int, str, StackProfile]]:
    """Each process of the profile (``--subprocesses``): pid, command line, its stacks;
    none when there is only one (its profile is the host's)."""
    by_pid: dict[int, list[ThreadPart]] = {}
    for part in profile.parts:
        if part.pid is not None:
            by_pid.setdefault(part.pid, []).append(part)
    if len(by_pid) < 2:
        return []
    return [
        (pid, parts[0].command or "", profile_of(profile, parts))
        for pid, parts in sorted(by_pid.items())
    ]


def write_exports(
    run: RunDir, profiles: Mapping[str, StackProfile | None] | None = None
) -> list[Path]:
    """Write both exports for every host that brought py-spy stacks back; return the paths.

    ``profiles``: the stacks already parsed, by host (read from the run when absent).
    A host without stacks gets no files (and loses stale ones from an earlier build)."""
    with gc_paused():
        return _write_exports(run, profiles)


def _write_exports(run: RunDir, profiles: Mapping[str, StackProfile | None] | None) -> list[Path]:
    written: list[Path] = []
    texts = _StackTexts()  # shared by the hosts: a fleet runs the same code
    for host in run.hosts():
        host_dir = run.host_dir(host)
        profile = profiles.get(host) if profiles is not None else host_profile(run, host)
        targets = (host_dir / SPEEDSCOPE_FILE, host_dir / FOLDED_FILE)
        for stale in [*targets, *host_dir.glob(PROCESS_FOLDED_GLOB)]:
            if stale.is_file() and not stale.is_symlink():
                stale.unlink()
        if profile is None or profile.total_samples <= 0:
            continue
        name = f"{host} ({run.path.parent.name} {run.run_id})"
        ordered = _ordered(profile, texts)
        processes = [
            (pid, f"{pid}: {command}", _ordered(own, texts))
            for pid, command, own in process_profiles(profile)
        ]
        document = json.dumps(
            speedscope(profile, name, ordered, [(n, rows) for _, n, rows in processes]),
            separators=(",", ":"),
        )
        write_text(targets[0], document + "\n")
        write_text(targets[1], folded_text(profile, ordered))
        written.extend(targets)
        for pid, _, rows in processes:
            path = host_dir / PROCESS_FOLDED.format(pid=pid)
            write_text(path, folded_text(profile, rows))
            written.append(path)
        del ordered, document, processes
    return written
