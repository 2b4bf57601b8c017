"""Hot lines: where inside its hottest functions a profile spends its self time (pure).

py-spy's frames carry the line each sample was on, and a profile's stacks keep them
(:class:`~orchestrator.analysis.stacks.StackProfile`); everything else merges a function's
lines. Here the leaf frames are counted by line: for the ``HOT_FUNCTIONS`` functions with
the most self samples, the ``HOT_LINES`` lines of each with the most, as a share of the
host's (or group's) samples and of the function's self samples. The device read the same
lines' source text (fleetprof_device/source_lines.py); :func:`source_texts` checks what
came back, and the text goes with each line where it is known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetprof_device.contract import (
    HOT_FUNCTIONS,
    HOT_LINES,
    SOURCE_LINE_MAX_CHARS,
    SOURCE_LINES_SCHEMA,
)
from orchestrator.analysis.stacks import Frame, StackProfile
from orchestrator.values import visible

FunctionKey = tuple[str, str | None]
LineCounts = dict[FunctionKey, dict[int, int]]
# file as py-spy wrote it -> line -> text
Sources = Mapping[str, Mapping[int, str]]

MAX_SOURCE_FILES = 1000
MAX_FILE_NAME_CHARS = 1000
MAX_LINE_NUMBER = 999_999_999


@dataclass(frozen=True)
class HotLine:
    line: int
    self_samples: int
    self_pct: float  # of the host's (group's) samples
    function_pct: float  # of the function's self samples
    text: str | None  # the source line, where the device read it

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "self_samples": self.self_samples,
            "self_pct": self.self_pct,
            "function_pct": self.function_pct,
            "text": self.text,
        }


@dataclass(frozen=True)
class HotFunction:
    function: str
    file: str | None
    self_samples: int
    self_pct: float
    lines: tuple[HotLine, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "file": self.file,
            "self_samples": self.self_samples,
            "self_pct": self.self_pct,
            "lines": [line.to_dict() for line in self.lines],
        }


def line_counts(profile: StackProfile) -> LineCounts:
    """Self samples by function and line (the leaf frame's); frames without a line (native
    code) count under their function with line 0, which no hot line lists."""
    leaves: dict[Frame, int] = {}
    get = leaves.get
    for frames, count in profile.stacks.items():
        if frames:
            leaf = frames[-1]
            leaves[leaf] = get(leaf, 0) + count
    counts: LineCounts = {}
    for frame, count in leaves.items():
        by_line = counts.setdefault((frame.function, frame.file), {})
        line = frame.line or 0
        by_line[line] = by_line.get(line, 0) + count
    return counts


def add_counts(into: LineCounts, more: LineCounts) -> LineCounts:
    """``more`` added to ``into`` (a group's hosts summed); returns ``into``."""
    for key, by_line in more.items():
        target = into.setdefault(key, {})
        for line, count in by_line.items():
            target[line] = target.get(line, 0) + count
    return into


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole > 0 else 0.0


def hot_lines(
    counts: LineCounts,
    total_samples: int,
    sources: Sources | None = None,
    functions: int = HOT_FUNCTIONS,
    lines: int = HOT_LINES,
) -> list[HotFunction]:
    """The ``functions`` functions with the most self samples on a line, each with its
    ``lines`` hottest lines, busiest first (ties by name, file and line: the device's
    order, so it read the text of these very lines). ``total_samples``: the host's or
    group's, the base of ``self_pct``."""
    ranked = sorted(
        (
            (sum(by_line.values()), key, by_line)
            for key, by_line in counts.items()
            if any(line > 0 for line in by_line)
        ),
        key=lambda item: (-item[0], item[1][0], item[1][1] or ""),
    )
    texts = sources or {}
    out = []
    for own, (function, file), by_line in ranked[: max(functions, 0)]:
        known = texts.get(file or "", {})
        hottest = sorted((n for n in by_line if n > 0), key=lambda n: (-by_line[n], n))
        out.append(
            HotFunction(
                function=function,
                file=file,
                self_samples=own,
                self_pct=_pct(own, total_samples),
                lines=tuple(
                    HotLine(
                        line=n,
                        self_samples=by_line[n],
                        self_pct=_pct(by_line[n], total_samples),
                        function_pct=_pct(by_line[n], own),
                        text=known.get(n),
                    )
                    for n in hottest[: max(lines, 0)]
                ),
            )
        )
    return out


def group_hot_lines(
    members: Iterable[tuple[LineCounts, int]], texts: Sources | None = None
) -> list[dict[str, Any]]:
    """report.json ``groups[].hot_lines``: the group's hosts' line counts summed.
    ``members``: each host's line counts (as parse counted them) and total samples."""
    counts: LineCounts = {}
    total = 0
    for host_counts, samples in members:
        add_counts(counts, host_counts)
        total += samples
    return [f.to_dict() for f in hot_lines(counts, total, texts)] if total > 0 else []


def with_group_hot_lines(
    groups: list[dict[str, Any]],
    host_hot_lines: Mapping[str, Iterable[Mapping[str, Any]]],
    profiles: Mapping[str, StackProfile],
    host_counts: Mapping[str, LineCounts] | None = None,
) -> list[dict[str, Any]]:
    """report.json ``groups``, each with its ``hot_lines``: its hosts' (those in
    ``profiles``) merged, the text of a line taken from the first host that has it.
    ``host_counts``: each host's line counts, made once when its profile was parsed
    (``ProfileResult.line_counts``); a host without them is counted here."""
    counted = host_counts or {}
    for group in groups:
        names = [str(name) for name in group.get("hosts") or ()]
        texts: dict[str, dict[int, str]] = {}
        for name in names:
            for file, lines in texts_of(host_hot_lines.get(name, ())).items():
                known = texts.setdefault(file, {})
                for number, text in lines.items():
                    known.setdefault(number, text)
        members = [
            (counted[name] if name in counted else line_counts(profile), profile.total_samples)
            for name, profile in ((name, profiles.get(name)) for name in names)
            if profile is not None
        ]
        group["hot_lines"] = group_hot_lines(members, texts)
    return groups


def texts_of(hot: Iterable[Mapping[str, Any]]) -> dict[str, dict[int, str]]:
    """The source texts a report's ``hot_lines`` entries hold, by file and line: a
    group's lines take their text from its hosts'."""
    found: dict[str, dict[int, str]] = {}
    for function in hot:
        file = function.get("file")
        for line in function.get("lines") or ():
            text, number = line.get("text"), line.get("line")
            if isinstance(file, str) and isinstance(text, str) and isinstance(number, int):
                found.setdefault(file, {}).setdefault(number, text)
    return found


def source_texts(document: Any) -> tuple[dict[str, dict[int, str]], int]:
    """The ``{file: {line: text}}`` of a device's ``pyspy.lines.json`` (already parsed
    JSON, untrusted), and how many entries were dropped as malformed. Names and text keep
    no control character (made visible), text is cut at the device's own cap."""
    if not isinstance(document, Mapping) or document.get("schema") != SOURCE_LINES_SCHEMA:
        return {}, 1
    files = document.get("files")
    if not isinstance(files, Mapping):
        return {}, 1
    dropped = 0
    found: dict[str, dict[int, str]] = {}
    for name, entry in list(files.items())[:MAX_SOURCE_FILES]:
        lines = entry.get("lines") if isinstance(entry, Mapping) else None
        if not isinstance(name, str) or len(name) > MAX_FILE_NAME_CHARS:
            dropped += 1
            continue
        if not isinstance(lines, Mapping):
            dropped += 1
            continue
        kept: dict[int, str] = {}
        for number, text in list(lines.items())[: HOT_FUNCTIONS * HOT_LINES]:
            line = _line_number(number)
            if line is None or not isinstance(text, str):
                dropped += 1
                continue
            # One line of a table: tabs and newlines become spaces.
            kept[line] = visible(text[:SOURCE_LINE_MAX_CHARS].replace("\t", " ").replace("\n", " "))
        if kept:
            found[visible(name)] = kept
    dropped += max(0, len(files) - MAX_SOURCE_FILES)
    return found, dropped


def _line_number(value: Any) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        number = int(value)
        return number if 0 < number <= MAX_LINE_NUMBER else None
    return None
