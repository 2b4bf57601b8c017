"""nsys (Nsight Systems): where a CUDA program's GPU and CUDA API time goes.

Nsight Systems launches the program; it cannot attach to a running process, so it runs
only for ``target: launch``. ``nsys profile --duration`` ends the collection by itself at
the deadline (and sends the program SIGTERM). After it stopped, the runner runs
``nsys stats`` on the device (``post_argv``) to turn the report into small CSV summaries,
so the controller never needs Nsight itself and the large report stays on the device
unless ``keep_report`` asks for it.

``nsys stats --output PREFIX`` writes ``PREFIX_<report>.csv``. The summary reports were
renamed in Nsight Systems 2023 (``gpukernsum`` -> ``cuda_gpu_kern_sum``, ``cudaapisum`` ->
``cuda_api_sum``, ``osrtsum`` -> ``osrt_sum``, ``nvtxsum`` -> ``nvtx_sum``): each report is
asked for by its new name first, and by its old name only when that failed (the runner's
``post_fallback``), so one generation's unknown name is expected and is no problem. Reports
before 2021.4 were ``.qdrep`` files; those versions are not supported.

``pytorch:`` adds ``--pytorch=MODE`` (PyTorch's autograd NVTX ranges) where the device's
nsys knows it: the device asks ``nsys profile --help`` before T0 and drops the flag where
the help does not list it (``options["flag_check"]``); the parser then says so.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import NsysSpec
from orchestrator.models import WORKDIR_ARG, HostFacts, ProfilerPlan
from orchestrator.profilers.base import (
    ProfileResult,
    ToolChoice,
    launcher_taken,
    needs_launch,
    no_nvidia_driver,
    read_capped,
)
from orchestrator.values import visible

NAME = "nsys"
# Starts the program itself (it cannot attach): the runner hands it the launch.
LAUNCHER = True
LAUNCH_ONLY = True
TOOL = None  # Nsight Systems is installed on the device by its operator; nothing is pushed
REPORT = "nsys-report"  # nsys profile --output: it adds .nsys-rep
REPORT_FILE = f"{REPORT}.nsys-rep"
SQLITE_FILE = f"{REPORT}.sqlite"  # nsys stats exports the report to SQLite next to it
STATS_PREFIX = "nsys-stats"
CSV_MAX_BYTES = 16 * 1024 * 1024
REPORT_MAX_BYTES = 512 * 1024 * 1024  # keep_report: a cut report would be useless
TOP_ROWS = 10
NAME_MAX = 1000  # characters of a kernel, call or range name kept (C++ templates run long)

# kind -> (report name since Nsight Systems 2023, the name before)
REPORTS = {
    "gpu_kernels": ("cuda_gpu_kern_sum", "gpukernsum"),
    "cuda_api": ("cuda_api_sum", "cudaapisum"),
    "osrt": ("osrt_sum", "osrtsum"),
    # NVTX ranges (the program's own, or PyTorch's with `pytorch:`): push/pop and start/end
    # ranges in one summary with a Style column; `nvtxsum` before 2023 (no Style column).
    "nvtx": ("nvtx_sum", "nvtxsum"),
}
NVTX_TABLE = "nvtx_ranges"  # ProfileResult.tables key of the NVTX range summary

NOT_LAUNCH = needs_launch("Nsight Systems")
NOT_INSTALLED = (
    "nsys (the Nsight Systems CLI) was not found on this host: install Nsight Systems "
    "(or a CUDA toolkit that ships it) on the device"
)
NO_DRIVER = no_nvidia_driver("Nsight Systems has no CUDA activity to trace")
PYTORCH_OPTION = "--pytorch"  # nsys profile's; its help lists it where the version has it
PYTORCH_DROPPED = (
    "nsys ran without {flag}: the device's `nsys profile --help` does not list "
    f"{PYTORCH_OPTION} (an Nsight Systems older than the option, or its help failed; the "
    "runner log says which), so PyTorch's autograd NVTX ranges are missing"
)


def stats_file(report: str) -> str:
    """What ``nsys stats --report REPORT --output PREFIX --format csv`` writes."""
    return f"{STATS_PREFIX}_{report}.csv"


OUTPUT = stats_file(REPORTS["gpu_kernels"][0])  # what `fleetprof inspect` feeds the parser
CSV_OUTPUTS = [stats_file(name) for names in REPORTS.values() for name in names]


def skip_reason(campaign: Campaign, facts: HostFacts) -> str | None:
    if campaign.target.mode != "launch" or campaign.target.launch is None:
        return NOT_LAUNCH
    if not facts.tools.get(NAME):
        return NOT_INSTALLED
    if not facts.gpu.get("nvidia_driver"):
        return NO_DRIVER
    return launcher_taken(campaign, NAME)


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def _stats_argv(nsys: str, report: str) -> list[str]:
    return [
        nsys,
        "stats",
        "--report",
        report,
        "--format",
        "csv",
        "--output",
        STATS_PREFIX,
        REPORT_FILE,
    ]


def post_steps(nsys: str) -> tuple[list[list[str]], list[int]]:
    """``nsys stats`` per report: the new name, then (only when it failed) the old one."""
    argv: list[list[str]] = []
    fallback: list[int] = []
    for new, old in REPORTS.values():
        argv.append(_stats_argv(nsys, new))
        fallback.append(len(argv))
        argv.append(_stats_argv(nsys, old))
    return argv, fallback


def pytorch_flag(spec: NsysSpec) -> str | None:
    """``--pytorch=MODE`` for the campaign's ``pytorch`` key, None for ``none``."""
    return None if spec.pytorch == "none" else f"{PYTORCH_OPTION}={spec.pytorch}"


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    spec = campaign.profilers.nsys or NsysSpec()
    outputs = list(CSV_OUTPUTS) + ([REPORT_FILE] if spec.keep_report else [])
    max_bytes = REPORT_MAX_BYTES if spec.keep_report else CSV_MAX_BYTES
    reason = skip_reason(campaign, facts)
    launch = campaign.target.launch
    if reason is not None or launch is None:
        return ProfilerPlan.skipped(NAME, reason or NOT_LAUNCH, outputs, max_bytes)
    nsys = facts.tools[NAME]
    post, fallback = post_steps(nsys)
    flag = pytorch_flag(spec)
    # PyTorch's ranges are NVTX ranges: traced even where the campaign's list left nvtx out.
    trace = list(spec.trace) + (["nvtx"] if flag and "nvtx" not in spec.trace else [])
    # The device asks its nsys's help before T0 and drops the flag where it is unknown
    # (fleetprof_device/flag_check.py): an nsys without it would stop on the unknown option.
    check = {"flag": flag, "help_argv": [nsys, "profile", "--help"], "needle": PYTORCH_OPTION}
    return ProfilerPlan(
        name=NAME,
        status="planned",
        reason=None,
        argv=[],
        launch_argv=[
            nsys,
            "profile",
            "--output",
            # It starts in the program's directory (target.launch.cwd): the workdir's path.
            f"{WORKDIR_ARG}/{REPORT}",
            "--force-overwrite",
            "true",
            "--trace",
            ",".join(trace),
            *([flag] if flag else []),
            "--duration",
            str(max(1, math.ceil(campaign.duration_s))),
            "--",
            *launch.command,
        ],
        outputs=outputs,
        max_bytes=max_bytes,
        options={
            "post_fallback": fallback,
            "optional_outputs": list(CSV_OUTPUTS),
            "discard": [SQLITE_FILE] + ([] if spec.keep_report else [REPORT_FILE]),
            **({"flag_check": check} if flag else {}),
        },
        post_argv=post,
    )


