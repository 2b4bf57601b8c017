"""open-files: the target's open descriptors over the window, lsof's view without lsof.

The device runner samples them itself (``builtin: "open-files"``, fleetprof_device/fds.py):
every interval it lists /proc/PID/fd of the target and of each descendant, reads each
link, and counts descriptors by kind, the most-opened paths, and the TCP/UDP sockets by
state from the target's /proc/PID/net tables; one JSON line per sample in
``open_files.jsonl``. The growth of the total is judged with memory's leak rule
(docs/metrics.md, "open-files"). Everything in the file is device output: untrusted.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from fleetprof_device.contract import (
    OPEN_FILES,
    OPEN_FILES_FILE,
    OPEN_FILES_KINDS,
    OPEN_FILES_MAX_PATH_CHARS,
    OPEN_FILES_PROTOCOLS,
)
from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import OpenFilesSpec
from orchestrator.models import HostFacts, ProfilerPlan
from orchestrator.profilers.base import ProfileResult, ToolChoice, begin_parse
from orchestrator.profilers.memory import MIN_SAMPLES, growth, leak_rule
from orchestrator.profilers.system import downsample, read_noted, sub
from orchestrator.values import number as finite

NAME = OPEN_FILES
TOOL = None
LAUNCHER = False
LAUNCH_ONLY = False
OUTPUT = OPEN_FILES_FILE
# About 1.5 kB a sample with 20 paths: about 12 hours at 1 s.
MAX_BYTES = 64 * 1024 * 1024
STATE_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,23}$")
MAX_LISTENING = 20  # listening sockets named in the report
SERIES_KINDS = ("file", "socket", "pipe", "anon_inode")
K = TypeVar("K")


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    """Planned wherever there is a target process (its /proc/PID/fd is readable by the
    user the runner runs as: the same user as the target, or root). A probe has none."""
    if campaign.target.mode == "probe":
        reason = "open-files follows a target process; a probe target has none"
        return ProfilerPlan.skipped(NAME, reason, [OUTPUT], MAX_BYTES)
    spec = campaign.profilers.open_files or OpenFilesSpec()
    sampler = ProfilerPlan.sampler(NAME, OUTPUT, MAX_BYTES, spec.interval_s)
    return replace(sampler, options={**sampler.options, "top_paths": spec.top_paths})


def _count(value: Any) -> float | None:
    number = finite(value)
    return number if number is not None and number >= 0 else None


def _path(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if len(value) > OPEN_FILES_MAX_PATH_CHARS:
        return "..." + value[len(value) - OPEN_FILES_MAX_PATH_CHARS + 3 :]
    return value


def _sockets(record: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(protocol family, state) -> sockets in one sample, tcp and tcp6 as one "tcp"."""
    found: dict[tuple[str, str], float] = {}
    for proto, states in sub(record, "sockets").items():
        if proto not in OPEN_FILES_PROTOCOLS or not isinstance(states, dict):
            continue
        family = proto.rstrip("6")
        for state, value in states.items():
            count = _count(value)
            if count is None or not isinstance(state, str) or not STATE_RE.match(state):
                continue
            found[(family, state)] = found.get((family, state), 0.0) + count
    return found


class _Window:
    """What the samples add up to: peaks, last values, paths and sockets seen."""

    def __init__(self) -> None:
        self.totals: list[tuple[float, float]] = []
        self.times: list[float] = []
        self.columns: dict[str, list[float | None]] = {k: [] for k in ("total", *SERIES_KINDS)}
        self.kinds: dict[str, list[float]] = {kind: [] for kind in OPEN_FILES_KINDS}
        self.paths: dict[str, list[float]] = {}  # path -> [peak, last]
        self.sockets: dict[tuple[str, str], list[float]] = {}  # -> [peak, last]
        self.other: list[float] = []
        self.procs: list[float] = []
        self.listening: list[str] = []
        self.cut: dict[str, int] = {}

    def add(self, record: dict[str, Any]) -> None:
        t = float(record["t"])
        total = _count(record.get("total"))
        kinds = sub(record, "kinds")
        self.times.append(t)
        self.columns["total"].append(total)
        for kind in SERIES_KINDS:
            self.columns[kind].append(_count(kinds.get(kind)))
        if total is None:
            return
        self.totals.append((t, total))
        for kind in OPEN_FILES_KINDS:
            count = _count(kinds.get(kind))
            if count is not None:
                self.kinds[kind].append(count)
        self._paths(record.get("paths"))
        _peak_last(self.sockets, _sockets(record))
        for field, into in (("sockets_other", self.other), ("procs", self.procs)):
            count = _count(record.get(field))
            if count is not None:
                into.append(count)
        listening = record.get("listening")
        for name in listening if isinstance(listening, list) else []:
            text = _path(name)
            if text is not None and text not in self.listening:
                self.listening.append(text)
        for cause in sub(record, "cut"):
            self.cut[cause[:40]] = self.cut.get(cause[:40], 0) + 1

    def _paths(self, rows: Any) -> None:
        seen: dict[str, float] = {}
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, list) and len(row) == 2:
                path, count = _path(row[0]), _count(row[1])
                if path is not None and count is not None:
                    seen[path] = seen.get(path, 0.0) + count
        _peak_last(self.paths, seen)


