"""cprofile: exact call counts and times of every Python function, from the standard library.

A launch target whose command runs a Python interpreter (``python3 app.py``,
``/usr/bin/python3.11 -u -m pkg.main``) runs as ``PY [its options] -m cProfile -o
WORKDIR/cprofile.prof REST``: cProfile lives inside the target, so nothing is pushed and no
process of its own runs (``in_target``). At the deadline the runner sends the program
SIGINT first (cProfile writes its profile on KeyboardInterrupt, not on SIGTERM), and
SIGTERM only ``INTERRUPT_S`` later. The profile (marshal, version-specific) is converted
to ``cprofile.json`` on the device by the same interpreter (a post step running
``fleetprof_device.pstats_json``); the controller reads the JSON only. The raw ``.prof``
comes back too, for snakeviz or gprof2dot.

One tracer per process: cProfile and a profiler that starts the command itself (nsys,
ncu; py-spy where the host does not let it attach) cannot both run; py-spy attaching to the
program from outside can.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fleetprof_device.pstats_json import SCHEMA, post_argv
from orchestrator.analysis.cprofile_groups import call_times
from orchestrator.analysis.fleet import CPROFILE_EDGES, CPROFILE_TABLE
from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import CprofileSpec
from orchestrator.models import WORKDIR_ARG, HostFacts, ProfilerPlan
from orchestrator.profilers.base import (
    ProfileResult,
    ToolChoice,
    begin_parse_text,
    is_python,
    needs_launch,
)
from orchestrator.values import load_json, visible
from orchestrator.values import number as _number

NAME = "cprofile"
TOOL = None  # the standard library's cProfile, in the target's own Python
LAUNCHER = True  # it changes the command the runner starts
LAUNCH_ONLY = True  # it cannot attach to a running process
IN_TARGET = True  # inside the program the runner starts: tracemalloc's hook runs there too
OUTPUT = "cprofile.json"
PROFILE = "cprofile.prof"  # the raw profile (marshal), kept for snakeviz / gprof2dot
MAX_BYTES = 64 * 1024 * 1024  # per output, on the device
JSON_MAX_BYTES = 16 * 1024 * 1024  # what the controller reads of cprofile.json
INTERRUPT_S = 2.0  # SIGINT -> SIGTERM: time to write the profile
MAX_ROWS = 500  # functions and edges read per host, whatever the JSON holds

# Interpreter options that take a value (python -W error -X dev app.py).
_VALUE_OPTIONS = ("-W", "-X", "--check-hash-based-pycs")
_NO_SCRIPT_OPTIONS = ("-c", "-", "-i")

NOT_LAUNCH = needs_launch("cProfile")
NOT_PYTHON = (
    "the command does not run a Python interpreter ({}): cProfile profiles only a command "
    "such as `python3 app.py` or `python3 -m package`"
)
NO_SCRIPT = (
    "the Python command runs no script or module ({}): cProfile needs `python3 SCRIPT` or "
    "`python3 -m MODULE` (not -c, -i or standard input)"
)
NOT_ONE_LAUNCHER = (
    "only one profiler can start the command and {} does: cProfile runs inside the program "
    "it would start; profile with cprofile in a campaign of its own"
)
NOT_ATTACHABLE = (
    "py-spy must start the command on this host (it may not attach: {}) and cProfile runs "
    "inside the command: profile with cprofile in a campaign of its own"
)


def split_command(command: list[str]) -> tuple[list[str], list[str]] | str:
    """``[python, *options]`` and the rest (script or ``-m module`` and its arguments), or
    the skip reason."""
    if not command or not is_python(command[0]):
        return NOT_PYTHON.replace("{}", repr(command[0] if command else ""))
    index = 1
    while index < len(command) and command[index].startswith("-") and command[index] != "-m":
        option = command[index]
        if option in _NO_SCRIPT_OPTIONS or option.startswith("-c"):
            return NO_SCRIPT.replace("{}", option)
        index += 2 if option in _VALUE_OPTIONS else 1
    rest = command[index:]
    if not rest or rest == ["-m"]:
        return NO_SCRIPT.replace("{}", "nothing after the interpreter")
    return command[:index], rest


def skip_reason(campaign: Campaign, facts: HostFacts) -> str | None:
    """Why this host cannot run cProfile for this campaign, decided before anything runs."""
    launch = campaign.target.launch
    if campaign.target.mode != "launch" or launch is None:
        return NOT_LAUNCH
    split = split_command(list(launch.command))
    if isinstance(split, str):
        return split
    # Imported here: the registry imports every profiler module.
    from orchestrator import profilers as registry

    for other in campaign.profilers.enabled:
        if other == NAME:
            break
        if registry.launch_only(other):
            return NOT_ONE_LAUNCHER.replace("{}", other)
    attachers = [
        other
        for other in campaign.profilers.enabled
        if other != NAME and registry.is_launcher(other) and not registry.launch_only(other)
    ]
    if attachers and not facts.can_attach:
        return NOT_ATTACHABLE.replace("{}", facts.attach_reason or "ptrace is restricted")
    return None


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    spec = campaign.profilers.cprofile or CprofileSpec()
    outputs = [OUTPUT, PROFILE]
    reason = skip_reason(campaign, facts)
    launch = campaign.target.launch
    split = split_command(list(launch.command)) if launch is not None else NOT_LAUNCH
    if reason is not None or isinstance(split, str):
        return ProfilerPlan.skipped(NAME, reason or str(split), outputs, MAX_BYTES)
    interpreter, _rest = split
    return ProfilerPlan(
        name=NAME,
        status="planned",
        reason=None,
        argv=[],
        launch_argv=[],
        outputs=outputs,
        max_bytes=MAX_BYTES,
        options={"interrupt_s": INTERRUPT_S, "replaces": len(interpreter)},
        # The same interpreter converts the profile it wrote (marshal is version-specific).
        post_argv=[post_argv(interpreter[0], PROFILE, OUTPUT, spec.top, spec.edges)],
        in_target=True,
        target_wrap=[*interpreter, "-m", "cProfile", "-o", f"{WORKDIR_ARG}/{PROFILE}"],
    )


# -- parsing -------------------------------------------------------------------------------


def _count(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number >= 0 and number.is_integer() else None


def _seconds(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and number >= 0 and math.isfinite(number) else None


def _text(value: Any, limit: int = 300) -> str:
    """A device string, cut, its control characters made visible (names reach renderers)."""
    return visible(str(value)[:limit]) if isinstance(value, (str, int)) else ""


def _function_row(raw: Any, total: float) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    calls, primitive = _count(raw.get("calls")), _count(raw.get("primitive_calls"))
    tottime, cumtime = _seconds(raw.get("tottime")), _seconds(raw.get("cumtime"))
    name = _text(raw.get("function"))
    if not name or calls is None or primitive is None or tottime is None or cumtime is None:
        return None
    line = _count(raw.get("line"))
    return {
        "function": name,
        "file": _text(raw.get("file")),
        "line": line or 0,
        **call_times(calls, primitive, tottime, cumtime, total),
    }


def _end(raw: Any) -> str | None:
    if not (isinstance(raw, list) and len(raw) == 3):
        return None
    name = _text(raw[2])
    return f"{name} ({_text(raw[0])}:{_count(raw[1]) or 0})" if name else None


def _edge_row(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    caller, callee = _end(raw.get("caller")), _end(raw.get("callee"))
    calls, cumtime = _count(raw.get("calls")), _seconds(raw.get("cumtime"))
    if caller is None or callee is None or calls is None or cumtime is None:
        return None
    return {
        "caller": caller,
        "callee": callee,
        "calls": calls,
        "tottime_s": round(_seconds(raw.get("tottime")) or 0.0, 6),
        "cumtime_s": round(cumtime, 6),
    }


def _rows(raw: Any, make: Any, what: str, result: ProfileResult) -> list[dict[str, Any]]:
    items = raw if isinstance(raw, list) else []
    rows = [row for row in (make(item) for item in items[:MAX_ROWS]) if row is not None]
    if len(items) > MAX_ROWS:
        result.data_quality.append(f"cprofile.json lists {len(items)} {what}: read {MAX_ROWS}")
    bad = min(len(items), MAX_ROWS) - len(rows)
    if bad:
        result.data_quality.append(f"{bad} malformed {what} in cprofile.json")
    return rows


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """cprofile.json (written on the device) -> the functions by own time, the caller ->
    callee edges of the top ones, and totals (docs/metrics.md). Never raises."""
    result, text, cut = begin_parse_text(session_dir, OUTPUT, JSON_MAX_BYTES, "cprofile.json")
    if text is None:
        if entry.get("status") not in (None, "skipped"):
            result.data_quality.append(
                "no cprofile.json came back: the program wrote no profile, or the device "
                "could not convert it (see the manifest's cprofile entry)"
            )
        return result
    if cut:
        result.data_quality.append(f"cprofile.json is over {JSON_MAX_BYTES} bytes: not read")
        return result
    try:
        data = load_json(text)
    except ValueError as err:
        result.data_quality.append(f"cprofile.json is not valid JSON: {err}")
        return result
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        result.data_quality.append(f"cprofile.json is not a {SCHEMA} document")
        return result
    if data.get("error"):
        result.data_quality.append(
            f"cProfile's profile could not be read on the device: {_text(data['error'], 500)}"
        )
        return result
    total = _seconds(data.get("tottime")) or 0.0
    functions = _rows(
        data.get("functions"), lambda raw: _function_row(raw, total), "functions", result
    )
    functions.sort(key=lambda row: (-row["tottime_s"], row["function"], row["file"]))
    result.tables[CPROFILE_TABLE] = functions
    result.tables[CPROFILE_EDGES] = _rows(data.get("edges"), _edge_row, "edges", result)
    calls = _count(data.get("calls"))
    result.metrics["cprofile.tottime_s"] = round(total, 6)
    if calls is not None:
        result.metrics["cprofile.calls"] = float(calls)
        if calls:
            result.metrics["cprofile.us_per_call"] = round(1e6 * total / calls, 4)
    distinct = _count(data.get("functions_total"))
    if distinct is not None:
        result.metrics["cprofile.distinct_functions"] = float(distinct)
    if functions and total > 0:
        result.metrics["cprofile.top_function_pct"] = round(
            100.0 * functions[0]["tottime_s"] / total, 2
        )
    if not functions:
        result.data_quality.append("cprofile.json holds no function")
    return result