# -- parsing -------------------------------------------------------------------------------

_UNIT_RE = re.compile(r"\((ns|us|\u00b5s|ms|s)\)\s*$")
_UNIT_NS = {"ns": 1.0, "us": 1e3, "\u00b5s": 1e3, "ms": 1e6, "s": 1e9}


@dataclass
class Row:
    name: str
    total_ns: float
    count: int | None
    avg_ns: float | None
    med_ns: float | None
    min_ns: float | None = None
    max_ns: float | None = None
    style: str | None = None  # NVTX ranges: PushPop or StartEnd


@dataclass
class Summary:
    rows: list[Row] = field(default_factory=list)
    malformed_rows: int = 0
    missing: list[str] = field(default_factory=list)  # required columns not found
    cut: bool = False  # the file did not end with a line end: its last line was dropped
    header: bool = False


def _key(column: str) -> str:
    return re.sub(r"\s+", "", column).lower()


def _column(header: list[str], *names: str) -> tuple[int | None, float]:
    """The index of the first column whose name (spaces and unit aside) is one of names,
    and its unit in ns (nsys's times are ns; an unlabelled 'Average' is ns too)."""
    wanted = {_key(name) for name in names}
    for index, column in enumerate(header):
        unit = _UNIT_RE.search(column.strip())
        bare = _key(_UNIT_RE.sub("", column.strip()))
        if bare in wanted:
            return index, _UNIT_NS[unit.group(1)] if unit else 1.0
    return None, 1.0


