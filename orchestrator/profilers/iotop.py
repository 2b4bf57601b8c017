"""iotop: how fast the target (and the whole system) reads and writes, sampled by the kernel.

iotop reads per-process I/O counters over the kernel's taskstats interface, which needs
root (or CAP_NET_ADMIN). The device must have iotop installed (preflight looks for it);
fleetprof pushes nothing for it. Batch mode (``-b``) with ``-o -t -k -P`` prints, every
interval, a two-line header (system totals), a title line, and one line per process that
did I/O in that interval:

    01:31:40 Total DISK READ:        11.94 K/s | Total DISK WRITE:    117171.97 K/s
    01:31:40 Current DISK READ:      11.94 K/s | Current DISK WRITE:  117621.68 K/s
        TIME  PID  PRIO  USER     DISK READ  DISK WRITE  SWAPIN      IO    COMMAND
    01:31:40 14269 be/4 root        3.98 K/s 117167.99 K/s  0.00 % 20.68 % python3 /tmp/iow.py

Without delay accounting the SWAPIN and IO columns read ``?unavailable?``; the read and
write rates do not depend on it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import IotopSpec
from orchestrator.models import HostFacts, ProfilerPlan
from orchestrator.profilers.base import ProfileResult, ToolChoice, begin_parse_text
from orchestrator.profilers.system import downsample

NAME = "iotop"
TOOL = None  # installed on the device by its package manager, not pushed from the cache
LAUNCHER = False
LAUNCH_ONLY = False
OUTPUT = "iotop.stdout"
PACKAGE = "iotop"  # the same name in Debian, Ubuntu, Fedora, EL (EPEL), Alpine, Arch
MAX_BYTES = 16 * 1024 * 1024
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 8 * 1024 * 1024

NOT_INSTALLED = (
    "iotop is not installed: install the iotop package (fleetprof's tools role does so "
    "with become when `fleetprof_tools_install_packages: true`)"
)
NOT_ROOT = (
    "iotop needs root (or CAP_NET_ADMIN) to read the kernel's per-process I/O statistics "
    "(taskstats), and the remote user is not root: connect as root to profile I/O"
)
NO_DELAYACCT = (
    "delay accounting is off on this host: iotop's SWAPIN and IO% columns read "
    "?unavailable? (the read/write rates are unaffected); enable it with "
    "`sysctl kernel.task_delayacct=1` (kernels built with CONFIG_TASK_DELAY_ACCT)"
)

# iotop prints sizes in powers of 1024: "%.2f K" with -k, else B, K, M, G, ... as fits.
_UNITS = {unit: 1024.0**power for power, unit in enumerate("BKMGTPE")}
_TIME = r"(?:\d{1,2}:\d{2}:\d{2}\s+)?"
_RATE = r"(\d+(?:\.\d+)?)\s*([BKMGTPE])/s"
_TOTAL_RE = re.compile(
    rf"^\s*{_TIME}Total DISK READ\s*:\s*{_RATE}\s*\|\s*Total DISK WRITE\s*:\s*{_RATE}\s*$"
)
# The second header line: "Current" since iotop 0.6, "Actual" before. Not used: it is
# what reached the block devices, not what processes asked for.
_CURRENT_RE = re.compile(
    rf"^\s*{_TIME}(?:Current|Actual) DISK READ\s*:\s*{_RATE}\s*\|\s*"
    rf"(?:Current|Actual) DISK WRITE\s*:\s*{_RATE}\s*$"
)
_TITLE_RE = re.compile(r"^\s*(?:TIME\s+)?(?:PID|TID)\s+PRIO\s+USER\s+DISK READ\s+DISK WRITE\b")
_ROW_RE = re.compile(
    rf"^\s*{_TIME}(?P<pid>\d+)\s+(?P<prio>\S+)\s+(?P<user>\S+)\s+"
    rf"{_RATE}\s+{_RATE}\s+"
    r"(?:(?P<swapin>\d+(?:\.\d+)?)\s*%\s+(?P<io>\d+(?:\.\d+)?)\s*%|(?P<unavailable>\?unavailable\?))"
    r"(?:\s+(?P<command>.*?))?\s*$"
)


def skip_reason(facts: HostFacts) -> str | None:
    """Why this host cannot run iotop, decided before anything runs."""
    if not facts.tools.get(NAME):
        return NOT_INSTALLED
    if not facts.is_root:
        return NOT_ROOT
    return None


def sample_count(duration_s: float, interval_s: float) -> int:
    """Samples to ask for so that iotop ends by itself at the deadline: one per interval,
    plus its first, which measures only the moment between its start and its first print."""
    return max(1, math.ceil(duration_s / interval_s - 1e-9)) + 1


def _interval_arg(interval_s: float) -> str:
    return f"{interval_s:g}"


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    spec = campaign.profilers.iotop or IotopSpec()
    reason = skip_reason(facts)
    if reason is not None:
        # What provision may install (fleetprof_tools_install_packages), for the next run.
        install = {"install_package": PACKAGE} if reason == NOT_INSTALLED else {}
        return ProfilerPlan.skipped(NAME, reason, [OUTPUT], MAX_BYTES, options=install)
    interval = spec.interval_s
    argv = [
        facts.tools[NAME],
        "-b",  # batch: plain text on stdout
        "-o",  # only processes that did I/O in the interval
        "-t",  # a time column
        "-k",  # every rate in K/s, so no unit guessing
        "-P",  # processes, not threads
        "-d",
        _interval_arg(interval),
        "-n",
        str(sample_count(campaign.duration_s, interval)),
    ]
    return ProfilerPlan.planned(NAME, argv, [OUTPUT], MAX_BYTES)


# -- parsing -------------------------------------------------------------------------------


@dataclass
class Row:
    pid: int
    read_bps: float
    write_bps: float
    command: str


@dataclass
class Sample:
    time: str | None
    total_read_bps: float
    total_write_bps: float
    rows: list[Row] = field(default_factory=list)


@dataclass
class IotopOutput:
    samples: list[Sample] = field(default_factory=list)
    malformed_lines: int = 0
    unavailable_rows: int = 0  # rows whose SWAPIN/IO columns read ?unavailable?
    cut: bool = False  # the text did not end with a newline: its last line is incomplete


def _bps(number: str, unit: str) -> float:
    return float(number) * _UNITS[unit]


def parse_text(text: str) -> IotopOutput:
    """iotop's batch output -> samples of per-process rates in bytes/s. Never raises."""
    out = IotopOutput()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        # Cut mid-line (size cap, killed): the last line may be part of a number or a name.
        lines.pop()
        out.cut = True
    current: Sample | None = None
    for line in lines:
        line = line.rstrip("\r")
        if not line.strip():
            continue
        total = _TOTAL_RE.match(line)
        if total:
            stamp = line.split(None, 1)[0] if line.lstrip()[:1].isdigit() else None
            current = Sample(
                time=stamp,
                total_read_bps=_bps(total.group(1), total.group(2)),
                total_write_bps=_bps(total.group(3), total.group(4)),
            )
            out.samples.append(current)
            continue
        if _CURRENT_RE.match(line) or _TITLE_RE.match(line):
            continue
        row = _ROW_RE.match(line)
        if row is None or current is None:
            out.malformed_lines += 1
            continue
        if row.group("unavailable"):
            out.unavailable_rows += 1
        current.rows.append(
            Row(
                pid=int(row.group("pid")),
                read_bps=_bps(row.group(4), row.group(5)),
                write_bps=_bps(row.group(6), row.group(7)),
                command=row.group("command") or "",
            )
        )
    return out


