"""Stage 7 for the workload's own numbers: the JSON lines a launched program appended to
the file the runner named in its environment (``FLEETPROF_METRICS_FILE``,
fleetprof_device/workload.py) -> ``workload.<name>`` metrics, a table, a series.

Everything in the file is untrusted: it is read up to the contract's cap, each line on its
own (a malformed one is counted, never fatal), names are checked against a small grammar
and capped in number, values must be finite numbers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetprof_device.contract import (
    PROBE_REPS,
    WORKLOAD_MAX_NAMES,
    WORKLOAD_METRICS_ENV,
    WORKLOAD_METRICS_FILE,
    WORKLOAD_METRICS_MAX_BYTES,
    WORKLOAD_NAME_MAX_CHARS,
)
from orchestrator.analysis.workload import STATS, Points, repetitions, summarize
from orchestrator.profilers.system import pick_evenly
from orchestrator.values import number, workload_name_problem

UNIT = re.compile(r"[A-Za-z0-9_%/.\- ]{1,16}\Z")
MAX_LINE_BYTES = 4096


@dataclass
class WorkloadResult:
    metrics: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, list[float | None]] = field(default_factory=dict)
    data_quality: list[str] = field(default_factory=list)
    # workload.<name> -> its repetitions over the window (the nightly check's samples)
    samples: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class _Reading:
    names: dict[str, Points] = field(default_factory=dict)
    bad_lines: int = 0
    bad_names: int = 0
    over_names: int = 0


def _read(data: bytes) -> _Reading:
    reading = _Reading()
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            if len(raw) > MAX_LINE_BYTES:
                raise ValueError("line too long")
            record = json.loads(raw.decode("utf-8"), parse_constant=_reject)
        except (ValueError, RecursionError):
            reading.bad_lines += 1
            continue
        if not isinstance(record, dict):
            reading.bad_lines += 1
            continue
        name, value = record.get("name"), number(record.get("value"))
        if not isinstance(name, str) or workload_name_problem(name) is not None:
            reading.bad_names += 1
            continue
        if value is None:
            reading.bad_lines += 1
            continue
        points = reading.names.get(name)
        if points is None:
            if len(reading.names) >= WORKLOAD_MAX_NAMES:
                reading.over_names += 1
                continue
            unit = record.get("unit")
            points = reading.names[name] = Points(
                unit=unit if isinstance(unit, str) and UNIT.match(unit) else None
            )
        elif record.get("unit") not in (None, points.unit):
            points.other_units += 1
        points.values.append(value)
        points.times.append(number(record.get("t")))
    return reading


def _reject(constant: str) -> None:
    raise ValueError(f"{constant} is not a number")


def read_workload(
    session_dir: Path,
    manifest: dict[str, Any],
    file_name: str = WORKLOAD_METRICS_FILE,
    file_info: Any = None,
    suffix: str = "",
) -> WorkloadResult:
    """What the program wrote, summarized; an empty result when it wrote nothing.
    ``file_info``: the device's record of the file (its cut bytes), the manifest's
    ``workload_metrics`` by default; ``suffix`` goes after every metric's name (a sweep
    run's ``[value]``), and then no series is made."""
    result = WorkloadResult()
    path = session_dir / file_name
    try:
        if not path.is_file() or path.is_symlink():
            return result
        with path.open("rb") as handle:
            data = handle.read(WORKLOAD_METRICS_MAX_BYTES + 1)
    except OSError as exc:
        result.data_quality.append(f"workload metrics: {file_name} unreadable: {exc}")
        return result
    notes = result.data_quality
    info = manifest.get("workload_metrics") if file_info is None else file_info
    cut = number(info.get("cut_bytes")) if isinstance(info, dict) else None
    if len(data) > WORKLOAD_METRICS_MAX_BYTES or (cut is not None and cut > 0):
        notes.append(
            f"workload metrics: the program wrote more than {WORKLOAD_METRICS_MAX_BYTES} bytes "
            f"to {WORKLOAD_METRICS_ENV}; the first lines were kept, the rest dropped"
        )
        data = data[:WORKLOAD_METRICS_MAX_BYTES]
        data = data[: data.rfind(b"\n") + 1]
    reading = _read(data)
    if reading.bad_lines:
        notes.append(
            f"workload metrics: {reading.bad_lines} malformed lines in {file_name} "
            'skipped (each line one JSON object: {"name": ..., "value": <number>})'
        )
    if reading.bad_names:
        notes.append(
            f"workload metrics: {reading.bad_names} lines with an unusable name skipped "
            f"(letters, digits and _.:-, at most {WORKLOAD_NAME_MAX_CHARS} characters, "
            f"not ending in .{', .'.join(STATS)})"
        )
    if reading.over_names:
        notes.append(
            f"workload metrics: more than {WORKLOAD_MAX_NAMES} names; "
            f"{reading.over_names} lines of further names skipped"
        )
    for name, points in sorted(reading.names.items()):
        stats = summarize(name, points)
        result.metrics.update({k + suffix: v for k, v in stats.items()})
        key = f"workload.{name}"
        reps = repetitions(points, PROBE_REPS)
        if reps:
            result.samples[key + suffix] = reps
        result.rows.append(
            {
                "name": name,
                "unit": points.unit,
                "count": len(points.values),
                "mean": stats[key],
                "p50": stats[f"{key}.p50"],
                "p95": stats[f"{key}.p95"],
                "last": stats[f"{key}.last"],
            }
        )
        if points.other_units:
            notes.append(
                f"workload metrics: {name}: {points.other_units} lines gave another unit "
                f"than {points.unit or 'none'} (the first line's); their values are counted"
            )
    t0 = number(manifest.get("t0_device"))
    if t0 is not None and not suffix:
        result.series = _series(reading.names, t0)
    return result


def _series(names: dict[str, Points], t0: float) -> dict[str, list[float | None]]:
    """One time axis (seconds from T0) for every name that gave times, aligned columns,
    at most the report's number of points."""
    by_time: dict[float, dict[str, float]] = {}
    for name, points in names.items():
        for t, value in zip(points.times, points.values, strict=True):
            if t is not None:
                by_time.setdefault(round(t - t0, 3), {})[name] = value
    if not by_time:
        return {}
    times = sorted(by_time)
    keep = pick_evenly(len(times))
    series: dict[str, list[float | None]] = {"workload.t": [times[i] for i in keep]}
    for name in sorted({n for row in by_time.values() for n in row}):
        series[f"workload.{name}"] = [by_time[times[i]].get(name) for i in keep]
    return series
