"""ncu (Nsight Compute): hardware metrics of the CUDA kernels a launched program runs.

Nsight Compute launches the program (it cannot attach), replays each matching kernel
launch to read its counters, up to ``launch_count`` launches, and prints one CSV table
(``--csv``, the default ``details`` page: one row per kernel launch and metric) into
``ncu.csv`` (``--log-file``), after its own ``==PROF==`` lines. Its counters need
permission: unless the session runs as root, the driver must allow profiling by all users
(else ncu fails with ``ERR_NVGPUCTRPERM``); preflight reads that setting.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import NcuSpec
from orchestrator.models import WORKDIR_ARG, HostFacts, ProfilerPlan
from orchestrator.profilers.base import (
    ProfileResult,
    ToolChoice,
    begin_parse_text,
    launcher_taken,
    needs_launch,
    no_nvidia_driver,
)
from orchestrator.profilers.nsys import number

NAME = "ncu"
# Starts the program itself (it cannot attach): the runner hands it the launch.
LAUNCHER = True
LAUNCH_ONLY = True
TOOL = None  # Nsight Compute is installed on the device by its operator; nothing is pushed
OUTPUT = "ncu.csv"
MAX_BYTES = 64 * 1024 * 1024
MAX_METRICS = 200  # `--set full` has hundreds: the report keeps the first this many
MAX_KERNEL_ROWS = 50

NOT_LAUNCH_NCU = needs_launch("Nsight Compute")
NOT_INSTALLED = (
    "ncu (the Nsight Compute CLI) was not found on this host: install Nsight Compute "
    "(or a CUDA toolkit that ships it) on the device"
)
NO_DRIVER = no_nvidia_driver("Nsight Compute has no GPU to read counters from")
COUNTERS_ADMIN_ONLY = (
    "the NVIDIA driver lets only root read GPU performance counters "
    "(RmProfilingAdminOnly=1) and the session does not run as root: ncu would fail with "
    "ERR_NVGPUCTRPERM. Connect as root, or allow profiling by all users: put "
    "`options nvidia NVreg_RestrictProfilingToAdminUsers=0` in /etc/modprobe.d/ and "
    "reload the nvidia module (or reboot)"
)
PERMISSION_NOTE = (
    "ncu said ERR_NVGPUCTRPERM: no permission to read GPU performance counters; run as "
    "root or set `options nvidia NVreg_RestrictProfilingToAdminUsers=0`"
)


def skip_reason(campaign: Campaign, facts: HostFacts) -> str | None:
    """Why this host cannot run ncu for this campaign, decided before anything runs."""
    if campaign.target.mode != "launch" or campaign.target.launch is None:
        return NOT_LAUNCH_NCU
    if not facts.tools.get(NAME):
        return NOT_INSTALLED
    if not facts.gpu.get("nvidia_driver"):
        return NO_DRIVER
    if facts.gpu.get("gpu_counters_admin_only") and not facts.is_root:
        return COUNTERS_ADMIN_ONLY
    return launcher_taken(campaign, NAME)


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def _options(spec: NcuSpec) -> list[str]:
    # It starts in the program's directory (target.launch.cwd): the workdir's path.
    options = ["--csv", "--log-file", f"{WORKDIR_ARG}/{OUTPUT}", "--target-processes", "all"]
    options += ["--launch-count", str(spec.launch_count)]
    if spec.kernel is not None:
        options += ["--kernel-name", f"regex:{spec.kernel}"]
    if spec.metrics:
        options += ["--metrics", ",".join(spec.metrics)]
    if spec.set is not None:
        options += ["--set", spec.set]
    return options


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    spec = campaign.profilers.ncu or NcuSpec()
    reason = skip_reason(campaign, facts)
    launch = campaign.target.launch
    if reason is not None or launch is None:
        return ProfilerPlan.skipped(NAME, reason or NOT_LAUNCH_NCU, [OUTPUT], MAX_BYTES)
    return ProfilerPlan(
        name=NAME,
        status="planned",
        reason=None,
        argv=[],
        launch_argv=[facts.tools[NAME], *_options(spec), "--", *launch.command],
        outputs=[OUTPUT],
        max_bytes=MAX_BYTES,
    )


# -- parsing -------------------------------------------------------------------------------

# unit -> (unit it is normalized to, factor)
_UNITS: dict[str, tuple[str, float]] = {}
for _unit, _factor in (("nsecond", 1.0), ("usecond", 1e3), ("msecond", 1e6), ("second", 1e9)):
    _UNITS[_unit] = ("ns", _factor)
for _prefix, _factor in (("", 1.0), ("K", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12)):
    _UNITS[f"{_prefix}byte"] = ("byte", _factor)
    _UNITS[f"{_prefix}byte/second"] = ("byte/s", _factor)
    _UNITS[f"{_prefix}hz".lower()] = ("hz", _factor)
for _unit, _factor in (("cycle/nsecond", 1e9), ("cycle/usecond", 1e6), ("cycle/msecond", 1e3)):
    _UNITS[_unit] = ("hz", _factor)
_UNITS["cycle/second"] = ("hz", 1.0)
# Newer Nsight Compute releases (and its UI's exports) print short units: ns, us, ms,
# B, KB, MB, GB, GB/s. Lookups fall back to lower case, so these cover Ghz/GHz too.
for _unit, _factor in (("ns", 1.0), ("us", 1e3), ("ms", 1e6), ("s", 1e9)):
    _UNITS[_unit] = ("ns", _factor)
for _prefix, _factor in (("", 1.0), ("k", 1e3), ("m", 1e6), ("g", 1e9), ("t", 1e12)):
    _UNITS[f"{_prefix}b"] = ("byte", _factor)
    _UNITS[f"{_prefix}b/s"] = ("byte/s", _factor)
    _UNITS[f"{_prefix}byte/s"] = ("byte/s", _factor)


def normalize(value: float, unit: str) -> tuple[float, str]:
    """A value in ncu's unit -> (value, unit) in ns, byte, byte/s or hz where obvious."""
    known = _UNITS.get(unit) or _UNITS.get(unit.lower())
    if known is None:
        return value, unit
    return value * known[1], known[0]


