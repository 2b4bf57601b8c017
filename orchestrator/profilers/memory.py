"""memory: the RSS and PSS of the target's process tree over the window, its growth,
likely leaks, and each process's share.

The device runner samples them itself (``builtin: "memory"``): every interval it re-reads
/proc/PID/status (VmRSS, VmSwap) and /proc/PID/smaps_rollup (Pss) of the target and
of every descendant it finds in /proc at that sample (see ``profilers/tree.py``), and
writes one JSON line to ``memory.jsonl``. Its own series, not system.jsonl's, so the
memory profiler runs with or without the system one and each parser reads one file. The
leak rule is in docs/metrics.md.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import MemorySpec
from orchestrator.models import HostFacts, ProfilerPlan
from orchestrator.profilers import tree
from orchestrator.profilers.base import ProfileResult, ToolChoice, begin_parse
from orchestrator.profilers.system import downsample, read_noted, sub
from orchestrator.values import number as finite

NAME = "memory"
TOOL = None
LAUNCHER = False
LAUNCH_ONLY = False
OUTPUT = "memory.jsonl"
INTERVAL_S = 1.0
# About 250 bytes a sample for a target with two children: more than a day at 1 s.
MAX_BYTES = 32 * 1024 * 1024
# Growth counts as steady when the straight line explains this much of the RSS variance...
MIN_R2 = 0.8
# ... over at least this many samples.
MIN_SAMPLES = 5


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    """Planned wherever there is a target process: /proc/PID/status is readable wherever
    the target can be found. A probe target has none."""
    if campaign.target.mode == "probe":
        reason = "memory follows a target process; a probe target has none"
        return ProfilerPlan.skipped(NAME, reason, [OUTPUT], MAX_BYTES)
    return ProfilerPlan.sampler(NAME, OUTPUT, MAX_BYTES, INTERVAL_S)


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """memory.jsonl -> peaks of the whole process tree (the target alone as ``root``), RSS
    growth slope (least squares, MB/min), leak verdict, and the per-process split."""
    result, path = begin_parse(session_dir, OUTPUT)
    if path is None:
        return result
    spec = campaign.profilers.memory or MemorySpec()
    notes = result.data_quality
    series = read_noted(path, MAX_BYTES, NAME, notes)
    records = series.records
    with_tree = tree.has_tree(records)
    rss: list[tuple[float, float]] = []
    pss: list[float] = []
    root_rss: list[float] = []
    procs: list[float] = []
    times: list[float] = []
    columns: dict[str, list[float | None]] = {"rss_mb": [], "pss_mb": []}
    for record in records:
        target = sub(record, "target")
        root_kb = finite(target.get("rss_kb"))
        if root_kb is not None and root_kb >= 0:
            root_rss.append(root_kb / 1024.0)
        if with_tree:
            rss_kb, pss_kb = tree.tree_total(record, "rss_kb"), tree.tree_total(record, "pss_kb")
            count = tree.tree_total(record, "procs")
            if count is not None:
                procs.append(count)
        else:
            rss_kb, pss_kb = root_kb, finite(target.get("pss_kb"))
        rss_mb = rss_kb / 1024.0 if rss_kb is not None and rss_kb >= 0 else None
        pss_mb = pss_kb / 1024.0 if pss_kb is not None and pss_kb >= 0 else None
        times.append(float(record["t"]))
        columns["rss_mb"].append(rss_mb)
        columns["pss_mb"].append(pss_mb)
        if rss_mb is not None:
            rss.append((float(record["t"]), rss_mb))
        if pss_mb is not None:
            pss.append(pss_mb)
    if rss:
        result.series = downsample(NAME, times, columns)
    if not rss:
        notes.append("memory: no RSS sample of the target")
        return result
    metrics = result.metrics
    metrics["memory.rss_peak_mb"] = round(max(v for _, v in rss), 2)
    if root_rss and with_tree:
        metrics["memory.root.rss_peak_mb"] = round(max(root_rss), 2)
    if procs:
        metrics["memory.processes.max"] = max(procs)
    if with_tree:
        result.tables["processes"] = tree.process_split(records)
    if pss:
        metrics["memory.pss_peak_mb"] = round(max(pss), 2)
    else:
        notes.append("memory: the target's PSS is unreadable (no /proc/PID/smaps_rollup access)")
    fit = growth(rss)
    if fit is None:
        notes.append("memory: too few samples over time for a growth slope")
        return result
    slope, r2 = fit
    metrics["memory.rss_slope_mb_per_min"] = round(slope, 3)
    metrics["memory.rss_slope_r2"] = round(r2, 3)
    if len(rss) < MIN_SAMPLES:
        notes.append(f"memory: {len(rss)} samples are too few to judge a leak")
        return result
    fast, suspected = leak_rule(slope, r2, spec.leak_mb_per_min)
    metrics["memory.leak_suspected"] = 1.0 if suspected else 0.0
    if suspected:
        notes.append(
            f"memory: likely leak: RSS grew steadily at {slope:.2f} MB/min "
            f"(r\u00b2 {r2:.2f}; threshold {spec.leak_mb_per_min:g} MB/min)"
        )
    elif fast:
        notes.append(
            f"memory: RSS grew {slope:.2f} MB/min but unsteadily (r\u00b2 {r2:.2f} < {MIN_R2}):"
            " not flagged as a leak"
        )
    return result


def leak_rule(slope: float, r2: float, threshold: float) -> tuple[bool, bool]:
    """(growing faster than ``threshold`` per minute, and steadily: a likely leak). The
    rule of docs/metrics.md, for memory and open descriptors alike; judged only over at
    least MIN_SAMPLES samples."""
    fast = slope > threshold
    return fast, fast and r2 >= MIN_R2


def growth(rss: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(slope in MB/min, r²) of the least-squares line through (minutes, MB), or None."""
    if len(rss) < 2:
        return None
    start = rss[0][0]
    minutes = [(t - start) / 60.0 for t, _ in rss]
    megabytes = [v for _, v in rss]
    try:
        slope, _ = statistics.linear_regression(minutes, megabytes)
    except statistics.StatisticsError:  # every sample at the same time
        return None
    try:
        r2 = statistics.correlation(minutes, megabytes) ** 2
    except statistics.StatisticsError:  # a flat line: no variance to explain
        r2 = 0.0
    return slope, r2
