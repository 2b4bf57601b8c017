"""tracemalloc: where a launched Python program allocates memory, from the standard
library's tracer inside it; nothing is installed on the device.

The runner starts the program with PYTHONTRACEMALLOC and a startup hook on its path
(``builtin: "tracemalloc"``; fleetprof_device/inprogram.py and tracemalloc_hook.py); the
hook writes a JSON summary every interval. The parser reads that JSON only (the
controller never unpickles device data): the top allocation sites by size and by count,
the growth by site between the first and the last snapshot (where a leak is), and the
peak traced memory. docs/report.md, "Allocations".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fleetprof_device.contract import (
    TRACEMALLOC,
    TRACEMALLOC_FILE,
    TRACEMALLOC_MAX_BYTES,
    TRACEMALLOC_MAX_ERRORS,
    TRACEMALLOC_MAX_FRAMES,
    TRACEMALLOC_MAX_PATH_CHARS,
    TRACEMALLOC_MAX_TOP,
    TRACEMALLOC_SCHEMA,
)
from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import TracemallocSpec
from orchestrator.models import HostFacts, ProfilerPlan
from orchestrator.profilers.base import ProfileResult, ToolChoice, begin_parse_text, is_python
from orchestrator.values import dicts, load_json, visible
from orchestrator.values import number as finite

NAME = TRACEMALLOC
TOOL = None
LAUNCHER = False
# It runs inside a program the runner itself starts (so it must not make a profiler the
# program's launcher: py-spy attaches to it); plan() skips it for every other target.
LAUNCH_ONLY = False
OUTPUT = TRACEMALLOC_FILE
MAX_BYTES = TRACEMALLOC_MAX_BYTES
MIB = 1024.0 * 1024.0

NOT_LAUNCHED = (
    "tracemalloc runs inside the program from its start: it profiles only a command "
    "fleetprof launches (use `target: launch`)"
)
NOT_PYTHON = (
    "tracemalloc traces a Python program: the command does not run a Python interpreter "
    "(its first word is {}; start it as `python3 SCRIPT` or `python3 -m MODULE`)"
)
HOOK_IGNORED = (
    "the command runs Python with {}, which ignores PYTHONPATH or sitecustomize: "
    "the tracemalloc startup hook cannot run in it"
)
OTHER_LAUNCHER = (
    "{} starts the command, so the program would not get the tracemalloc startup "
    "hook (and one tracer per process): profile allocations in a campaign of its own"
)
PYSPY_LAUNCHES = (
    "py-spy must start the command on this host (it may not attach here), so the program "
    "would not get the tracemalloc startup hook: profile allocations in a campaign of its "
    "own, or allow attaching (kernel.yama.ptrace_scope)"
)


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def python_argv(command: list[str]) -> tuple[str | None, list[str]]:
    """The interpreter a command runs and its arguments (``env python3 ...`` included), or
    (None, []) when its first word is not a Python interpreter."""
    words = list(command)
    if words and os.path.basename(words[0]) == "env":
        words = words[1:]
        while words and ("=" in words[0] or words[0].startswith("-")):
            words = words[1:]
    if not words or not is_python(words[0]):
        return None, []
    return words[0], words[1:]


def ignoring_flag(arguments: list[str]) -> str | None:
    """The interpreter option (-I, -E, -S) that would keep the hook out, if any, among
    the options before the script, ``-m`` or ``-c``."""
    skip_next = False
    for word in arguments:
        if skip_next:
            skip_next = False
            continue
        if word == "--" or not word.startswith("-") or word == "-":
            return None
        for index, letter in enumerate(word[1:]):
            if letter in "IES":
                return "-" + letter
            if letter in "XWmc":
                if letter in "mc":
                    return None
                skip_next = index == len(word) - 2  # "-X dev": its value is the next word
                break
    return None


def skip_reason(campaign: Campaign, facts: HostFacts) -> str | None:
    """Why this host cannot run tracemalloc for this campaign, decided before anything runs."""
    # Imported here: the registry imports every profiler module.
    from orchestrator.profilers import inside_target, is_launcher, launch_only

    launch = campaign.target.launch
    if launch is None:
        return NOT_LAUNCHED
    program, arguments = python_argv(list(launch.command))
    if program is None:
        return NOT_PYTHON.format(repr(launch.command[0][:200]))
    flag = ignoring_flag(arguments)
    if flag is not None:
        return HOOK_IGNORED.format(flag)
    for other in campaign.profilers.enabled:
        # cProfile changes the command, but the runner still starts the program, hook and
        # all: both run inside it.
        if other == NAME or inside_target(other):
            continue
        if launch_only(other):
            return OTHER_LAUNCHER.format(other)
        if is_launcher(other) and not facts.can_attach:
            return PYSPY_LAUNCHES
    return None


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    reason = skip_reason(campaign, facts)
    if reason is not None:
        return ProfilerPlan.skipped(NAME, reason, [OUTPUT], MAX_BYTES)
    spec = campaign.profilers.tracemalloc or TracemallocSpec()
    return ProfilerPlan(
        NAME,
        "planned",
        None,
        [],
        [],
        [OUTPUT],
        MAX_BYTES,
        builtin=NAME,
        options={"interval_s": spec.interval_s, "frames": spec.frames, "top": spec.top},
    )


# -- parse: untrusted JSON -> tables and metrics ---------------------------------------


def _count(value: Any) -> int | None:
    number = finite(value)
    return int(number) if number is not None and number >= 0 else None


def _where(value: Any) -> str:
    text = value if isinstance(value, str) else "?"
    return visible(text[-TRACEMALLOC_MAX_PATH_CHARS:])


def _line(value: Any) -> int | None:
    number = finite(value)
    return int(number) if number is not None and 0 < number < 1 << 31 else None


def _site(row: Any, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """One row of the hook's tables, checked: file, line and the counts ``keys``."""
    if not isinstance(row, dict):
        return None
    site: dict[str, Any] = {"file": _where(row.get("file")), "line": _line(row.get("line"))}
    for key in keys:
        value = finite(row.get(key))
        if value is None:
            return None
        site[key] = int(value)
    if "size" in site:
        site["size_mb"] = round(site["size"] / MIB, 3)
    traceback = row.get("traceback")
    if isinstance(traceback, list):
        site["traceback"] = [
            f"{_where(frame.get('file'))}:{_line(frame.get('line')) or '?'}"
            for frame in dicts(traceback[:TRACEMALLOC_MAX_FRAMES])
        ]
    return site