def metric_key(name: str) -> str:
    # ncu's own names (gpu__time_duration.sum) keep their double underscores.
    return re.sub(r"[^a-z0-9_.]+", "_", name.strip().lower()).strip("_.") or "unnamed"


@dataclass
class Launch:
    id: str
    kernel: str
    values: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)


@dataclass
class NcuOutput:
    launches: list[Launch] = field(default_factory=list)
    page: str | None = None  # details | raw
    malformed_rows: int = 0
    not_numbers: int = 0  # n/a and other values that are not numbers
    permission_error: bool = False
    errors: list[str] = field(default_factory=list)  # ==ERROR== lines
    cut: bool = False


def parse_text(text: str) -> NcuOutput:
    """ncu's log (``==PROF==`` lines, then the CSV of the details or raw page) -> values
    per kernel launch, keyed by (section, metric). Never raises."""
    out = NcuOutput()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1] if "\n" in text else ""
        out.cut = True
    table: list[str] = []
    for line in text.splitlines():
        if "ERR_NVGPUCTRPERM" in line:
            out.permission_error = True
        if line.startswith("=="):
            if line.startswith("==ERROR=="):
                out.errors.append(line[len("==ERROR==") :].strip())
            continue
        if line.startswith('"') or table:
            table.append(line)
    rows = [row for row in csv.reader(table) if row]
    if not rows:
        return out
    header = [cell.strip() for cell in rows[0]]
    if "Metric Name" in header and "Metric Value" in header:
        out.page = "details"
        _details(out, header, rows[1:])
    elif "Kernel Name" in header:
        out.page = "raw"
        _raw(out, header, rows[1:])
    return out


def _launch(out: NcuOutput, by_id: dict[str, Launch], launch_id: str, kernel: str) -> Launch:
    launch = by_id.get(launch_id)
    if launch is None:
        launch = by_id[launch_id] = Launch(id=launch_id, kernel=kernel)
        out.launches.append(launch)
    return launch


def _details(out: NcuOutput, header: list[str], rows: list[list[str]]) -> None:
    at = {name: header.index(name) for name in header}
    need = ("ID", "Kernel Name", "Metric Name", "Metric Value")
    if any(name not in at for name in need):
        out.malformed_rows += len(rows)
        return
    section_at, unit_at = at.get("Section Name"), at.get("Metric Unit")
    by_id: dict[str, Launch] = {}
    for row in rows:
        if len(row) < len(header):
            out.malformed_rows += 1
            continue
        name = row[at["Metric Name"]].strip()
        if not name:  # a rule's advice row, not a metric
            continue
        launch = _launch(out, by_id, row[at["ID"]].strip(), row[at["Kernel Name"]].strip())
        value = number(row[at["Metric Value"]])
        if value is None:
            out.not_numbers += 1
            continue
        section = row[section_at].strip() if section_at is not None else ""
        unit = row[unit_at].strip() if unit_at is not None else ""
        launch.values[(section, name)] = normalize(value, unit)


