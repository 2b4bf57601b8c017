"""strace: the target's system calls over the window, counted by the kernel's tracer.

The device must have strace installed (preflight looks for it); fleetprof pushes nothing
for it. The runner attaches it to the target, in attach and launch mode alike (the runner
launches the program, strace attaches by pid as py-spy does), following every thread and
every child the target starts (``-f``), and counting instead of printing (``-c``) into a
file (``-o``). It has no end of its own: the runner sends it SIGINT at the deadline itself
(``stop_at_deadline``), strace detaches and writes its summary, so the count covers the
window and nothing after it. ``-w`` sums wall time from each call's entry to its exit (the
time the threads waited in the kernel: a blocked ``read``, a ``futex`` wait), not the
kernel CPU time that plain ``-c`` estimates:

    % time     seconds  usecs/call     calls    errors syscall
    ------ ----------- ----------- --------- --------- ----------------
     52.29    1.465124        1116      1312           clock_nanosleep
     18.92    0.530216          96      5496       503 futex
    ------ ----------- ----------- --------- --------- ----------------
    100.00    2.801771          97     28634      1814 total

A process has one ptrace tracer: strace cannot attach where a blocking py-spy pauses the
target at every sample (docs/campaign.md, ``profilers.strace``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetprof_device.contract import STOP_AT_DEADLINE_OPTION
from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import StraceSpec
from orchestrator.models import HostFacts, ProfilerPlan
from orchestrator.profilers import pyspy
from orchestrator.profilers.base import ProfileResult, ToolChoice, begin_parse_text
from orchestrator.values import number

NAME = "strace"
TOOL = None  # installed on the device by its package manager, not pushed from the cache
LAUNCHER = False
LAUNCH_ONLY = False
OUTPUT = "strace.txt"
PACKAGE = "strace"  # the same name in Debian, Ubuntu, Fedora, EL, Alpine, Arch
# A summary has one row per system call the target made: a few hundred at most.
MAX_BYTES = 256 * 1024
MAX_ROWS = 1000
TABLE = "strace.syscalls"
# Per-syscall metrics (strace.syscall.<name>.*) for this many syscalls, the most calls first.
METRIC_SYSCALLS = 5

NOT_INSTALLED = (
    "strace is not installed: install the strace package (fleetprof's tools role does so "
    "with become when `fleetprof_tools_install_packages: true`)"
)
NO_PROCESS = "strace traces a process; a probe target has none"
NOT_PERMITTED = (
    "strace may not attach to the target on this host (kernel.yama.ptrace_scope={} and no "
    "CAP_SYS_PTRACE): connect as root, grant the capability, or set ptrace_scope=0"
)
NO_PTRACE = "kernel.yama.ptrace_scope=3 forbids ptrace for everyone: strace cannot trace"
NOT_BESIDE_BLOCKING_PYSPY = (
    "a process has one ptrace tracer and py-spy, which pauses the target at each sample, "
    "holds it (strace would stop py-spy sampling): py-spy runs, strace is skipped; set "
    "`nonblocking: true` under py-spy to run both"
)
NOT_PERMITTED_ON_DEVICE = (
    "strace was not permitted to trace the target (ptrace: Operation not permitted): no "
    "CAP_SYS_PTRACE, a Yama ptrace_scope, a container's seccomp profile, or another tracer"
)
NO_CALLS = "strace counted no system call in the window: the target made none that ended"

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_RULE_RE = re.compile(r"^\s*-{3,}(\s+-{3,})*\s*$")
_HEADER_RE = re.compile(r"^\s*%\s*time\s+seconds\s+usecs/call\s+calls\s+errors\s+syscall\s*$")
# Bounded numbers: a row of garbage digits must not make an int() of thousands of digits
# (ValueError past 4300) or a float that overflows.
_NUMBER = r"(\d{1,15}(?:\.\d{1,9})?)"
_COUNT = r"(\d{1,15})"
_ROW_RE = re.compile(
    rf"^\s*{_NUMBER}\s+{_NUMBER}\s+{_NUMBER}\s+{_COUNT}\s+(?:{_COUNT}\s+)?(\S+)\s*$"
)


def skip_reason(campaign: Campaign, facts: HostFacts) -> str | None:
    """Why this host cannot run strace for this campaign, decided before anything runs."""
    if campaign.target.mode == "probe":
        return NO_PROCESS
    if not facts.tools.get(NAME):
        return NOT_INSTALLED
    if facts.ptrace_scope == 3:
        return NO_PTRACE
    if not facts.can_attach:
        # Even a launched program is not strace's child (the runner starts it): attach.
        return NOT_PERMITTED.format(facts.ptrace_scope)
    return None


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    spec = campaign.profilers.strace or StraceSpec()
    reason = skip_reason(campaign, facts)
    if reason is not None:
        install = {"install_package": PACKAGE} if reason == NOT_INSTALLED else {}
        return ProfilerPlan.skipped(NAME, reason, [OUTPUT], MAX_BYTES, options=install)
    argv = [
        facts.tools[NAME],
        "-c",  # count: one summary table, no line per call
        "-f",  # every thread, and the children the target starts
        *(["-w"] if spec.time == "wall" else []),
        "-o",
        OUTPUT,  # the runner starts it in the session's workdir
        "-p",
        "{pid}",
    ]
    return ProfilerPlan.planned(
        NAME, argv, [OUTPUT], MAX_BYTES, options={STOP_AT_DEADLINE_OPTION: True}
    )


def yield_to_pyspy(campaign: Campaign, plans: list[ProfilerPlan]) -> list[ProfilerPlan]:
    """One ptrace tracer per process: where py-spy is planned without ``nonblocking`` (it
    seizes the target at every sample), a planned strace is skipped.

    Measured (strace 6.1, py-spy 0.4.3, kernel 6.x): with strace attached, a blocking
    py-spy stops at its first sample ("Failed to suspend process: EPERM"); started before
    strace, it keeps running but every sample while strace is attached fails (113 errors in
    210 samples). py-spy ``--nonblocking`` reads memory without ptrace: both run whole.
    py-spy is the one kept: the hot functions, flame graph and hot lines stand on it.
    """
    spy = campaign.profilers.py_spy
    blocking = any(p.name == pyspy.NAME and p.status == "planned" for p in plans) and not (
        spy is not None and spy.nonblocking
    )
    if not blocking:
        return plans
    return [
        ProfilerPlan.skipped(NAME, NOT_BESIDE_BLOCKING_PYSPY, [OUTPUT], MAX_BYTES)
        if p.name == NAME and p.status == "planned"
        else p
        for p in plans
    ]


# -- parsing -------------------------------------------------------------------------------


@dataclass
class Syscall:
    name: str
    calls: int
    errors: int
    seconds: float
    usecs_per_call: float
    time_pct: float


@dataclass
class StraceOutput:
    rows: list[Syscall] = field(default_factory=list)
    total_line: bool = False  # the table's "total" row was there: strace finished writing
    malformed_lines: int = 0
    dropped_rows: int = 0  # rows past MAX_ROWS


def parse_text(text: str) -> StraceOutput:
    """strace -c's summary -> one row per syscall. Never raises.

    Several tables (one per personality: "System call usage summary for 32 bit mode:")
    are summed by name. Anything that is not a header, a rule, a row or a total counts as
    malformed; a name that is not a plain identifier makes its row malformed too.
    """
    out = StraceOutput()
    merged: dict[str, Syscall] = {}
    for line in text.splitlines():
        line = line.rstrip("\r")
        if not line.strip() or _RULE_RE.match(line) or _HEADER_RE.match(line):
            continue
        if line.startswith("System call usage summary for"):
            continue
        row = _ROW_RE.match(line)
        if row is None:
            out.malformed_lines += 1
            continue
        _pct, seconds, _usecs, calls, errors, name = row.groups()
        if name == "total":
            out.total_line = True
            continue
        if not _NAME_RE.fullmatch(name):
            out.malformed_lines += 1
            continue
        found = merged.get(name)
        if found is None:
            if len(merged) >= MAX_ROWS:
                out.dropped_rows += 1
                continue
            merged[name] = Syscall(name, int(calls), int(errors or 0), float(seconds), 0.0, 0.0)
        else:
            found.calls += int(calls)
            found.errors += int(errors or 0)
            found.seconds += float(seconds)
    total_s = sum(s.seconds for s in merged.values())
    for syscall in merged.values():
        # Recomputed from the merged rows (strace's own are per table and rounded).
        syscall.usecs_per_call = 1e6 * syscall.seconds / syscall.calls if syscall.calls else 0.0
        syscall.time_pct = 100.0 * syscall.seconds / total_s if total_s > 0 else 0.0
    out.rows = sorted(merged.values(), key=lambda s: (-s.seconds, -s.calls, s.name))
    return out


def traced_seconds(entry: dict[str, Any], campaign: Campaign) -> float:
    """How long strace was attached: from its start to its stop on the device clock, else
    the campaign's window."""
    started, stopped = (
        number(entry.get("started_at_device")),
        number(entry.get("stopped_at_device")),
    )
    if started is not None and stopped is not None and stopped > started:
        return stopped - started
    return float(campaign.duration_s)