def iotop_command(cmdline: list[str]) -> str:
    """A command line as iotop prints it: argv[0] without its directory, joined by spaces."""
    parts = [str(part) for part in cmdline]
    if parts and parts[0].startswith("/"):
        parts[0] = parts[0].rsplit("/", 1)[-1]
    return " ".join(parts).strip()


def _target(entry_target: Any) -> tuple[int | None, str | None]:
    if not isinstance(entry_target, dict):
        return None, None
    pid = entry_target.get("pid")
    pid = pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None
    cmdline = entry_target.get("cmdline")
    command = None
    if isinstance(cmdline, list) and cmdline and all(isinstance(p, str) for p in cmdline):
        command = iotop_command(cmdline) or None
    return pid, command


def _manifest_target(session_dir: Path, entry: dict[str, Any]) -> Any:
    """The manifest's ``target`` (pid, cmdline): the profiler's entry does not carry it."""
    if isinstance(entry.get("target"), dict):
        return entry["target"]
    path = session_dir / MANIFEST
    try:
        if not path.is_file() or path.stat().st_size > MAX_MANIFEST_BYTES:
            return None
        manifest = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError, RecursionError):
        return None
    return manifest.get("target") if isinstance(manifest, dict) else None


def target_rates(sample: Sample, pid: int, command: str | None) -> tuple[float, float]:
    """The target's read and write rates in one sample: its own row, plus rows with exactly
    its command line. -P already folds threads into their process; a forked worker (a
    multiprocessing pool, a pre-fork server) keeps its parent's command line and is part of
    the workload, while iotop prints no parent pid to follow children any other way. An
    unrelated process with the very same command line would be counted too, which is
    why nothing looser (a prefix, the program name) is matched."""
    read = write = 0.0
    for row in sample.rows:
        if row.pid == pid or (command is not None and row.command == command):
            read += row.read_bps
            write += row.write_bps
    return read, write