def _raw(out: NcuOutput, header: list[str], rows: list[list[str]]) -> None:
    """The raw page: one row per launch, a column per metric (``a__b.sum``), and a second
    header row with the units."""
    if "ID" not in header:
        out.malformed_rows += len(rows)
        return
    id_at, kernel_at = header.index("ID"), header.index("Kernel Name")
    metrics = [i for i, name in enumerate(header) if "__" in name]
    units: list[str] = [""] * len(header)
    if rows and not rows[0][id_at].strip():
        units = [cell.strip() for cell in rows[0]] + [""] * len(header)
        rows = rows[1:]
    by_id: dict[str, Launch] = {}
    for row in rows:
        if len(row) < len(header):
            out.malformed_rows += 1
            continue
        launch = _launch(out, by_id, row[id_at].strip(), row[kernel_at].strip())
        for index in metrics:
            value = number(row[index])
            if value is None:
                out.not_numbers += 1
                continue
            launch.values[("", header[index])] = normalize(value, units[index])


def _keys(launches: list[Launch]) -> dict[tuple[str, str], str]:
    """(section, metric) -> metric key: the metric's name, with its section's where two
    sections report a metric of the same name (ncu's details page does)."""
    sections: dict[str, set[str]] = defaultdict(set)
    for launch in launches:
        for section, name in launch.values:
            sections[name].add(section)
    keys = {}
    for launch in launches:
        for section, name in launch.values:
            if len(sections[name]) > 1 and section:
                keys[(section, name)] = f"{metric_key(section)}.{metric_key(name)}"
            else:
                keys[(section, name)] = metric_key(name)
    return keys


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """ncu.csv -> kernels profiled, and per metric its mean over the profiled launches."""
    result, text, capped = begin_parse_text(session_dir, OUTPUT, MAX_BYTES, "ncu output")
    if text is None:
        return result
    output = parse_text(text)
    if output.permission_error:
        result.data_quality.append(PERMISSION_NOTE)
    elif output.errors:
        result.data_quality.append("ncu reported: " + "; ".join(output.errors[:3]))
    if capped or output.cut:
        result.data_quality.append("ncu output was cut: its last rows are missing")
    if output.malformed_rows:
        result.data_quality.append(f"{output.malformed_rows} malformed rows in ncu output")
    result.metrics["ncu.kernels.profiled"] = float(len(output.launches))
    if not output.launches:
        if output.page is None and not output.permission_error:
            result.data_quality.append("ncu printed no metric table (no kernel matched?)")
        return result
    keys = _keys(output.launches)
    values: dict[str, list[float]] = defaultdict(list)
    units: dict[str, set[str]] = defaultdict(set)
    for launch in output.launches:
        for where, (value, unit) in launch.values.items():
            values[keys[where]].append(value)
            units[keys[where]].add(unit)
    mixed = sorted(key for key, seen in units.items() if len(seen) > 1)
    if mixed:
        result.data_quality.append(
            "left out, reported in units that do not convert: " + ", ".join(mixed[:10])
        )
    kept = [key for key in sorted(values) if key not in mixed]
    if len(kept) > MAX_METRICS:
        result.data_quality.append(
            f"ncu reported {len(kept)} metrics; the first {MAX_METRICS} by name are kept"
        )
    for key in kept[:MAX_METRICS]:
        series = values[key]
        mean = sum(series) / len(series)
        if math.isfinite(mean):
            result.metrics[f"ncu.{key}.mean"] = round(mean, 6)
    result.tables["ncu_kernels"] = [
        {
            "id": launch.id,
            "kernel": launch.kernel,
            "metrics": {keys[where]: value for where, (value, _unit) in launch.values.items()},
            "units": {keys[where]: unit for where, (_value, unit) in launch.values.items()},
        }
        for launch in output.launches[:MAX_KERNEL_ROWS]
    ]
    return result
