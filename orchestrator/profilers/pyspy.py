"""py-spy: where a Python process spends its time, sampled from outside the process.

What it needs on a device (a build for the architecture, ptrace permission), the argv the
runner executes, and the parser from its folded output to normalized data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetprof_device.contract import (
    SOURCE_LINES_FILE,
    SOURCE_LINES_MAX_BYTES,
    SOURCE_LINES_OPTION,
)
from fleetprof_device.pyspy_output import option_value
from orchestrator import toolcache
from orchestrator.analysis.breakdown import (
    native_share,
    process_rows,
    sampling_rate,
    thread_rows,
)
from orchestrator.analysis.lines import hot_lines, line_counts, source_texts
from orchestrator.analysis.stacks import StackProfile, flame_tree, read_folded, top_functions
from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import PySpySpec
from orchestrator.models import WORKDIR_ARG, HostFacts, ProfilerPlan
from orchestrator.profilers.base import ProfileResult, ToolChoice, begin_parse, read_capped
from orchestrator.values import load_json
from orchestrator.values import number as _number

NAME = "py-spy"
TOOL = "py-spy"  # from the controller's tool cache
# It can start the command of a launch target (py-spy record -- CMD), or attach.
LAUNCHER = True
LAUNCH_ONLY = False
OUTPUT = "py-spy.folded"
MAX_BYTES = 64 * 1024 * 1024
# pyspy.lines.json: the device's cap on its text, and room for JSON's escapes and indents.
MAX_SOURCE_LINES_BYTES = 4 * SOURCE_LINES_MAX_BYTES
# Below this share of the requested rate a host's profile is marked as short of samples.
MIN_RATE_FRACTION = 0.8


def home_path(version: str) -> str:
    """Where py-spy lives on a device, under the connecting user's home (``~/``)."""
    return f"~/.fleetprof/tools/py-spy/{version}/py-spy"


def tool_home() -> str:
    """Where provision would put the cache's py-spy (hashed at preflight, so a device that
    has it already is not provisioned again)."""
    return home_path(toolcache.PYSPY_VERSION)


def choose_tool(arch: str, log: Callable[[str], None] | None) -> ToolChoice:
    """The tool cache's py-spy for ``arch``, or why there is none (then py-spy is skipped)."""
    try:
        tool = toolcache.ensure_pyspy(arch, log=log)
    except toolcache.ToolCacheError as err:
        return ToolChoice(toolcache.PYSPY_VERSION, None, None, str(err))
    return ToolChoice(tool.version, str(tool.path), tool.sha256, None)


def device_path(facts: HostFacts, version: str) -> str:
    return facts.home.rstrip("/") + home_path(version)[1:]


def skip_reason(campaign: Campaign, facts: HostFacts, tool_problem: str | None) -> str | None:
    """Why this host cannot run py-spy for this campaign, decided before anything runs."""
    if campaign.target.mode == "probe":
        return "py-spy profiles a Python process; a probe target has none"
    if tool_problem:
        return tool_problem
    if facts.ptrace_scope == 3:
        return "kernel.yama.ptrace_scope=3 forbids ptrace for everyone: py-spy cannot sample"
    if campaign.target.mode == "attach" and not facts.can_attach:
        return facts.attach_reason or "py-spy may not attach to processes on this host"
    return None


def _options(
    spec: PySpySpec, duration_s: float, output: str = OUTPUT, children: bool = False
) -> list[str]:
    options = [
        "--duration",
        str(max(1, math.ceil(duration_s))),
        "--rate",
        str(spec.rate),
        "--format",
        "raw",
        "--output",
        output,
        # Always: every sample names its thread, so the report breaks each host's time
        # down by thread and counts sampling ticks, not thread samples.
        "--threads",
    ]
    for flag, wanted in (
        ("--native", spec.native),
        ("--idle", spec.idle),
        ("--gil", spec.gil),
        # A sweep's runs are the children of its supervisor: followed whatever was asked.
        ("--subprocesses", spec.subprocesses or children),
        ("--nonblocking", spec.nonblocking),
    ):
        if wanted:
            options.append(flag)
    return options


