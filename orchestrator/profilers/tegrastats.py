"""tegrastats: NVIDIA Jetson boards' own sampler (RAM, CPU and GPU load, temperatures, power).

JetPack installs ``tegrastats`` (preflight looks for it; it is what makes a board a
Jetson here); fleetprof pushes nothing. It prints one line every ``--interval`` ms until
the runner stops it at the deadline. The line's fields vary by board and JetPack:

    RAM 534/3964MB (lfb 98x4MB) SWAP 5/1982MB (cached 1MB) CPU [16%@204,9%@204,off,off]
    EMC_FREQ 0%@204 GR3D_FREQ 0%@76 PLL@34C CPU@36.5C PMIC@100C POM_5V_IN 1022/1022

Newer boards (Xavier NX, Orin; JetPack 5 and 6) prefix a date, print rails as
``VDD_IN 4067mW/4067mW`` (instant/average), GR3D_FREQ as ``62%@[306,306]`` (one clock
per GPC), and ``-256C`` for a sensor that is off. L4T 28 printed ``cpu [17%,13%]@408``,
``EMC 1%@408`` and ``GR3D 3%@76``. ``PMIC@100C`` is a fixed placeholder on Nano, TX1,
TX2 and Xavier, not a reading: it is kept per zone but left out of ``tegra.temp.max_c``.
Zone and rail names come from the device: they are reduced to ``[a-z0-9_]``, capped in
length and in number.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import TegrastatsSpec
from orchestrator.models import HostFacts, ProfilerPlan
from orchestrator.profilers.base import ProfileResult, ToolChoice, begin_parse_text

NAME = "tegrastats"
TOOL = None  # part of JetPack (L4T)
LAUNCHER = False
LAUNCH_ONLY = False
OUTPUT = "tegrastats.stdout"
MAX_BYTES = 16 * 1024 * 1024
MAX_LINE = 8192
MAX_NAMES = 32  # zones, and rails, kept per output
MAX_NAME_LEN = 32
PLACEHOLDER_ZONES = frozenset({"pmic"})

NOT_INSTALLED = (
    "tegrastats was not found on this host: it is part of JetPack, so this host is "
    "not an NVIDIA Jetson board"
)

_TIME = re.compile(r"^\s*\d{2}-\d{2}-\d{4}\s+\d{2}:\d{2}:\d{2}\s+")
_RAM = re.compile(r"(?<![A-Za-z_])RAM (\d{1,9})/(\d{1,9})MB")
_SWAP = re.compile(r"\bSWAP (\d{1,9})/(\d{1,9})MB")
# CPU [2%@1479,off,...] (L4T 32+) or cpu [17%,13%,29%,5%]@408 (L4T 28).
_CPU = re.compile(r"\b[Cc][Pp][Uu] \[([^\]]{0,1024})\](?:@(\d{1,6}))?")
_CORE = re.compile(r"^(\d{1,3})%(?:@(\d{1,6}))?$")
_EMC = re.compile(r"\bEMC(?:_FREQ)? (\d{1,3})%(?:@(\d{1,6}))?")
_GR3D = re.compile(r"\bGR3D(?:_FREQ)? (\d{1,3})%(?:@(\d{1,6}|\[[\d,]{0,64}\]))?")
_TEMP = re.compile(r"(?:(?<=\s)|^)([A-Za-z][A-Za-z0-9_-]{0,63})@(-?\d{1,4}(?:\.\d{1,4})?)C(?=\s|$)")
# VDD_IN 3456mW/3456mW (JetPack 5+), POM_5V_IN 1234/1234 and GPU 0/0 (older).
_RAIL = re.compile(
    r"(?:(?<=\s)|^)([A-Za-z][A-Za-z0-9_]{0,63}) (\d{1,7})(?:mW)?/(\d{1,7})(?:mW)?(?=\s|$)"
)
_NOT_RAILS = frozenset({"nc"})  # an INA3221 channel that is not connected


def skip_reason(facts: HostFacts) -> str | None:
    if not facts.tools.get(NAME):
        return NOT_INSTALLED
    return None


def interval_ms(interval_s: float) -> int:
    return max(1, int(interval_s * 1000))


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    spec = campaign.profilers.tegrastats or TegrastatsSpec()
    reason = skip_reason(facts)
    if reason is not None:
        return ProfilerPlan.skipped(NAME, reason, [OUTPUT], MAX_BYTES)
    argv = [facts.tools[NAME], "--interval", str(interval_ms(spec.interval_s))]
    return ProfilerPlan.planned(NAME, argv, [OUTPUT], MAX_BYTES)


# -- parsing -------------------------------------------------------------------------------


@dataclass
class Sample:
    ram_used_mb: float
    ram_total_mb: float
    swap_used_mb: float | None = None
    cpu_loads: list[float] = field(default_factory=list)  # online cores only
    cpu_mhz: list[float] = field(default_factory=list)
    cores_off: int = 0
    emc_load_pct: float | None = None
    gpu_load_pct: float | None = None
    gpu_mhz: float | None = None
    temps_c: dict[str, float] = field(default_factory=dict)
    rails_mw: dict[str, float] = field(default_factory=dict)  # instantaneous


@dataclass
class TegrastatsOutput:
    samples: list[Sample] = field(default_factory=list)
    malformed_lines: int = 0
    cut: bool = False
    dropped_names: int = 0  # zones or rails past MAX_NAMES
    sensors_off: set[str] = field(default_factory=set)  # zones that read -256C or similar


def clean_name(raw: str) -> str | None:
    """A device-given zone or rail name -> ``[a-z0-9_]``, at most MAX_NAME_LEN characters."""
    name = re.sub(r"[^a-z0-9_]", "_", raw.lower()).strip("_")[:MAX_NAME_LEN]
    return name or None


def _cpu(sample: Sample, body: str, shared_mhz: str | None) -> bool:
    for entry in body.split(","):
        entry = entry.strip()
        if entry == "off":
            sample.cores_off += 1
            continue
        match = _CORE.match(entry)
        if match is None:
            return False
        load = float(match.group(1))
        if load > 100:
            return False
        sample.cpu_loads.append(load)
        mhz = match.group(2) or shared_mhz
        if mhz is not None:
            sample.cpu_mhz.append(float(mhz))
    return True


def parse_line(line: str, out: TegrastatsOutput, zones: set[str], rails: set[str]) -> None:
    body = _TIME.sub("", line, count=1)
    ram = _RAM.search(body)
    if ram is None:
        out.malformed_lines += 1
        return
    used, total = float(ram.group(1)), float(ram.group(2))
    if total <= 0 or used > total:
        out.malformed_lines += 1
        return
    sample = Sample(ram_used_mb=used, ram_total_mb=total)
    swap = _SWAP.search(body)
    if swap is not None and float(swap.group(1)) <= float(swap.group(2)):
        sample.swap_used_mb = float(swap.group(1))
    cpu = _CPU.search(body)
    if cpu is not None and not _cpu(sample, cpu.group(1), cpu.group(2)):
        sample.cpu_loads, sample.cpu_mhz, sample.cores_off = [], [], 0
        out.malformed_lines += 1
    emc = _EMC.search(body)
    if emc is not None and float(emc.group(1)) <= 100:
        sample.emc_load_pct = float(emc.group(1))
    gr3d = _GR3D.search(body)
    if gr3d is not None and float(gr3d.group(1)) <= 100:
        sample.gpu_load_pct = float(gr3d.group(1))
        clock = gr3d.group(2)
        if clock:
            clocks = [float(c) for c in clock.strip("[]").split(",") if c.strip().isdigit()]
            # Orin prints one clock per GPC, [0,0] while the GPU is idle and gated.
            if clocks and max(clocks) > 0:
                sample.gpu_mhz = max(clocks)
    for raw_zone, raw_value in _TEMP.findall(body):
        zone = clean_name(raw_zone)
        if zone is None:
            continue
        value = float(raw_value)
        if not (-40.0 < value < 150.0) or not math.isfinite(value):
            out.sensors_off.add(zone)  # -256C: a sensor that is powered off
            continue
        if zone not in zones:
            if len(zones) >= MAX_NAMES:
                out.dropped_names += 1
                continue
            zones.add(zone)
        sample.temps_c[zone] = value
    for raw_rail, instant, _average in _RAIL.findall(body):
        rail = clean_name(raw_rail)
        if rail is None or rail in _NOT_RAILS or rail in {"ram", "swap"}:
            continue
        if rail not in rails:
            if len(rails) >= MAX_NAMES:
                out.dropped_names += 1
                continue
            rails.add(rail)
        sample.rails_mw[rail] = float(instant)
    out.samples.append(sample)


def parse_text(text: str) -> TegrastatsOutput:
    """tegrastats output -> samples. Never raises."""
    out = TegrastatsOutput()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        lines.pop()  # cut mid-line: the last line may end inside a number
        out.cut = True
    zones: set[str] = set()
    rails: set[str] = set()
    for raw in lines:
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            out.malformed_lines += 1
            continue
        parse_line(line, out, zones, rails)
    return out


def metrics_from(output: TegrastatsOutput) -> dict[str, float]:
    samples = output.samples
    metrics: dict[str, float] = {"tegra.samples": float(len(samples))}
    if not samples:
        return metrics
    metrics["tegra.ram_used_mb.max"] = max(s.ram_used_mb for s in samples)
    metrics["tegra.ram_total_mb"] = max(s.ram_total_mb for s in samples)
    swap = [s.swap_used_mb for s in samples if s.swap_used_mb is not None]
    if swap:
        metrics["tegra.swap_used_mb.max"] = max(swap)
    # Per sample, the mean over the cores that were online; then over samples.
    cpu = [fmean(s.cpu_loads) for s in samples if s.cpu_loads]
    if cpu:
        metrics["tegra.cpu_load_pct.mean"] = round(fmean(cpu), 2)
        metrics["tegra.cpu_core_load_pct.max"] = max(
            max(s.cpu_loads) for s in samples if s.cpu_loads
        )
    mhz = [fmean(s.cpu_mhz) for s in samples if s.cpu_mhz]
    if mhz:
        metrics["tegra.cpu_freq_mhz.mean"] = round(fmean(mhz), 1)
    emc = [s.emc_load_pct for s in samples if s.emc_load_pct is not None]
    if emc:
        metrics["tegra.emc_load_pct.mean"] = round(fmean(emc), 2)
    gpu = [s.gpu_load_pct for s in samples if s.gpu_load_pct is not None]
    if gpu:
        metrics["tegra.gpu_load_pct.mean"] = round(fmean(gpu), 2)
        metrics["tegra.gpu_load_pct.max"] = max(gpu)
    gpu_mhz = [s.gpu_mhz for s in samples if s.gpu_mhz is not None]
    if gpu_mhz:
        metrics["tegra.gpu_freq_mhz.mean"] = round(fmean(gpu_mhz), 1)
    zone_max: dict[str, float] = {}
    for sample in samples:
        for zone, value in sample.temps_c.items():
            zone_max[zone] = max(value, zone_max.get(zone, value))
    for zone, value in sorted(zone_max.items()):
        metrics[f"tegra.temp.{zone}.max_c"] = value
    real = [v for z, v in zone_max.items() if z not in PLACEHOLDER_ZONES]
    if real:
        metrics["tegra.temp.max_c"] = max(real)
    rail_values: dict[str, list[float]] = {}
    for sample in samples:
        for rail, value in sample.rails_mw.items():
            rail_values.setdefault(rail, []).append(value)
    for rail, values in sorted(rail_values.items()):
        metrics[f"tegra.power.{rail}.mean_mw"] = round(fmean(values), 1)
    return metrics


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """tegrastats.stdout -> board-wide RAM, CPU, GPU, temperature and power figures."""
    result, text, capped = begin_parse_text(session_dir, OUTPUT, MAX_BYTES, "tegrastats output")
    if text is None:
        return result
    output = parse_text(text)
    if output.cut or capped:
        result.data_quality.append("tegrastats' last line was incomplete (stopped or cut)")
    if capped:
        result.data_quality.append(f"tegrastats output was cut at {MAX_BYTES} bytes")
    if output.malformed_lines:
        result.data_quality.append(f"{output.malformed_lines} malformed lines in tegrastats output")
    if output.dropped_names:
        result.data_quality.append(
            f"tegrastats printed more than {MAX_NAMES} temperature zones or power rails; "
            "the rest were left out"
        )
    if output.sensors_off:
        names = ", ".join(sorted(output.sensors_off)[:MAX_NAMES])
        result.data_quality.append(f"tegrastats temperature sensors off or invalid: {names}")
    if output.samples and all(s.gpu_load_pct is None for s in output.samples):
        result.data_quality.append(
            "tegrastats printed no GR3D (GPU) load: older JetPack releases show it only to root"
        )
    result.metrics.update(metrics_from(output))
    if not output.samples:
        result.data_quality.append("tegrastats printed no samples")
    return result
