"""system: the device and the target over the window, sampled by the runner itself.

No tool to push: the device runner reads a handful of /proc and /sys files every interval
(``builtin: "system"``) and writes one JSON object per line to ``system.jsonl``. The series
stays in the run directory; the parser reduces it to scalars for the report. Every name
and unit is listed in docs/metrics.md.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.campaign.profiler_specs import SystemSpec
from orchestrator.models import HostFacts, ProfilerPlan
from orchestrator.profilers import netdev, tree
from orchestrator.profilers.base import ProfileResult, ToolChoice, begin_parse
from orchestrator.values import number as finite

NAME = "system"
TOOL = None
LAUNCHER = False
LAUNCH_ONLY = False
OUTPUT = "system.jsonl"
# About 1 KiB a sample on an 8-core board with a few thermal zones: 9 hours at 1 s.
MAX_BYTES = 32 * 1024 * 1024
MAX_ZONES = 32
ZONE_NAME_MAX = 40
# A core below this share of its maximum frequency runs at reduced frequency ...
REDUCED_RATIO = 0.95
# ... and counts only while it was this busy: an idle core clocked down by its governor
# is saving power, not throttled.
BUSY_CORE_PCT = 50.0
PLAUSIBLE_C = (-55.0, 200.0)
# Points kept per time series in the report: enough for a chart, small for a big fleet.
SERIES_POINTS = 200

_ZONE_RE = re.compile(r"[^A-Za-z0-9_-]+")


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    """Always planned: every Linux device has /proc, and whatever else is missing
    (thermal zones, cpufreq, /proc/PID/io) is left out of the samples, not fatal."""
    spec = campaign.profilers.system or SystemSpec()
    return ProfilerPlan.sampler(NAME, OUTPUT, MAX_BYTES, spec.interval_s)


# --------------------------------------------------------------------------- reading


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


@dataclass
class Series:
    """The samples of one JSONL file, ordered by time, and what had to be skipped."""

    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0
    truncated: bool = False


def read_jsonl(path: Path, max_bytes: int) -> Series:
    """One JSON object per line with a finite ``t``; anything else is counted and skipped.

    Reads at most ``max_bytes`` (device output is untrusted); samples come back sorted by
    time with repeated timestamps dropped.
    """
    series = Series()
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError:
        return series
    if len(data) > max_bytes:
        series.truncated = True
        data = data[:max_bytes]
    by_time: dict[float, dict[str, Any]] = {}
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            series.bad_lines += 1
            continue
        t = finite(record.get("t")) if isinstance(record, dict) else None
        if t is None or t <= 0:
            series.bad_lines += 1
            continue
        by_time.setdefault(t, record)
    series.records = [by_time[t] for t in sorted(by_time)]
    return series


def read_noted(path: Path, max_bytes: int, source: str, notes: list[str]) -> Series:
    """:func:`read_jsonl`, and a note for its malformed lines and for a file cut at its cap
    (``source``: the profiler's name, which starts each note)."""
    series = read_jsonl(path, max_bytes)
    if series.bad_lines:
        notes.append(f"{source}: {series.bad_lines} malformed lines in {path.name} skipped")
    if series.truncated:
        notes.append(f"{source}: {path.name} was cut at its size cap: the series ends early")
    return series


def sub(record: dict[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def points(
    records: Iterable[dict[str, Any]], value: Callable[[dict[str, Any]], Any]
) -> list[tuple[float, float]]:
    """(t, value) for every record whose value is a finite number."""
    found = []
    for record in records:
        number = finite(value(record))
        if number is not None:
            found.append((float(record["t"]), number))
    return found


@dataclass
class Rate:
    per_s: float | None
    backwards: int  # intervals where the counter went down (restart, pid reuse, garbage)
    intervals: list[tuple[float, float]]  # (dt, delta) of the usable intervals


def counter_rate(series: list[tuple[float, float]]) -> Rate:
    """A monotonic counter's rate over the time it was seen.

    Equal to (last - first) / elapsed for a well-behaved counter; an interval in which it
    went backwards is left out (both its time and its change) and counted.
    """
    backwards = 0
    intervals = []
    for (t1, v1), (t2, v2) in itertools.pairwise(series):
        if t2 <= t1:
            continue
        if v2 < v1:
            backwards += 1
            continue
        intervals.append((t2 - t1, v2 - v1))
    elapsed = sum(dt for dt, _ in intervals)
    per_s = sum(dv for _, dv in intervals) / elapsed if elapsed > 0 else None
    return Rate(per_s, backwards, intervals)


def pick_evenly(count: int, limit: int = SERIES_POINTS) -> list[int]:
    """Indices of at most ``limit`` of ``count`` samples, evenly spread, first and last kept."""
    if count <= limit:
        return list(range(count))
    if limit <= 1:
        return [0][:limit]
    return [round(i * (count - 1) / (limit - 1)) for i in range(limit)]


def downsample(
    source: str, times: list[float], columns: dict[str, list[float | None]]
) -> dict[str, list[float | None]]:
    """One source's time axis and its aligned columns as report series (see ProfileResult).

    ``times`` are absolute; the axis becomes seconds from the first sample. Columns with no
    value at all are left out, and so is everything when there is no sample.
    """
    if not times:
        return {}
    keep = pick_evenly(len(times))
    start = times[0]
    out: dict[str, list[float | None]] = {f"{source}.t": [_r(times[i] - start) for i in keep]}
    for name, column in columns.items():
        if any(v is not None for v in column):
            out[f"{source}.{name}"] = [None if (v := column[i]) is None else _r(v) for i in keep]
    return out


def _r(value: float, digits: int = 3) -> float:
    return round(value, digits)


# --------------------------------------------------------------------------- parsing


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """system.jsonl -> scalar metrics (see docs/metrics.md) and data-quality notes."""
    result, path = begin_parse(session_dir, OUTPUT)
    if path is None:
        return result
    series = read_jsonl(path, MAX_BYTES)
    records = series.records
    notes = result.data_quality
    metrics = result.metrics
    if series.bad_lines:
        notes.append(f"system: {series.bad_lines} malformed lines in {OUTPUT} skipped")
    outputs = entry.get("outputs")
    info = outputs.get(OUTPUT) if isinstance(outputs, dict) else None
    if series.truncated or (isinstance(info, dict) and info.get("truncated")):
        notes.append(f"system: {OUTPUT} was cut at its size cap: the series ends early")
    metrics["system.samples"] = float(len(records))
    if not records:
        notes.append("system: no usable sample")
        return result
    if len(records) == 1:
        notes.append("system: a single sample: no CPU % or rates (window shorter than interval?)")
    _sampler_cost(entry, metrics)
    _system_metrics(records, metrics, notes)
    _target_metrics(records, metrics, notes)
    if tree.has_tree(records):
        result.tables["processes"] = tree.process_split(records)
    _thermal_metrics(records, metrics, notes)
    _cpufreq_metrics(records, metrics, notes)
    netdev.net_metrics(records, metrics, notes)
    result.series = system_series(records)
    return result


def system_series(records: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """The charts' view of system.jsonl: whole-system and target values per sample.

    Counter rates are per interval and belong to the interval's end; the first sample, a
    counter that went backwards and an interval without the target have none.
    """
    columns: dict[str, list[float | None]] = {
        name: []
        for name in (
            "cpu_pct",
            "mem.used_pct",
            "target.cpu_pct",
            "target.rss_mb",
            "target.read_bytes_per_s",
            "target.write_bytes_per_s",
            "thermal.max_c",
            "cpufreq.min_ratio",
        )
    }
    previous: dict[str, Any] = {}
    previous_whole: dict[str, Any] = {}
    previous_t: float | None = None
    for record in records:
        t = float(record["t"])
        target = sub(record, "target")
        columns["cpu_pct"].append(_pct(record.get("cpu_pct")))
        mem = sub(record, "mem_mb")
        total_mb, avail_mb = finite(mem.get("total")), finite(mem.get("available"))
        used = None
        if total_mb and total_mb > 0 and avail_mb is not None and 0 <= avail_mb <= total_mb:
            used = 100.0 * (total_mb - avail_mb) / total_mb
        columns["mem.used_pct"].append(used)
        whole = _tree_view(record)  # the process tree's totals where the runner sampled it
        rss = finite(whole.get("rss_kb"))
        columns["target.rss_mb"].append(rss / 1024.0 if rss is not None and rss >= 0 else None)
        same_target = bool(target) and finite(target.get("pid")) == finite(previous.get("pid"))
        dt = t - previous_t if previous_t is not None and same_target else 0.0
        cpu = _interval_rate(whole, previous_whole, "cpu_s", dt)
        columns["target.cpu_pct"].append(None if cpu is None else 100.0 * cpu)
        for key in ("read_bytes", "write_bytes"):
            columns[f"target.{key}_per_s"].append(_interval_rate(target, previous, key, dt))
        temps = [
            c
            for c in (finite(v) for v in sub(record, "thermal_c").values())
            if c is not None and PLAUSIBLE_C[0] <= c <= PLAUSIBLE_C[1]
        ]
        columns["thermal.max_c"].append(max(temps) if temps else None)
        columns["cpufreq.min_ratio"].append(_min_freq_ratio(record.get("cpufreq")))
        previous, previous_t, previous_whole = target, t, whole
    columns.update(netdev.net_columns(records))
    return downsample("system", [float(r["t"]) for r in records], columns)


def _tree_view(record: dict[str, Any]) -> dict[str, Any]:
    """The sample's tree totals (rss_kb, pss_kb, cpu_s), else the target process alone."""
    whole = sub(record, "tree")
    return whole if whole else sub(record, "target")


def _interval_rate(
    now: dict[str, Any], before: dict[str, Any], key: str, dt: float
) -> float | None:
    """A counter's rate between two samples of the same target; None when unknown or
    when it went backwards (dt is 0 when the samples are not of the same target)."""
    end, start = finite(now.get(key)), finite(before.get(key))
    if dt <= 0 or end is None or start is None or end < start:
        return None
    return (end - start) / dt


def _min_freq_ratio(freqs: Any) -> float | None:
    """The lowest cur/max of one sample's cores (max: hardware maximum, else policy)."""
    ratios = []
    for core in freqs if isinstance(freqs, list) else []:
        if not isinstance(core, dict):
            continue
        cur = finite(core.get("cur_khz"))
        hw_max, policy = finite(core.get("max_khz")), finite(core.get("policy_max_khz"))
        top = hw_max if hw_max and hw_max > 0 else policy
        if cur is not None and cur > 0 and top and top > 0 and cur / top <= 1.5:
            ratios.append(cur / top)
    return min(ratios) if ratios else None


def _sampler_cost(entry: dict[str, Any], metrics: dict[str, float]) -> None:
    quality = entry.get("data_quality")
    if not isinstance(quality, dict):
        return
    cpu_s, ran_s = finite(quality.get("sampler_cpu_s")), finite(quality.get("ran_s"))
    if cpu_s is not None and ran_s and ran_s > 0 and cpu_s >= 0:
        metrics["system.sampler_cpu_pct"] = _r(100.0 * cpu_s / ran_s)


def _pct(value: Any) -> float | None:
    number = finite(value)
    return number if number is not None and 0.0 <= number <= 100.0 else None


def _system_metrics(
    records: list[dict[str, Any]], metrics: dict[str, float], notes: list[str]
) -> None:
    total = [v for v in (_pct(r.get("cpu_pct")) for r in records) if v is not None]
    if total:
        metrics["system.cpu.total_pct.mean"] = _r(fmean(total), 2)
        metrics["system.cpu.total_pct.max"] = _r(max(total), 2)
    cores = [
        v
        for r in records
        for v in (_pct(c) for c in sub(r, "cpu_core_pct").values())
        if v is not None
    ]
    if cores:
        metrics["system.cpu.core_pct.max"] = _r(max(cores), 2)
    load1 = [
        v
        for r in records
        if isinstance(r.get("load"), list) and r["load"]
        for v in [finite(r["load"][0])]
        if v is not None and v >= 0
    ]
    if load1:
        metrics["system.load1.max"] = _r(max(load1), 2)
    available, used_pct, swap_used = [], [], []
    for record in records:
        mem = sub(record, "mem_mb")
        total_mb, avail_mb = finite(mem.get("total")), finite(mem.get("available"))
        if avail_mb is not None and avail_mb >= 0:
            available.append(avail_mb)
            if total_mb and total_mb > 0 and avail_mb <= total_mb:
                used_pct.append(100.0 * (total_mb - avail_mb) / total_mb)
        swap_total, swap_free = finite(mem.get("swap_total")), finite(mem.get("swap_free"))
        if swap_total is not None and swap_free is not None and 0 <= swap_free <= swap_total:
            swap_used.append(swap_total - swap_free)
    if available:
        metrics["system.mem.available_mb.min"] = _r(min(available), 1)
    else:
        notes.append("system: no MemAvailable in /proc/meminfo (kernel older than 3.14?)")
    if used_pct:
        metrics["system.mem.used_pct.max"] = _r(max(used_pct), 2)
    if swap_used:
        metrics["system.swap.used_mb.max"] = _r(max(swap_used), 1)


def _target_metrics(
    records: list[dict[str, Any]], metrics: dict[str, float], notes: list[str]
) -> None:
    targets = [r for r in records if sub(r, "target")]
    if not targets:
        notes.append("system: the target was not sampled (pid unknown or gone at once)")
        return
    pids = {finite(sub(r, "target").get("pid")) for r in targets}
    if len(pids) > 1:
        notes.append("system: the target's pid changed within the series")

    def field_of(key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda record: sub(record, "target").get(key)

    def whole_of(key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda record: _tree_view(record).get(key)

    backwards = 0
    # The whole process tree's CPU and memory (the runner's tree totals; older runners'
    # samples have the target alone), and the target process's own CPU as ``root``.
    cpu = counter_rate(points(targets, whole_of("cpu_s")))
    backwards += cpu.backwards
    if cpu.per_s is not None:
        metrics["target.cpu_pct.mean"] = _r(100.0 * cpu.per_s, 2)
        metrics["target.cpu_pct.max"] = _r(max(100.0 * dv / dt for dt, dv in cpu.intervals), 2)
    root_cpu = counter_rate(points(targets, field_of("cpu_s")))
    if root_cpu.per_s is not None and tree.has_tree(targets):
        metrics["target.root.cpu_pct.mean"] = _r(100.0 * root_cpu.per_s, 2)
    for key, name in (("rss_kb", "target.rss_mb.peak"), ("pss_kb", "target.pss_mb.peak")):
        values = [v for _, v in points(targets, whole_of(key)) if v >= 0]
        if values:
            metrics[name] = _r(max(values) / 1024.0, 2)
    procs = [v for _, v in points(targets, lambda r: sub(r, "tree").get("procs")) if v >= 1]
    if procs:
        metrics["target.processes.max"] = max(procs)
    if "target.rss_mb.peak" in metrics and "target.pss_mb.peak" not in metrics:
        notes.append("system: the target's PSS is unreadable (no /proc/PID/smaps_rollup access)")
    threads = [v for _, v in points(targets, field_of("threads")) if v >= 0]
    if threads:
        metrics["target.threads.max"] = max(threads)
    io_seen = False
    for key in ("read_bytes", "write_bytes", "rchar", "wchar"):
        rate = counter_rate(points(targets, field_of(key)))
        backwards += rate.backwards
        io_seen = io_seen or bool(rate.intervals)
        if rate.per_s is not None:
            metrics[f"target.{key}_per_s"] = _r(rate.per_s, 1)
    if not io_seen and len(targets) > 1:
        notes.append("system: the target's I/O counters are unreadable (/proc/PID/io)")

    def switches(record: dict[str, Any]) -> float | None:
        target = sub(record, "target")
        vol, invol = finite(target.get("ctx_voluntary")), finite(target.get("ctx_nonvoluntary"))
        return vol + invol if vol is not None and invol is not None else None

    for rate_name, series in (
        ("target.ctx_switches_per_s", points(targets, switches)),
        ("target.nonvoluntary_ctx_switches_per_s", points(targets, field_of("ctx_nonvoluntary"))),
    ):
        rate = counter_rate(series)
        backwards += rate.backwards
        if rate.per_s is not None:
            metrics[rate_name] = _r(rate.per_s, 2)
    if backwards:
        notes.append(f"system: the target's counters went backwards {backwards} times (skipped)")


def zone_name(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    name = _ZONE_RE.sub("_", raw).strip("_")[:ZONE_NAME_MAX]
    return name or None


def _thermal_metrics(
    records: list[dict[str, Any]], metrics: dict[str, float], notes: list[str]
) -> None:
    peaks: dict[str, float] = {}
    implausible = ignored = 0
    for record in records:
        for raw, value in sub(record, "thermal_c").items():
            name = zone_name(raw)
            celsius = finite(value)
            if name is None or celsius is None:
                continue
            if not PLAUSIBLE_C[0] <= celsius <= PLAUSIBLE_C[1]:
                implausible += 1
                continue
            if name not in peaks and len(peaks) >= MAX_ZONES:
                ignored += 1
                continue
            peaks[name] = max(celsius, peaks.get(name, celsius))
    if not peaks:
        notes.append("system: no thermal zones on this device")
        return
    for name, peak in sorted(peaks.items()):
        metrics[f"thermal.{name}.max_c"] = _r(peak, 1)
    metrics["thermal.max_c"] = _r(max(peaks.values()), 1)
    if implausible:
        notes.append(f"system: {implausible} implausible temperature readings skipped")
    if ignored:
        notes.append(f"system: thermal zones beyond the first {MAX_ZONES} ignored")


def _cpufreq_metrics(
    records: list[dict[str, Any]], metrics: dict[str, float], notes: list[str]
) -> None:
    """Lowest cur/max seen, and the share of samples with a busy core below 95% of its max.

    A core's max is its hardware maximum (cpuinfo_max_freq), else its policy limit. A busy
    core below it is throttled (thermal or power capping) or held by a powersave governor;
    an idle one is only saving power, so it counts only where per-core load is known to be
    high. ``capped`` samples are those where the policy limit itself was lowered.
    """
    load_known = any(sub(r, "cpu_core_pct") for r in records)
    ratios: list[float] = []
    judged = reduced = capped = with_freq = 0
    for record in records:
        freqs = record.get("cpufreq")
        if not isinstance(freqs, list) or not freqs:
            continue
        busy = sub(record, "cpu_core_pct")
        judged_here = not (load_known and not busy)  # the first sample has no load yet
        with_freq += 1
        slow = lowered = False
        for core in freqs:
            if not isinstance(core, dict):
                continue
            cur = finite(core.get("cur_khz"))
            hw_max, policy = finite(core.get("max_khz")), finite(core.get("policy_max_khz"))
            top = hw_max if hw_max and hw_max > 0 else policy
            if cur is None or cur <= 0 or not top or top <= 0:
                continue
            ratio = cur / top
            if ratio > 1.5:  # garbage, not overclocking
                continue
            ratios.append(ratio)
            if hw_max and policy and 0 < policy < REDUCED_RATIO * hw_max:
                lowered = True
            load = _pct(busy.get(f"cpu{core.get('cpu')}")) if load_known else None
            if ratio < REDUCED_RATIO and (not load_known or (load or 0.0) >= BUSY_CORE_PCT):
                slow = True
        capped += lowered
        if judged_here:
            judged += 1
            reduced += slow
    if not ratios:
        notes.append("system: no cpufreq on this device (VM or container?)")
        return
    metrics["cpufreq.min_ratio"] = _r(min(ratios))
    if judged:
        metrics["cpufreq.reduced_time_pct"] = _r(100.0 * reduced / judged, 2)
    metrics["cpufreq.capped_time_pct"] = _r(100.0 * capped / with_freq, 2)
    if reduced:
        notes.append(
            f"system: busy cores ran below {REDUCED_RATIO:.0%} of their maximum frequency in "
            f"{reduced} of {judged} samples (thermal throttling or power capping?)"
        )