def _binary(facts: HostFacts, tool: ToolChoice | None) -> str | None:
    return device_path(facts, tool.version) if tool is not None and tool.src else None


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    binary = _binary(facts, tool)
    if tool is None or binary is None or not tool.src or not tool.sha256:
        return None
    return {"src": tool.src, "sha256": tool.sha256, "dest": binary}


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    spec = campaign.profilers.py_spy
    assert spec is not None
    binary = _binary(facts, tool)
    problem = tool.problem if tool is not None else "py-spy is not in the tool cache"
    reason = skip_reason(campaign, facts, problem if binary is None else None)
    if reason is not None or binary is None:
        return ProfilerPlan.skipped(NAME, reason or "no py-spy binary", [OUTPUT], MAX_BYTES)
    launch = campaign.target.launch
    sweep = launch is not None and launch.sweep is not None
    options = _options(spec, campaign.duration_s, children=sweep)
    launch_options = _options(spec, campaign.duration_s, f"{WORKDIR_ARG}/{OUTPUT}", sweep)
    return ProfilerPlan(
        name=NAME,
        status="planned",
        reason=None,
        argv=[binary, "record", "--pid", "{pid}", *options],
        # Started in the program's directory (target.launch.cwd): its output by absolute path.
        launch_argv=[binary, "record", *launch_options, "--", *launch.command] if launch else [],
        outputs=[OUTPUT],
        max_bytes=MAX_BYTES,
        # The runner reads the hot lines' source text after the window (SOURCE_LINES_FILE).
        options={SOURCE_LINES_OPTION: spec.source_lines},
    )


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """Folded stacks -> samples, top functions, flame graph, the host's time by thread,
    process and native library, and how trustworthy all that is (docs/metrics.md).

    py-spy prints how many thread samples it kept, not how many times it sampled: the
    rate per tick comes from the busiest thread's samples over the time py-spy sampled.
    """
    result, path = begin_parse(session_dir, OUTPUT)
    if path is None:
        return result
    spec = campaign.profilers.py_spy or PySpySpec()
    quality = entry.get("data_quality")
    quality = quality if isinstance(quality, dict) else {}
    profile = read_folded(path, max_bytes=MAX_BYTES)
    result.stacks = profile if profile.total_samples > 0 else None
    result.top_functions = [
        {
            "function": stat.function,
            "file": stat.file,
            "self_pct": stat.self_pct,
            "total_pct": stat.total_pct,
        }
        for stat in top_functions(profile, limit=25)
    ]
    result.flamegraph = flame_tree(profile) if profile.total_samples else None
    result.hot_lines = _hot_lines(session_dir, profile, result)
    result.metrics["pyspy.samples"] = float(profile.total_samples)
    result.metrics["pyspy.requested_rate_hz"] = float(spec.rate)
    _breakdown(profile, spec, result)
    behind = _number(quality.get("behind_warnings")) or 0.0
    result.metrics["pyspy.behind_warnings"] = behind
    if behind:
        lag = _number(quality.get("max_lag_s"))
        result.metrics["pyspy.max_lag_s"] = lag or 0.0
        result.data_quality.append(
            f"py-spy fell behind in sampling {behind:.0f} times"
            + (f" (up to {lag:.2f} s)" if lag else "")
        )
    _rate(profile, spec, _sampling_window_s(entry, campaign, quality), result)
    if profile.malformed_lines:
        result.data_quality.append(f"{profile.malformed_lines} malformed lines in py-spy output")
    outputs = entry.get("outputs") or {}
    truncated = isinstance(outputs, dict) and (outputs.get(OUTPUT) or {}).get("truncated")
    if truncated or profile.truncated:
        result.data_quality.append(f"py-spy output was cut at {MAX_BYTES} bytes")
    return result