def _table(rows: list[Syscall], seconds: float) -> list[dict[str, Any]]:
    return [
        {
            "syscall": s.name,
            "calls": s.calls,
            "calls_per_s": round(s.calls / seconds, 3),
            "errors": s.errors,
            "seconds": round(s.seconds, 6),
            "usecs_per_call": round(s.usecs_per_call, 3),
            "time_pct": round(s.time_pct, 2),
        }
        for s in rows
    ]


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """strace.txt -> per-syscall calls, errors and time; totals and the top syscalls as
    metrics (docs/metrics.md, "strace")."""
    said = entry.get("stderr_tail")
    result, text, capped = begin_parse_text(session_dir, OUTPUT, MAX_BYTES, "strace output")
    if isinstance(said, str) and "ptrace(" in said and "Operation not permitted" in said:
        result.data_quality.append(NOT_PERMITTED_ON_DEVICE)
    if text is None:
        return result
    output = parse_text(text)
    if capped:
        result.data_quality.append(f"strace output was cut at {MAX_BYTES} bytes")
    if output.malformed_lines:
        result.data_quality.append(f"{output.malformed_lines} malformed lines in strace output")
    if output.dropped_rows:
        result.data_quality.append(f"strace listed more than {MAX_ROWS} syscalls; kept {MAX_ROWS}")
    if output.rows and not output.total_line:
        result.data_quality.append("strace's summary has no total row: it was cut short")
    if not output.rows:
        if not result.data_quality:
            result.data_quality.append(NO_CALLS)
        return result
    seconds = traced_seconds(entry, campaign)
    rows = output.rows
    calls = sum(s.calls for s in rows)
    errors = sum(s.errors for s in rows)
    result.tables[TABLE] = _table(rows, seconds)
    result.metrics["strace.calls"] = float(calls)
    result.metrics["strace.calls_per_s"] = round(calls / seconds, 3)
    result.metrics["strace.errors"] = float(errors)
    result.metrics["strace.error_pct"] = round(100.0 * errors / calls, 3) if calls else 0.0
    result.metrics["strace.time_s"] = round(sum(s.seconds for s in rows), 6)
    result.metrics["strace.syscalls"] = float(len(rows))
    result.metrics["strace.traced_s"] = round(seconds, 3)
    for s in sorted(rows, key=lambda s: (-s.calls, s.name))[:METRIC_SYSCALLS]:
        result.metrics[f"strace.syscall.{s.name}.calls_per_s"] = round(s.calls / seconds, 3)
        result.metrics[f"strace.syscall.{s.name}.usecs_per_call"] = round(s.usecs_per_call, 3)
    return result