def _clock_s(stamp: str | None) -> float | None:
    parts = stamp.split(":") if stamp else []
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    hours, minutes, seconds = (int(p) for p in parts)
    return float(hours * 3600 + minutes * 60 + seconds)


def sample_times(samples: list[Sample], interval_s: float) -> list[float]:
    """Seconds of each sample from the first: from iotop's clock column (-t) where every
    sample has one (a day boundary wraps), else one interval apart."""
    clocks = [_clock_s(s.time) for s in samples]
    if not samples or any(c is None for c in clocks):
        return [i * interval_s for i in range(len(samples))]
    times: list[float] = []
    day = 0.0
    for clock in clocks:
        value = (clock or 0.0) + day
        if times and value < times[-1]:
            day += 86400.0
            value += 86400.0
        times.append(value)
    return times


def _series(
    samples: list[Sample], rates: list[tuple[float, float]] | None, campaign: Campaign
) -> dict[str, list[float | None]]:
    """System totals per sample and, where the target is known, its rates (None for the
    samples after it ended)."""
    spec = campaign.profilers.iotop or IotopSpec()
    columns: dict[str, list[float | None]] = {
        "total.read_bytes_per_s": [s.total_read_bps for s in samples],
        "total.write_bytes_per_s": [s.total_write_bps for s in samples],
    }
    if rates is not None:
        padded: list[tuple[float, float] | None] = [*rates]
        padded += [None] * (len(samples) - len(rates))
        columns["target.read_bytes_per_s"] = [p[0] if p else None for p in padded]
        columns["target.write_bytes_per_s"] = [p[1] if p else None for p in padded]
    return downsample(NAME, sample_times(samples, spec.interval_s), columns)


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """iotop.stdout -> the target's and the system's read/write rates (bytes/s).

    iotop's first sample is dropped: it covers only the moment between iotop reading the
    counters at start-up and its first print, so its rates are zero or noise. Where iotop
    did not end by itself (stopped, cut), its last sample may lack rows and is dropped too.
    """
    result, text, capped = begin_parse_text(session_dir, OUTPUT, MAX_BYTES, "iotop output")
    if text is None:
        return result
    output = parse_text(text)
    outputs = entry.get("outputs")
    reported = outputs.get(OUTPUT) if isinstance(outputs, dict) else None
    truncated = capped or (isinstance(reported, dict) and bool(reported.get("truncated")))
    exit_code = entry.get("exit_code")
    interrupted = isinstance(exit_code, int) and not isinstance(exit_code, bool) and exit_code != 0
    samples = output.samples[1:]
    if samples and (output.cut or truncated or interrupted):
        samples = samples[:-1]
        result.data_quality.append(
            "iotop did not finish its last sample (stopped or cut); it was left out"
        )
    if truncated:
        result.data_quality.append(f"iotop output was cut at {MAX_BYTES} bytes")
    if output.malformed_lines:
        result.data_quality.append(f"{output.malformed_lines} malformed lines in iotop output")
    if output.unavailable_rows:
        result.data_quality.append(NO_DELAYACCT)
    result.metrics["iotop.samples"] = float(len(samples))
    if not samples:
        if output.samples:
            result.data_quality.append("iotop printed no complete sample after its first")
        return result
    result.series = _series(samples, None, campaign)
    n = float(len(samples))
    result.metrics["iotop.total.read_bytes_per_s.mean"] = round(
        sum(s.total_read_bps for s in samples) / n, 1
    )
    result.metrics["iotop.total.write_bytes_per_s.mean"] = round(
        sum(s.total_write_bps for s in samples) / n, 1
    )
    target = _manifest_target(session_dir, entry)
    pid, command = _target(target)
    if pid is None:
        result.data_quality.append("the target's pid is unknown: no iotop figures for it")
        return result
    rates = [target_rates(sample, pid, command) for sample in samples]
    if isinstance(target, dict) and target.get("exited_at_device") is not None:
        # iotop's last samples can fall after the target ended (stopped at the deadline):
        # a process that no longer exists did no I/O then, and those seconds are not its.
        while rates and rates[-1] == (0.0, 0.0):
            rates.pop()
    result.series = _series(samples, rates, campaign)
    if not rates:
        result.data_quality.append("the target did no I/O that iotop saw")
        return result
    reads = [read for read, _ in rates]
    writes = [write for _, write in rates]
    # With -o a process that did no I/O in an interval has no row: it counts as zero.
    count = float(len(rates))
    result.metrics["iotop.target.read_bytes_per_s.mean"] = round(sum(reads) / count, 1)
    result.metrics["iotop.target.read_bytes_per_s.max"] = round(max(reads), 1)
    result.metrics["iotop.target.write_bytes_per_s.mean"] = round(sum(writes) / count, 1)
    result.metrics["iotop.target.write_bytes_per_s.max"] = round(max(writes), 1)
    return result