def _hot_lines(
    session_dir: Path, profile: StackProfile, result: ProfileResult
) -> list[dict[str, Any]]:
    """The hot lines of the host's hottest functions, with the source text the device
    read (``SOURCE_LINES_FILE``, untrusted: capped, checked, control characters made
    visible; a bad file costs the text only, with a note)."""
    if profile.total_samples <= 0:
        return []
    texts: dict[str, dict[int, str]] = {}
    path = session_dir / SOURCE_LINES_FILE
    try:
        if path.is_file():
            text, cut = read_capped(path, MAX_SOURCE_LINES_BYTES)
            if cut:
                raise ValueError(f"larger than {MAX_SOURCE_LINES_BYTES} bytes")
            texts, dropped = source_texts(load_json(text))
            if dropped:
                result.data_quality.append(
                    f"{SOURCE_LINES_FILE}: {dropped} malformed entries left out"
                )
    except (OSError, ValueError) as error:
        result.data_quality.append(f"{SOURCE_LINES_FILE} left out (no source text): {error}")
    result.line_counts = line_counts(profile)
    found = hot_lines(result.line_counts, profile.total_samples, texts)
    return [function.to_dict() for function in found]


def _breakdown(profile: StackProfile, spec: PySpySpec, result: ProfileResult) -> None:
    """The host's samples by thread, by process and by native library (report tables)."""
    if profile.total_samples <= 0:
        return
    threads = thread_rows(profile)
    if threads:
        result.tables["pyspy.threads"] = threads
    processes = process_rows(profile)
    if processes:
        result.tables["pyspy.processes"] = processes
    if spec.native:
        share = native_share(profile)
        whole = profile.total_samples
        result.metrics["pyspy.native_pct"] = round(100.0 * share.native_samples / whole, 2)
        result.metrics["pyspy.unresolved_pct"] = round(100.0 * share.unresolved_samples / whole, 2)
        result.tables["pyspy.native"] = share.libraries


def _rate(
    profile: StackProfile, spec: PySpySpec, window: float | None, result: ProfileResult
) -> None:
    """``pyspy.effective_rate_hz`` per sampling tick, and a note when it fell short.

    Only an exact rate (idle samples kept) can show py-spy short of the rate: without
    them a thread that slept is missing from ticks py-spy did take, and then py-spy's
    own "behind in sampling" lines are the evidence.
    """
    if not window or profile.total_samples <= 0:
        return
    rate = sampling_rate(profile, window, idle=spec.idle, gil=spec.gil)
    if rate is None:
        return
    result.metrics["pyspy.effective_rate_hz"] = round(rate.hz, 2)
    if rate.exact and rate.hz < MIN_RATE_FRACTION * spec.rate:
        result.data_quality.append(
            f"effective rate {rate.hz:.1f} Hz is short of the {spec.rate} Hz asked "
            f"({rate.ticks} samples of each thread in {window:.1f} s)"
        )


def _sampling_window_s(
    entry: dict[str, Any], campaign: Campaign, quality: dict[str, Any]
) -> float | None:
    """The time py-spy sampled: from its start to its stop, less what went before its
    first tick (starting, attaching: a second on a loaded board) when it ran past its own
    ``--duration``. py-spy never skips a tick, so when it ran past because it fell
    behind, its lag (it reports any over 1 s) is part of the window."""
    ran = _window_s(entry)
    if ran is None:
        return None
    argv = entry.get("argv")
    duration = _option(argv if isinstance(argv, list) else [], "--duration")
    if duration is None:
        duration = float(max(1, math.ceil(campaign.duration_s)))
    lag = _number(quality.get("max_lag_s")) or 0.0
    return min(ran, duration + lag)


def _option(argv: list[Any], name: str) -> float | None:
    """The number after ``name`` in an argv (device data: anything else is None)."""
    return _number(option_value(argv, (name,)))


def _window_s(entry: dict[str, Any]) -> float | None:
    start, stop = entry.get("started_at_device"), entry.get("stopped_at_device")
    if isinstance(start, int | float) and isinstance(stop, int | float) and stop > start:
        return float(stop - start)
    return None
