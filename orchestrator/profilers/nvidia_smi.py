"""nvidia-smi: GPU utilization, memory, SM clock, temperature and power, per GPU.

The device must have the NVIDIA driver and its ``nvidia-smi`` (preflight looks for both);
fleetprof pushes nothing for it. It runs in loop mode, one CSV row per GPU every
``interval``, until the runner stops it at the deadline:

    nvidia-smi --query-gpu=timestamp,index,uuid,name,... --format=csv,nounits -lms 1000

The header line is kept (no ``noheader``): it names every column as this driver spells
it (``clocks.current.sm [MHz]`` for ``clocks.sm``), so the parser maps columns by name
and reads output of any field order, with or without units. A value the GPU or driver
cannot give reads ``[N/A]`` or ``[Not Supported]``; it is left out, never read as 0.

The query holds only fields every driver since R450 knows: an unknown field makes
nvidia-smi refuse the whole query. ``clocks_throttle_reasons.*`` is left out for that
reason (renamed ``clocks_event_reasons.*`` in R535, the old name deprecated).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import NvidiaSmiSpec
from orchestrator.models import HostFacts, ProfilerPlan
from orchestrator.profilers.base import ProfileResult, ToolChoice, begin_parse_text

NAME = "nvidia-smi"
TOOL = None  # ships with the NVIDIA driver
LAUNCHER = False
LAUNCH_ONLY = False
OUTPUT = "nvidia-smi.stdout"
MAX_BYTES = 16 * 1024 * 1024
MAX_GPUS = 64  # GPU keys kept; rows of further GPUs are counted as malformed
MAX_LINE = 4096

QUERY_FIELDS = (
    "timestamp",
    "index",
    "uuid",
    "name",
    "utilization.gpu",
    "utilization.memory",
    "memory.used",
    "memory.total",
    "clocks.sm",
    "clocks.max.sm",
    "temperature.gpu",
    "power.draw",
    "power.limit",
)

NOT_INSTALLED = (
    "nvidia-smi was not found on this host (it ships with the NVIDIA driver; "
    "not on Jetson boards before JetPack 6, use tegrastats there)"
)
NO_DRIVER = "no NVIDIA driver is loaded on this host (/proc/driver/nvidia/version is missing)"

# Column names as nvidia-smi prints them in the header, by what the parser wants. A query
# alias (clocks.sm) is printed under its full name (clocks.current.sm).
_COLUMNS: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp",),
    "index": ("index",),
    "uuid": ("uuid",),
    "name": ("name", "gpu_name"),
    "util": ("utilization.gpu",),
    "mem_used": ("memory.used",),
    "sm_clock": ("clocks.current.sm", "clocks.sm"),
    "sm_clock_max": ("clocks.max.sm", "clocks.max.sm_clock"),
    "temp": ("temperature.gpu",),
    "power": ("power.draw", "power.draw.instant"),
}
_NUMERIC = ("util", "mem_used", "sm_clock", "sm_clock_max", "temp", "power")
# Sanity bounds: a value outside is device garbage, dropped and counted.
_BOUNDS = {
    "util": (0.0, 100.0),
    "mem_used": (0.0, 16.0 * 1024 * 1024),  # MiB
    "sm_clock": (0.0, 100_000.0),
    "sm_clock_max": (1.0, 100_000.0),
    "temp": (-50.0, 200.0),
    "power": (0.0, 100_000.0),
}
_UNAVAILABLE = re.compile(r"^\[?(?:N/A|Not Supported|Unknown Error|GPU is lost|Unknown)\]?$", re.I)
_VALUE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(?:%|MiB|MB|W|MHz|C)?$")
_INDEX = re.compile(r"^\d{1,3}$")


def skip_reason(facts: HostFacts) -> str | None:
    if not facts.tools.get(NAME):
        return NOT_INSTALLED
    if facts.gpu.get("nvidia_driver") is False:
        return NO_DRIVER
    return None


def interval_ms(interval_s: float) -> int:
    return max(1, int(interval_s * 1000))


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    spec = campaign.profilers.nvidia_smi or NvidiaSmiSpec()
    reason = skip_reason(facts)
    if reason is not None:
        return ProfilerPlan.skipped(NAME, reason, [OUTPUT], MAX_BYTES)
    argv = [
        facts.tools[NAME],
        "--query-gpu=" + ",".join(QUERY_FIELDS),
        "--format=csv,nounits",  # a header naming the columns; bare numbers
        "-lms",  # loop; the runner stops it (SIGINT) at the deadline
        str(interval_ms(spec.interval_s)),
    ]
    return ProfilerPlan.planned(NAME, argv, [OUTPUT], MAX_BYTES)


# -- parsing -------------------------------------------------------------------------------


@dataclass
class GpuSeries:
    name: str | None = None
    values: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in _NUMERIC})
    ratios: list[float] = field(default_factory=list)  # sm clock / max sm clock
    rows: int = 0


@dataclass
class NvidiaSmiOutput:
    gpus: dict[str, GpuSeries] = field(default_factory=dict)
    rows: int = 0
    malformed_lines: int = 0
    unavailable: dict[str, int] = field(default_factory=dict)  # column -> [N/A] count
    out_of_range: int = 0
    missing_columns: list[str] = field(default_factory=list)
    headerless: bool = False
    cut: bool = False
    first_error: str | None = None  # the first line that is not CSV (an nvidia-smi error)


def _column_name(header: str) -> str:
    """``memory.used [MiB]`` -> ``memory.used``."""
    return re.sub(r"\s*\[[^\]]*\]\s*$", "", header.strip()).strip().lower()


def _is_header(cells: list[str]) -> bool:
    names = {_column_name(c) for c in cells}
    return bool(names & {"index", "timestamp", "utilization.gpu", "name", "uuid"}) and not any(
        _VALUE.match(c.strip()) for c in cells
    )


def _mapping(columns: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for position, column in enumerate(columns):
        for key, names in _COLUMNS.items():
            if column in names and key not in found:
                found[key] = position
    return found


def _printable(text: str, limit: int = 160) -> str:
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text.strip())
    return cleaned[:limit]


def parse_text(text: str, fields: tuple[str, ...] | None = None) -> NvidiaSmiOutput:
    """nvidia-smi ``--query-gpu`` CSV -> per-GPU series. Never raises.

    ``fields`` names the columns of output printed without a header (``noheader``);
    output with a header line is read by that header.
    """
    out = NvidiaSmiOutput()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        lines.pop()  # cut mid-line (stopped, size cap): the last row may be partial
        out.cut = True
    mapping: dict[str, int] | None = None
    width = 0
    if fields is not None:
        columns = [_column_name(f) for f in fields]
        mapping, width, out.headerless = _mapping(columns), len(columns), True
    position = 0  # the row's place in its sample, for output without an index column
    last_stamp: str | None = None
    for raw in lines:
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            out.malformed_lines += 1
            continue
        try:
            cells = next(csv.reader([line], skipinitialspace=True))
        except (csv.Error, StopIteration):
            out.malformed_lines += 1
            continue
        if _is_header(cells):
            columns = [_column_name(c) for c in cells]
            mapping, width, out.headerless = _mapping(columns), len(columns), False
            position = 0
            last_stamp = None
            continue
        if mapping is None or len(cells) != width:
            out.malformed_lines += 1
            if out.first_error is None and len(cells) <= 1:
                out.first_error = _printable(line)
            continue
        stamp = cells[mapping["timestamp"]].strip() if "timestamp" in mapping else None
        if stamp is not None and stamp != last_stamp:
            position, last_stamp = 0, stamp
        if "index" in mapping:
            index_text = cells[mapping["index"]].strip()
            if not _INDEX.match(index_text):
                out.malformed_lines += 1
                continue
            key = str(int(index_text))
        else:
            key = str(position)
        position += 1
        series = out.gpus.get(key)
        if series is None:
            if len(out.gpus) >= MAX_GPUS:
                out.malformed_lines += 1
                continue
            series = out.gpus[key] = GpuSeries()
        if "name" in mapping and series.name is None:
            series.name = _printable(cells[mapping["name"]], 96) or None
        row: dict[str, float] = {}
        for metric in _NUMERIC:
            if metric not in mapping:
                continue
            value = cells[mapping[metric]].strip()
            if _UNAVAILABLE.match(value):
                out.unavailable[metric] = out.unavailable.get(metric, 0) + 1
                continue
            match = _VALUE.match(value)
            if match is None:
                out.out_of_range += 1
                continue
            number = float(match.group(1))
            low, high = _BOUNDS[metric]
            if not (math.isfinite(number) and low <= number <= high):
                out.out_of_range += 1
                continue
            row[metric] = number
            series.values[metric].append(number)
        if "sm_clock" in row and "sm_clock_max" in row:
            series.ratios.append(row["sm_clock"] / row["sm_clock_max"])
        series.rows += 1
        out.rows += 1
    if mapping is not None:
        out.missing_columns = [k for k in _NUMERIC if k not in mapping]
    return out


_LABELS = {
    "util": "utilization.gpu",
    "mem_used": "memory.used",
    "sm_clock": "clocks.sm",
    "sm_clock_max": "clocks.max.sm",
    "temp": "temperature.gpu",
    "power": "power.draw",
}


def metrics_from(output: NvidiaSmiOutput) -> dict[str, float]:
    metrics: dict[str, float] = {"gpu.samples": float(output.rows)}
    if output.gpus:
        metrics["gpu.count"] = float(len(output.gpus))
    all_util: list[float] = []
    all_temp: list[float] = []
    for key, series in sorted(output.gpus.items(), key=lambda item: int(item[0])):
        prefix = f"gpu.{key}"
        util = series.values["util"]
        if util:
            metrics[f"{prefix}.util_pct.mean"] = round(fmean(util), 2)
            metrics[f"{prefix}.util_pct.max"] = max(util)
            all_util.extend(util)
        if series.values["mem_used"]:
            metrics[f"{prefix}.mem_used_mb.max"] = max(series.values["mem_used"])
        if series.values["sm_clock"]:
            metrics[f"{prefix}.sm_clock_mhz.mean"] = round(fmean(series.values["sm_clock"]), 1)
        if series.ratios:
            metrics[f"{prefix}.sm_clock_ratio.min"] = round(min(series.ratios), 4)
        temp = series.values["temp"]
        if temp:
            metrics[f"{prefix}.temp_c.max"] = max(temp)
            all_temp.extend(temp)
        power = series.values["power"]
        if power:
            metrics[f"{prefix}.power_w.mean"] = round(fmean(power), 2)
            metrics[f"{prefix}.power_w.max"] = max(power)
    if all_util:
        metrics["gpu.util_pct.mean"] = round(fmean(all_util), 2)
    if all_temp:
        metrics["gpu.temp_c.max"] = max(all_temp)
    return metrics


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """nvidia-smi.stdout -> per-GPU and fleet-wide GPU figures."""
    result, text, capped = begin_parse_text(session_dir, OUTPUT, MAX_BYTES, "nvidia-smi output")
    if text is None:
        return result
    output = parse_text(text)
    if output.cut or capped:
        result.data_quality.append("nvidia-smi's last line was incomplete (stopped or cut)")
    if capped:
        result.data_quality.append(f"nvidia-smi output was cut at {MAX_BYTES} bytes")
    if output.malformed_lines:
        result.data_quality.append(f"{output.malformed_lines} malformed lines in nvidia-smi output")
    if output.out_of_range:
        result.data_quality.append(
            f"{output.out_of_range} nvidia-smi values were not numbers or out of range"
        )
    for metric, count in sorted(output.unavailable.items()):
        result.data_quality.append(
            f"nvidia-smi reported {_LABELS[metric]} as unavailable ([N/A] or "
            f"[Not Supported]) in {count} rows: its GPU figures are left out"
        )
    for metric in output.missing_columns:
        result.data_quality.append(f"nvidia-smi output has no {_LABELS[metric]} column")
    if output.rows == 0:
        detail = f": {output.first_error}" if output.first_error else ""
        result.data_quality.append(f"nvidia-smi printed no GPU rows{detail}")
        result.metrics["gpu.samples"] = 0.0
        return result
    result.metrics.update(metrics_from(output))
    return result
