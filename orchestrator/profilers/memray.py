"""memray: where a launched Python program allocates memory, at the malloc level, by memray
installed in the program's own environment (fleetprof pushes nothing).

A launch target whose command runs a Python interpreter runs as ``PY [its options] -m
memray run -q -o WORKDIR/memray.bin [--native] [--follow-fork] [--trace-python-allocators]
[--aggregate] REST``. The controller cannot know whether the device's Python has memray:
the runner asks it (``PY -c "import memray"``) before T0, and where it cannot import it
memray is ``skipped`` with the reason and the program starts as the campaign wrote it
(fleetprof_device/module_check.py). At the deadline the program gets SIGINT first (memray
closes its capture on KeyboardInterrupt), SIGTERM ``INTERRUPT_S`` later. The capture is
converted to ``memray.json`` on the device by the same interpreter, with memray's own
reader (a post step running ``fleetprof_device.memray_json``); the controller reads that
JSON only. The raw ``memray.bin`` comes back too, for ``memray flamegraph`` and friends.

``memray attach`` (attach targets) needs gdb or lldb on the device and is not supported:
attach targets are ``skipped`` at plan time. One tracer per process: memray does not run
with another profiler inside the program (cprofile, tracemalloc) or one that starts the
command (nsys, ncu; py-spy where the host does not let it attach).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleetprof_device.memray_json import MAX_STACK, SCHEMA, post_argv
from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import MemraySpec
from orchestrator.models import WORKDIR_ARG, HostFacts, ProfilerPlan
from orchestrator.profilers import wrapped
from orchestrator.profilers.base import ProfileResult, ToolChoice
from orchestrator.values import dicts, visible
from orchestrator.values import number as finite

NAME = "memray"
TOOL = None  # memray from the program's own environment, never pushed
LAUNCHER = True  # it changes the command the runner starts
LAUNCH_ONLY = True  # it cannot attach (memray attach is not supported)
IN_TARGET = True
OUTPUT = "memray.json"
CAPTURE = "memray.bin"  # memray's own capture, kept for `memray flamegraph`
MAX_BYTES = 256 * 1024 * 1024  # per output, on the device (the capture grows with the run)
JSON_MAX_BYTES = 4 * 1024 * 1024  # what the controller reads of memray.json
INTERRUPT_S = 3.0  # SIGINT -> SIGTERM: time for memray to close its capture
MAX_ROWS = 100
MIB = 1024.0 * 1024.0
TABLES = {
    "peak_sites": "memray.peak",
    "leaked_sites": "memray.leaked",
    "top_by_size": "memray.by_size",
    "top_by_count": "memray.by_count",
}

NO_ATTACH = (
    "memray attach needs gdb or lldb on the device and is not supported by fleetprof yet: "
    "memray profiles only a command fleetprof launches (use `target: launch`)"
)
REASONS = wrapped.Reasons.of("memray", NO_ATTACH)
# memray run's long options (memray 1.20): a script argument abbreviating two of them
# (--n: --native, --no-compress) makes memray stop before the program starts.
MEMRAY_OPTIONS = (
    "--aggregate", "--buffered-file-io", "--compress-on-exit", "--follow-fork", "--force",
    "--help", "--live", "--live-port", "--live-remote", "--native", "--no-compress",
    "--output", "--quiet", "--trace-python-allocators",
)  # fmt: skip
NO_AMBIGUOUS_ARGUMENT = wrapped.AMBIGUOUS.replace("{tool}", "memray")
NOT_PYTHON = REASONS.not_python
NO_SCRIPT = REASONS.no_script
NOT_ONE_LAUNCHER = REASONS.not_one_launcher
ONE_TRACER = REASONS.one_tracer
NOT_ATTACHABLE = REASONS.not_attachable

ARGUMENTS = (MEMRAY_OPTIONS, NO_AMBIGUOUS_ARGUMENT)


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    spec = campaign.profilers.memray or MemraySpec()
    outputs = [OUTPUT, CAPTURE]
    interpreter = wrapped.interpreter_or_skipped(
        campaign, facts, NAME, REASONS, ARGUMENTS, outputs, MAX_BYTES
    )
    if isinstance(interpreter, ProfilerPlan):
        return interpreter
    flags = [
        flag
        for flag, wanted in (
            ("--native", spec.native),
            ("--follow-fork", spec.follow_fork),
            ("--trace-python-allocators", spec.trace_python_allocators),
            ("--aggregate", spec.aggregate),
        )
        if wanted
    ]
    tool_argv = ["-m", "memray", "run", "-q", "-o", f"{WORKDIR_ARG}/{CAPTURE}", *flags]
    post = [wrapped.in_program_env(campaign, post_argv(interpreter[0], CAPTURE, OUTPUT, spec.top))]
    return wrapped.wrap_plan(
        NAME, interpreter, tool_argv, "memray", outputs, MAX_BYTES, INTERRUPT_S, post
    )


# -- parse: untrusted JSON -> tables and metrics ---------------------------------------


def _count(value: Any) -> int | None:
    number = finite(value)
    return int(number) if number is not None and number >= 0 else None


def _text(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else "?"
    return visible(text if len(text) <= limit else "..." + text[-limit:])


def _site(row: Any) -> dict[str, Any] | None:
    """One site of memray.json, checked: function, file, line, and its size or count."""
    if not isinstance(row, dict):
        return None
    line = _count(row.get("line"))
    site: dict[str, Any] = {
        "function": _text(row.get("function")),
        "file": _text(row.get("file")),
        "line": line if line and line < 1 << 31 else None,
    }
    for key in ("size", "count"):
        value = _count(row.get(key))
        if value is not None:
            site[key] = value
    if "size" not in site and "count" not in site:
        return None
    if "size" in site:
        site["size_mb"] = round(site["size"] / MIB, 3)
    stack = row.get("stack")
    if isinstance(stack, list):
        site["traceback"] = [_text(frame) for frame in stack[:MAX_STACK] if isinstance(frame, str)]
    return site


def _table(document: dict[str, Any], key: str, result: ProfileResult) -> list[dict[str, Any]]:
    raw = document.get(key)
    rows = raw if isinstance(raw, list) else []
    sites = [site for site in (_site(row) for row in rows[:MAX_ROWS]) if site is not None]
    if len(sites) < min(len(rows), MAX_ROWS):
        result.data_quality.append(
            f"memray: {min(len(rows), MAX_ROWS) - len(sites)} malformed rows in {key}"
        )
    return sites


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """memray.json (written on the device) -> the tables ``memray.peak``, ``memray.leaked``,
    ``memray.by_size``, ``memray.by_count`` and the metrics ``memray.*`` (docs/metrics.md).
    Never raises."""
    result, document = wrapped.read_document(
        session_dir, entry, OUTPUT, JSON_MAX_BYTES, SCHEMA, NAME, "capture"
    )
    if document is None:
        return result
    notes = result.data_quality
    for key, table in TABLES.items():
        result.tables[table] = _table(document, key, result)
    _metrics(document, result)
    said = document.get("errors")
    for line in said[:10] if isinstance(said, list) else []:
        notes.append(f"memray: {_text(str(line))}")
    return result


def _metrics(document: dict[str, Any], result: ProfileResult) -> None:
    metrics = result.metrics
    meta = next(iter(dicts([document.get("metadata")])), {})
    peak = _count(meta.get("peak_memory"))
    if peak is not None:
        metrics["memray.peak_mb"] = round(peak / MIB, 3)
    total, allocations = (
        _count(document.get("total_bytes")),
        _count(document.get("total_allocations")),
    )
    if total is not None:
        metrics["memray.total_allocated_mb"] = round(total / MIB, 3)
    if allocations is not None:
        metrics["memray.allocations"] = float(allocations)
    leaked = _count(document.get("leaked_bytes"))
    if leaked is not None:
        metrics["memray.leaked_mb"] = round(leaked / MIB, 3)
    leaks = _count(document.get("leaked_allocations"))
    if leaks is not None:
        metrics["memray.leaked_allocations"] = float(leaks)
