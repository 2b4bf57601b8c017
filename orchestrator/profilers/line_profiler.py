"""line-profiler: time by line of the functions a campaign names, by line_profiler's
kernprof installed in the program's own environment (fleetprof pushes nothing).

A launch target whose command runs a Python interpreter runs as ``PY [its options] -m
kernprof -l -p FUNCTIONS -o WORKDIR/line_profiler.lprof REST`` (kernprof's auto-profile,
line_profiler 4.1 or newer). Whether the device's Python has line_profiler is asked on the
device before T0 (fleetprof_device/module_check.py): where not, ``skipped`` with the reason
and the program runs as written. At the deadline the program gets SIGINT first (kernprof
writes its stats on KeyboardInterrupt). The stats are a pickle: the same interpreter loads
them with line_profiler's own reader and writes ``line_profiler.json`` (a post step running
``fleetprof_device.lprof_json``); the controller never unpickles them, it reads that JSON.
The raw ``.lprof`` comes back too, for ``python -m line_profiler``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleetprof_device.lprof_json import MAX_LINE_CHARS, MAX_LINES, SCHEMA, post_argv
from orchestrator.campaign.model import Campaign
from orchestrator.models import WORKDIR_ARG, HostFacts, ProfilerPlan
from orchestrator.profilers import wrapped
from orchestrator.profilers.base import ProfileResult, ToolChoice
from orchestrator.values import number as finite
from orchestrator.values import visible

NAME = "line-profiler"
TOOL = None  # line_profiler from the program's own environment, never pushed
LAUNCHER = True  # it changes the command the runner starts
LAUNCH_ONLY = True  # it cannot attach
IN_TARGET = True
OUTPUT = "line_profiler.json"
# `fleetprof inspect` without a campaign: a stand-in for `functions` (required, no default),
# which parse() never reads (the JSON names the functions that ran).
INSPECT_SETTINGS = {"functions": ["inspect"]}
STATS = "line_profiler.lprof"  # kernprof's pickle: never read by the controller
MAX_BYTES = 64 * 1024 * 1024
JSON_MAX_BYTES = 4 * 1024 * 1024
INTERRUPT_S = 3.0
MAX_FUNCTIONS = 100
TABLE = "line_profiler.lines"
FUNCTIONS_TABLE = "line_profiler.functions"

# kernprof's long options (line_profiler 5.1): a script argument that abbreviates two or
# more of them (--out: --outfile, --output-interval) makes kernprof stop with "ambiguous
# option" before the program starts; after -m MODULE it leaves the arguments alone.
KERNPROF_OPTIONS = (
    "--help", "--version", "--config", "--no-config", "--line-by-line", "--builtin",
    "--setup", "--prof-mod", "--preimports", "--prof-imports", "--outfile", "--verbose",
    "--view", "--quiet", "--rich", "--unit", "--skip-zero", "--summarize", "--output-interval",
)  # fmt: skip
NO_AMBIGUOUS_ARGUMENT = wrapped.AMBIGUOUS.replace("{tool}", "kernprof")
NO_ATTACH = (
    "line-profiler cannot attach to a running process: it profiles only a command "
    "fleetprof launches (use `target: launch`)"
)
REASONS = wrapped.Reasons.of("line-profiler", NO_ATTACH)
NOT_PYTHON = REASONS.not_python
NO_SCRIPT = REASONS.no_script
NOT_ONE_LAUNCHER = REASONS.not_one_launcher
ONE_TRACER = REASONS.one_tracer
NOT_ATTACHABLE = REASONS.not_attachable

ARGUMENTS = (KERNPROF_OPTIONS, NO_AMBIGUOUS_ARGUMENT)


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    spec = campaign.profilers.line_profiler
    outputs = [OUTPUT, STATS]
    interpreter = wrapped.interpreter_or_skipped(
        campaign,
        facts,
        NAME,
        REASONS,
        ARGUMENTS,
        outputs,
        MAX_BYTES,
    )
    if isinstance(interpreter, ProfilerPlan):
        return interpreter
    assert spec is not None  # planned only when the campaign lists it (with its functions)
    functions = ",".join(spec.functions)
    tool_argv = ["-m", "kernprof", "-l", "-p", functions, "-o", f"{WORKDIR_ARG}/{STATS}"]
    post = [wrapped.in_program_env(campaign, post_argv(interpreter[0], STATS, OUTPUT, spec.top))]
    return wrapped.wrap_plan(
        NAME, interpreter, tool_argv, "line_profiler", outputs, MAX_BYTES, INTERRUPT_S, post
    )


# -- parse: untrusted JSON -> one row per line ------------------------------------------


def _count(value: Any) -> int | None:
    number = finite(value)
    return int(number) if number is not None and 0 <= number < 1 << 53 else None


def _text(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else "?"
    return visible(text if len(text) <= limit else "..." + text[-limit:])


def _line(raw: Any, function: dict[str, Any]) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    line, hits, seconds = (
        _count(raw.get("line")),
        _count(raw.get("hits")),
        finite(raw.get("time_s")),
    )
    if line is None or hits is None or seconds is None or seconds < 0:
        return None
    text = raw.get("text")
    pct, per_hit = finite(raw.get("pct")), finite(raw.get("per_hit_us"))
    return {
        "function": function["function"],
        "file": function["file"],
        "function_line": function["line"],
        "line": line,
        "hits": hits,
        "time_s": round(seconds, 9),
        "per_hit_us": round(per_hit, 3) if per_hit is not None and per_hit >= 0 else None,
        "pct": round(pct, 2) if pct is not None and 0 <= pct <= 100 else None,
        "text": visible(text[:MAX_LINE_CHARS]) if isinstance(text, str) else None,
    }


def _function(raw: Any) -> tuple[dict[str, Any], list[Any]] | None:
    if not isinstance(raw, dict):
        return None
    seconds = finite(raw.get("time_s"))
    lines = raw.get("lines")
    if seconds is None or seconds < 0 or not isinstance(lines, list):
        return None
    function = {
        "function": _text(raw.get("function")),
        "file": _text(raw.get("file")),
        "line": _count(raw.get("line")) or 0,
        "time_s": round(seconds, 9),
        "lines": min(len(lines), MAX_LINES),
    }
    return function, lines[:MAX_LINES]


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """line_profiler.json (written on the device) -> the tables ``line_profiler.functions``
    and ``line_profiler.lines`` (docs/report.md, "Line profile"). Never raises."""
    result, document = wrapped.read_document(
        session_dir, entry, OUTPUT, JSON_MAX_BYTES, SCHEMA, NAME, "stats"
    )
    if document is None:
        return result
    notes = result.data_quality
    raw = document.get("functions")
    items = raw[:MAX_FUNCTIONS] if isinstance(raw, list) else []
    functions, rows, bad = [], [], 0
    for item in items:
        found = _function(item)
        if found is None:
            bad += 1
            continue
        function, lines = found
        kept = [row for row in (_line(line, function) for line in lines) if row is not None]
        bad += len(lines) - len(kept)
        functions.append(function)
        rows.extend(kept)
    if bad:
        notes.append(f"line-profiler: {bad} malformed functions or lines in {OUTPUT}")
    if not functions:
        notes.append(
            "line-profiler: no profiled function ran (check `functions`: a name kernprof "
            "cannot find, or code that was not reached, is silently not profiled)"
        )
    result.tables[FUNCTIONS_TABLE] = functions
    result.tables[TABLE] = rows
    return result