def number(text: str) -> float | None:
    """'1,234.5', '12.5%', '' -> float or None (thousands separators, quoted CSV cells)."""
    cleaned = text.strip().rstrip("%").replace(",", "").strip()
    if not cleaned:
        return None
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def parse_summary(text: str) -> Summary:
    """One ``nsys stats --format csv`` summary (kernels, CUDA API, OS runtime, NVTX) -> rows.

    Whatever nsys prints before the table (a title, "Processing ..." lines, a blank line)
    is skipped up to the header; both the 2023+ columns ("Time (%)", "Avg (ns)", "Med (ns)")
    and the older ones ("Time(%)", "Average") are read, and NVTX's "Range" and "Style".
    Names are cut at NAME_MAX characters, their control characters made visible. Never raises.
    """
    out = Summary()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1] if "\n" in text else ""
        out.cut = True
    lines = text.splitlines()
    start = None
    header: list[str] = []
    for index, line in enumerate(lines):
        cells = next(csv.reader([line]), [])
        if any(_key(_UNIT_RE.sub("", c.strip())) == "totaltime" for c in cells):
            start, header = index, cells
            break
    if start is None:
        return out
    out.header = True
    total_at, total_unit = _column(header, "Total Time")
    name_at, _ = _column(header, "Name", "Range")  # NVTX summaries name their rows "Range"
    count_at, _ = _column(header, "Instances", "Num Calls", "Calls", "Count")
    avg_at, avg_unit = _column(header, "Avg", "Average")
    med_at, med_unit = _column(header, "Med", "Median")
    min_at, min_unit = _column(header, "Min", "Minimum")
    max_at, max_unit = _column(header, "Max", "Maximum")
    style_at, _ = _column(header, "Style")
    if total_at is None:
        out.missing.append("Total Time")
    if name_at is None:
        out.missing.append("Name")
    if total_at is None or name_at is None:
        return out
    for cells in csv.reader(lines[start + 1 :]):
        if not cells or not any(c.strip() for c in cells):
            continue
        if max(total_at, name_at) >= len(cells):
            out.malformed_rows += 1
            continue
        total = number(cells[total_at])
        name = cells[name_at].strip()
        if total is None or not name:
            out.malformed_rows += 1
            continue

        def cell(at: int | None, unit: float, cells: list[str] = cells) -> float | None:
            value = number(cells[at]) if at is not None and at < len(cells) else None
            return value * unit if value is not None else None

        count = cell(count_at, 1.0)
        style = cells[style_at].strip() if style_at is not None and style_at < len(cells) else ""
        out.rows.append(
            Row(
                name=visible(name[:NAME_MAX]),
                total_ns=total * total_unit,
                count=int(count) if count is not None else None,
                avg_ns=cell(avg_at, avg_unit),
                med_ns=cell(med_at, med_unit),
                min_ns=cell(min_at, min_unit),
                max_ns=cell(max_at, max_unit),
                style=visible(style[:40]) or None,
            )
        )
    out.rows.sort(key=lambda row: row.total_ns, reverse=True)
    return out


def _table(rows: list[Row], total_ns: float) -> list[dict[str, Any]]:
    return [
        {
            "name": row.name,
            "total_ms": round(row.total_ns / 1e6, 6),
            "count": row.count,
            "avg_us": round(row.avg_ns / 1e3, 3) if row.avg_ns is not None else None,
            "med_us": round(row.med_ns / 1e3, 3) if row.med_ns is not None else None,
            "pct": round(100.0 * row.total_ns / total_ns, 2) if total_ns else None,
        }
        for row in rows[:TOP_ROWS]
    ]


