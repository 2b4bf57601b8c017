"""Stage 7 for a benchmark sweep (``target.launch.sweep``): the supervisor's record
(``sweep.json``, fleetprof_device/sweep.py) and each run's own metrics file -> the metrics
``workload.<name>[<value>]`` (and their statistics), a table of the runs, and notes for the
runs that did not run their slot. Everything is device data: read bounded, checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetprof_device.contract import (
    SWEEP_FILE,
    SWEEP_MAX_VALUES,
    SWEEP_METRICS_FILE,
    SWEEP_SCHEMA,
    SWEEP_VALUE_PATTERN,
)
from orchestrator.stages.workload import read_workload
from orchestrator.values import dicts, load_json, mapping, number

TABLE = "sweep.runs"
MAX_BYTES = 1024 * 1024
# A run that ended by itself this much before its slot's end ran short (a program that
# exits at once on a value it cannot take).
SHORT_S = 0.5
_VALUE = re.compile(SWEEP_VALUE_PATTERN)


@dataclass
class SweepResult:
    metrics: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    data_quality: list[str] = field(default_factory=list)


def read_sweep(session_dir: Path, manifest: dict[str, Any], variable: str) -> SweepResult:
    result = SweepResult()
    path = session_dir / SWEEP_FILE
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_BYTES:
            raise ValueError(f"{SWEEP_FILE} is missing or over {MAX_BYTES} bytes")
        record = mapping(load_json(path.read_bytes()))
        if record.get("schema") != SWEEP_SCHEMA:
            raise ValueError(f"{SWEEP_FILE} is not {SWEEP_SCHEMA}")
    except (OSError, ValueError) as exc:
        result.data_quality.append(f"sweep: no record of the runs ({exc})")
        return result
    slot = number(record.get("slot_s")) or 0.0
    for index, run in enumerate(dicts(record.get("runs"))[:SWEEP_MAX_VALUES]):
        value = run.get("value")
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            result.data_quality.append(f"sweep: run {index} has no usable value; left out")
            continue
        row = _row(run, value, slot, number(manifest.get("t0_device")))
        where = f"sweep {variable}={value}"
        if run.get("status") != "ok":
            reason = str(run.get("reason") or run.get("status") or "unknown")[:300]
            result.data_quality.append(f"{where}: did not run ({reason})")
        elif row["ended_by"] == "itself" and (
            row["exit_code"] not in (0, None) or (row["runtime_s"] or 0.0) < slot - SHORT_S
        ):
            result.data_quality.append(
                f"{where}: the program ended by itself with exit code {row['exit_code']} "
                f"after {row['runtime_s']} s of its {slot:.2f} s slot"
            )
        workload = read_workload(
            session_dir,
            manifest,
            SWEEP_METRICS_FILE % index,
            file_info=run.get("metrics"),
            suffix=f"[{value}]",
        )
        result.metrics.update(workload.metrics)
        result.samples.update(workload.samples)
        result.data_quality.extend(f"{where}: {note}" for note in workload.data_quality)
        # Each name's mean over the run: what the sweep's charts and tables show.
        row["kpis"] = {r["name"]: r["mean"] for r in workload.rows}
        result.rows.append(row)
    return result


def _row(run: Any, value: str, slot: float, t0: float | None) -> dict[str, Any]:
    started, stopped = number(run.get("started_at_device")), number(run.get("stopped_at_device"))
    since_t0 = round(started - t0, 3) if started is not None and t0 is not None else None
    runtime = round(stopped - started, 3) if started is not None and stopped is not None else None
    ended_by = run.get("ended_by")
    code = number(run.get("exit_code"))
    return {
        "value": value,
        "status": str(run.get("status") or "unknown")[:20],
        "ended_by": ended_by if ended_by in ("itself", "slot end", "stopped") else None,
        "exit_code": int(code) if code is not None and code.is_integer() else None,
        "started_s": since_t0,  # from T0
        "runtime_s": runtime,
        "slot_s": round(slot, 3),
    }