def _peak_last(window: dict[K, list[float]], sample: dict[K, float]) -> None:
    """Each name's [peak, last] over the samples so far, 0 in a sample that lacks it."""
    for key in set(window) | set(sample):
        peak_last = window.setdefault(key, [0.0, 0.0])
        peak_last[1] = sample.get(key, 0.0)
        peak_last[0] = max(peak_last[0], peak_last[1])


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """open_files.jsonl -> peaks by kind, the total's growth (least squares, per minute),
    the leak verdict, sockets by state, and the tables of paths and sockets."""
    result, path = begin_parse(session_dir, OUTPUT)
    if path is None:
        return result
    spec = campaign.profilers.open_files or OpenFilesSpec()
    notes = result.data_quality
    series = read_noted(path, MAX_BYTES, NAME, notes)
    window = _Window()
    for record in series.records:
        window.add(record)
    if not window.totals:
        notes.append("open-files: no sample of the target's descriptors")
        return result
    result.series = downsample("fds", window.times, window.columns)
    _cut_notes(window.cut, notes)
    _metrics(window, result.metrics)
    _tables(window, spec.top_paths, result.tables)
    _leak(window.totals, spec, result)
    return result


def _metrics(window: _Window, metrics: dict[str, float]) -> None:
    metrics["fds.samples"] = float(len(window.totals))
    metrics["fds.total_peak"] = max(v for _, v in window.totals)
    metrics["fds.total_last"] = window.totals[-1][1]
    for kind, values in window.kinds.items():
        if values:
            metrics[f"fds.{kind}_peak"] = max(values)
    if window.procs:
        metrics["fds.processes.max"] = max(window.procs)
    if window.other:
        metrics["fds.socket_other_peak"] = max(window.other)
    for (family, state), (peak, _) in sorted(window.sockets.items()):
        metrics[f"fds.{family}.{state.lower()}"] = peak


def _tables(window: _Window, top: int, tables: dict[str, list[dict[str, Any]]]) -> None:
    ranked = sorted(window.paths.items(), key=lambda item: (-item[1][0], -item[1][1], item[0]))
    tables["open_files.paths"] = [
        {"path": path, "peak": peak, "last": last} for path, (peak, last) in ranked[:top]
    ]
    tables["open_files.sockets"] = [
        {"protocol": family, "state": state, "peak": peak, "last": last}
        for (family, state), (peak, last) in sorted(window.sockets.items())
    ]
    tables["open_files.kinds"] = [
        {"kind": kind, "first": values[0], "last": values[-1], "peak": max(values)}
        for kind, values in window.kinds.items()
        if values
    ]
    if window.listening:
        tables["open_files.listening"] = [
            {"socket": name} for name in sorted(window.listening)[:MAX_LISTENING]
        ]


def _cut_notes(cut: dict[str, int], notes: list[str]) -> None:
    says = {
        "unread": "more descriptors than the runner reads per sample: their kinds and paths "
        "are not counted (the total is)",
        "listed": "a process held more descriptors than the runner lists: the total is a "
        "lower bound",
        "unreadable": "a process's /proc/PID/fd was not readable (another user's): its "
        "descriptors are not counted",
        "net": "a /proc/PID/net table was larger than the runner reads: some sockets' states "
        "are missing",
        "tree": "the target had more descendants than the runner follows: the rest are not counted",
    }
    for what, samples in sorted(cut.items()):
        text = says.get(what)
        if text is not None:
            notes.append(f"open-files: {text} ({samples} samples)")


def _leak(totals: list[tuple[float, float]], spec: OpenFilesSpec, result: ProfileResult) -> None:
    """memory's leak rule (memory.leak_rule) on the total of open descriptors."""
    notes, metrics = result.data_quality, result.metrics
    fit = growth(totals)
    if fit is None:
        notes.append("open-files: too few samples over time for a growth slope")
        return
    slope, r2 = fit
    metrics["fds.growth_per_min"] = round(slope, 3)
    metrics["fds.growth_r2"] = round(r2, 3)
    if len(totals) < MIN_SAMPLES:
        notes.append(f"open-files: {len(totals)} samples are too few to judge a leak")
        return
    fast, suspected = leak_rule(slope, r2, spec.leak_per_min)
    metrics["fds.leak"] = 1.0 if suspected else 0.0
    if suspected:
        notes.append(
            f"open-files: likely descriptor leak: open descriptors grew steadily at "
            f"{slope:.1f} per minute (r\u00b2 {r2:.2f}; threshold {spec.leak_per_min:g} per minute)"
        )
    elif fast:
        notes.append(
            f"open-files: open descriptors grew {slope:.1f} per minute but unsteadily "
            f"(r\u00b2 {r2:.2f}): not flagged as a leak"
        )