def _table(summary: dict[str, Any], name: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = summary.get(name)
    if not isinstance(rows, list):
        return []
    sites = (_site(row, keys) for row in rows[:TRACEMALLOC_MAX_TOP])
    return [site for site in sites if site is not None]


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """tracemalloc.json -> tables ``tracemalloc.by_size``, ``tracemalloc.by_count``,
    ``tracemalloc.growth`` and the metrics ``tracemalloc.*`` (docs/metrics.md)."""
    result, text, cut = begin_parse_text(session_dir, OUTPUT, MAX_BYTES, f"tracemalloc: {OUTPUT}")
    notes = result.data_quality
    if text is None:
        notes.append(
            f"tracemalloc: no {OUTPUT}: the program wrote no snapshot (it ended or was "
            "killed before its first, or its Python did not run the startup hook)"
        )
        return result
    if cut:
        notes.append(f"tracemalloc: {OUTPUT} is larger than its cap ({MAX_BYTES} bytes): not read")
        return result
    try:
        summary = load_json(text)
    except ValueError as error:
        notes.append(f"tracemalloc: {OUTPUT} is not valid JSON ({str(error)[:200]}): not read")
        return result
    if not isinstance(summary, dict) or summary.get("schema") != TRACEMALLOC_SCHEMA:
        notes.append(f"tracemalloc: {OUTPUT} is not a {TRACEMALLOC_SCHEMA} summary: not read")
        return result
    _read_summary(summary, result)
    _last_snapshot(summary, finite(entry.get("stopped_at_device")), result)
    return result


def _read_summary(summary: dict[str, Any], result: ProfileResult) -> None:
    notes, metrics = result.data_quality, result.metrics
    result.tables["tracemalloc.by_size"] = _table(summary, "top_by_size", ("size", "count"))
    result.tables["tracemalloc.by_count"] = _table(summary, "top_by_count", ("size", "count"))
    growth = _table(summary, "growth", ("size_diff", "count_diff", "size", "count"))
    snapshots = _count(summary.get("snapshots")) or 0
    first, last = finite(summary.get("first_at")), finite(summary.get("last_at"))
    span_min = (last - first) / 60.0 if first is not None and last is not None else 0.0
    for row in growth:
        row["growth_mb"] = round(row["size_diff"] / MIB, 3)
        if span_min > 0:
            row["mb_per_min"] = round(row["size_diff"] / MIB / span_min, 3)
    result.tables["tracemalloc.growth"] = growth
    metrics["tracemalloc.snapshots"] = float(snapshots)
    peak = _count(summary.get("traced_peak_bytes"))
    current = _count(summary.get("traced_current_bytes"))
    if peak is not None:
        metrics["tracemalloc.peak_mb"] = round(peak / MIB, 3)
    if current is not None:
        metrics["tracemalloc.current_mb"] = round(current / MIB, 3)
    own = _count(summary.get("tracemalloc_bytes"))
    if own is not None:
        metrics["tracemalloc.tracer_mb"] = round(own / MIB, 3)
    busy, began = finite(summary.get("snapshot_seconds")), finite(summary.get("started_at"))
    if busy is not None and busy >= 0 and began is not None and last is not None and last > began:
        metrics["tracemalloc.snapshot_pct"] = round(min(100.0, 100.0 * busy / (last - began)), 2)
    start = _count(summary.get("first_traced_bytes"))
    if snapshots >= 2 and span_min > 0 and start is not None and current is not None:
        grown = (current - start) / MIB
        metrics["tracemalloc.growth_mb"] = round(grown, 3)
        metrics["tracemalloc.growth_mb_per_min"] = round(grown / span_min, 3)
    else:
        notes.append(
            f"tracemalloc: {snapshots} snapshot(s) over {span_min * 60:.1f} s: "
            "no growth between snapshots to measure"
        )
    if summary.get("cut") is True:
        notes.append(
            f"tracemalloc: the summary reached its cap ({MAX_BYTES} bytes) on the device: "
            "tracebacks or rows were left out"
        )
    errors = summary.get("errors")
    for error in errors[:TRACEMALLOC_MAX_ERRORS] if isinstance(errors, list) else []:
        notes.append(f"tracemalloc: the hook said: {visible(str(error)[:300])}")


def _last_snapshot(summary: dict[str, Any], stopped: float | None, result: ProfileResult) -> None:
    """A note when the last snapshot came well before the runner stopped watching (the
    program hung, or its snapshots fell behind): the summary misses its end."""
    last, interval = finite(summary.get("last_at")), finite(summary.get("interval_s"))
    if summary.get("final") is True or last is None or stopped is None or not interval:
        return
    if stopped - last > 1.5 * interval + 1.0:
        result.data_quality.append(
            f"tracemalloc: the last snapshot was taken {stopped - last:.1f} s before the "
            "window ended (the program was killed, or its snapshots fell behind): the "
            "summary misses its end"
        )