def _summary(session_dir: Path, kind: str, result: ProfileResult) -> Summary | None:
    """The kind's CSV under its new name, else its old one; notes on what was wrong."""
    for report in REPORTS[kind]:
        path = session_dir / stats_file(report)
        try:
            if not path.is_file():
                continue
            text, capped = read_capped(path, CSV_MAX_BYTES)
        except OSError as error:
            result.data_quality.append(f"nsys {report} could not be read: {error}")
            return None
        summary = parse_summary(text)
        if capped or summary.cut:
            result.data_quality.append(f"nsys {report} was cut: its last rows are missing")
        if summary.malformed_rows:
            result.data_quality.append(f"{summary.malformed_rows} malformed rows in nsys {report}")
        if summary.missing:
            result.data_quality.append(
                f"nsys {report} lacks the column(s) {', '.join(summary.missing)}"
            )
            return None
        if not summary.header:
            result.data_quality.append(f"nsys {report} holds no table")
            return None
        return summary
    return None


_METRIC_PREFIX = {"gpu_kernels": "gpu_kernel", "cuda_api": "cuda_api", "osrt": "osrt"}
_COUNT_NAME = {"gpu_kernels": "launches", "cuda_api": "calls", "osrt": "calls"}


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """The stats CSVs -> total GPU kernel, CUDA API and OS runtime time, top rows of each.

    Totals are sums over the rows (not nsys's "Time (%)" column, which some versions round
    and name differently); shares are recomputed from them.
    """
    result = ProfileResult()
    flag = pytorch_flag(campaign.profilers.nsys or NsysSpec())
    ran = entry.get("argv")
    if flag and isinstance(ran, list) and ran and flag not in ran:
        result.data_quality.append(PYTORCH_DROPPED.format(flag=flag))
    for kind in _METRIC_PREFIX:
        summary = _summary(session_dir, kind, result)
        if summary is None:
            if kind == "gpu_kernels":
                result.data_quality.append(
                    "no GPU kernel summary: the program launched no CUDA kernel in the "
                    "window, or nsys stats failed (see the manifest's post steps)"
                )
            continue
        prefix = _METRIC_PREFIX[kind]
        total_ns = sum(row.total_ns for row in summary.rows)
        result.metrics[f"nsys.{prefix}_time_ms.total"] = round(total_ns / 1e6, 6)
        counts = [row.count for row in summary.rows if row.count is not None]
        if counts:
            result.metrics[f"nsys.{prefix}.{_COUNT_NAME[kind]}"] = float(sum(counts))
        result.tables[kind] = _table(summary.rows, total_ns)
        if kind == "gpu_kernels":
            result.metrics["nsys.kernels.distinct"] = float(len(summary.rows))
            if summary.rows and total_ns > 0:
                result.metrics["nsys.top_kernel_pct"] = round(
                    100.0 * summary.rows[0].total_ns / total_ns, 2
                )
    nvtx = _summary(session_dir, "nvtx", result)
    if nvtx is not None:
        _nvtx(nvtx, result)
    return result


def _nvtx_table(rows: list[Row], total_ns: float) -> list[dict[str, Any]]:
    def us(value: float | None) -> float | None:
        return round(value / 1e3, 3) if value is not None else None

    return [
        {
            "name": row.name,
            "style": row.style,
            "count": row.count,
            "total_ms": round(row.total_ns / 1e6, 6),
            "avg_us": us(row.avg_ns),
            "med_us": us(row.med_ns),
            "min_us": us(row.min_ns),
            "max_us": us(row.max_ns),
            "pct": round(100.0 * row.total_ns / total_ns, 2) if total_ns else None,
        }
        for row in rows[:TOP_ROWS]
    ]


def _nvtx(summary: Summary, result: ProfileResult) -> None:
    """The NVTX range summary: ranges nest (a step holds its forward and backward), so no
    total time is summed into a metric; shares are of the summed range time, as nsys's own
    "Time (%)" column is."""
    total_ns = sum(row.total_ns for row in summary.rows)
    result.metrics["nsys.nvtx.ranges"] = float(len(summary.rows))
    counts = [row.count for row in summary.rows if row.count is not None]
    if counts:
        result.metrics["nsys.nvtx.instances"] = float(sum(counts))
    if summary.rows and total_ns > 0:
        result.metrics["nsys.nvtx.top_range_pct"] = round(
            100.0 * summary.rows[0].total_ns / total_ns, 2
        )
    result.tables[NVTX_TABLE] = _nvtx_table(summary.rows, total_ns)
