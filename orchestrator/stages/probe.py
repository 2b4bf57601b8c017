"""Probe targets: fixed micro-benchmarks that compare devices on one yardstick.

With ``target: {probe: [cpu, memory, disk]}`` there is no process to profile: at T0 the
device runner runs the listed benchmarks in order (stdlib only, see the runner's
``Probe``), each for a fixed time, as a few short repetitions, and writes ``probe.json``
into the session directory. This module decides how long each may run (plan time) and
turns ``probe.json`` (device output: untrusted) into the ``probe.*`` metrics of
docs/metrics.md: the median over the repetitions and their coefficient of variation.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetprof_device.contract import NET_ECHO_MAX, PROBE_FILE, PROBE_SCHEMA
from orchestrator.profilers.base import ProfileResult
from orchestrator.values import number as _finite

# Each benchmark runs this long when the window allows it...
SECONDS_PER_KIND = 2.0
# ... within this share of the window; the rest absorbs set-up and a late start.
WINDOW_SHARE = 0.8
MAX_BYTES = 1024 * 1024
MAX_REPS = 100
MAX_WORKERS = 4096
MB = 1024.0 * 1024.0

# metric name -> unit, in report order
METRICS = {
    "probe.cpu.single_ops_per_s": "ops/s",
    "probe.cpu.all_ops_per_s": "ops/s",
    "probe.memory.copy_mb_per_s": "MB/s",
    "probe.disk.write_mb_per_s": "MB/s",
    "probe.disk.read_mb_per_s": "MB/s",
    "probe.network.send_mb_per_s": "MB/s",
    "probe.network.rtt_ms": "ms",
}


def seconds_per_kind(duration_s: float, kinds: list[str]) -> float:
    """How long each benchmark runs: SECONDS_PER_KIND, scaled down to fit the window."""
    share = duration_s * WINDOW_SHARE / max(1, len(kinds))
    return round(min(SECONDS_PER_KIND, share), 3)


def _dict(value: Any, key: str) -> dict[str, Any]:
    inner = value.get(key) if isinstance(value, dict) else None
    return inner if isinstance(inner, dict) else {}


def _reps(section: dict[str, Any]) -> list[Any]:
    reps = section.get("reps")
    return reps[:MAX_REPS] if isinstance(reps, list) else []


def _rate(rep: Any, amount_key: str, scale: float = 1.0) -> float | None:
    """amount / seconds of one repetition, or None when it is not two sane numbers."""
    if not isinstance(rep, dict):
        return None
    amount, seconds = _finite(rep.get(amount_key)), _finite(rep.get("seconds"))
    if amount is None or seconds is None or amount < 0 or seconds <= 0:
        return None
    return amount / seconds / scale


def _all_core_rate(rep: Any) -> float | None:
    """One all-core repetition: every worker's iterations over the common window, from
    its start to the last worker's stop. A worker that began late (still starting up, or
    not given the CPU) adds what it did, over the whole window: it was not working
    before; one that missed its window (``missed``) adds nothing. Leaving such
    repetitions out would flatter a throttled device, whose workers miss the most."""
    workers = rep.get("workers") if isinstance(rep, dict) else None
    if not isinstance(workers, list) or not workers:
        return None
    total, window = 0.0, 0.0
    for worker in workers[:MAX_WORKERS]:
        missed = isinstance(worker, dict) and worker.get("missed") is True
        if not missed and _rate(worker, "iterations") is None:
            return None
        late = _finite(worker.get("late_s", 0.0))
        if late is None or late < 0:
            return None
        if missed:
            window = max(window, late)
            continue
        total += float(worker["iterations"])
        window = max(window, late + float(worker["seconds"]))
    return total / window if window > 0 else None


def _rtt_ms(rep: Any) -> float | None:
    """One repetition's median round trip in ms (its list of seconds, each sane)."""
    times = rep.get("rtt_s") if isinstance(rep, dict) else None
    if not isinstance(times, list) or not times:
        return None
    values = [_finite(t) for t in times[:NET_ECHO_MAX]]
    if any(v is None or v <= 0 for v in values):
        return None
    return 1000.0 * statistics.median(v for v in values if v is not None)


def _missed(rep: Any) -> bool:
    """A single-thread repetition the device did not time (``missed``: most of its window
    was gone before it could start, the repetition before had overrun and is counted
    with its stall). All-core repetitions are never left out (see _all_core_rate)."""
    return isinstance(rep, dict) and rep.get("missed") is True


def _summarize(
    result: ProfileResult, metric: str, reps: list[Any], rate: Callable[[Any], float | None]
) -> None:
    timed = [rep for rep in reps if not _missed(rep)]
    rates = [r for r in (rate(rep) for rep in timed) if r is not None]
    if len(timed) < len(reps):
        result.data_quality.append(
            f"{metric}: {len(reps) - len(timed)} of {len(reps)} repetitions missed their "
            "window (the device did not get the CPU in time); not counted"
        )
    bad = len(timed) - len(rates)
    if bad:
        result.data_quality.append(f"{metric}: {bad} malformed repetitions skipped")
    if not rates:
        return
    result.metrics[metric] = round(statistics.median(rates), 3)
    result.samples[metric] = [round(rate, 3) for rate in rates]
    mean = statistics.fmean(rates)
    if len(rates) >= 2 and mean > 0:
        result.metrics[f"{metric}_cv"] = round(statistics.stdev(rates) / mean, 4)
    else:
        result.data_quality.append(f"{metric}: one repetition, no spread (no _cv)")


def load_probe(session_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """probe.json as a fleetprof.probe/1 document, or None and why not."""
    path = session_dir / PROBE_FILE
    try:
        if not path.is_file():
            return None, f"probe: no {PROBE_FILE} came back"
        if path.stat().st_size > MAX_BYTES:
            return None, f"probe: {PROBE_FILE} is larger than {MAX_BYTES // 1024} KiB; ignored"
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError, RecursionError):
        return None, f"probe: {PROBE_FILE} is not valid JSON"
    if not isinstance(data, dict) or data.get("schema") != PROBE_SCHEMA:
        return None, f"probe: {PROBE_FILE} is not a {PROBE_SCHEMA} document"
    return data, None


def parse_probe(session_dir: Path, kinds: list[str]) -> ProfileResult:
    """probe.json -> probe.* metrics (median of the repetitions) and their _cv."""
    data, problem = load_probe(session_dir)
    return probe_result(data, problem, kinds)


def probe_result(
    data: dict[str, Any] | None, problem: str | None, kinds: list[str]
) -> ProfileResult:
    """``load_probe``'s answer -> probe.* metrics, their repetitions and notes."""
    result = ProfileResult()
    notes = result.data_quality
    if data is None:
        notes.append(problem or f"probe: no {PROBE_FILE} came back")
        return result
    results = _dict(data, "results")
    nominal = _finite(data.get("nominal_s"))
    serving = _dict(data, "serving")  # this device was the others' network peer
    if serving.get("error"):
        notes.append(f"probe network peer: {str(serving['error'])[:300]}")
    for kind in kinds:
        section = _dict(results, kind)
        if not section:
            notes.append(f"probe: the {kind} benchmark did not run")
            continue
        error = section.get("error")
        if error:
            notes.append(f"probe {kind}: {str(error)[:300]}")
        budget = _finite(section.get("budget_s"))
        if nominal is not None and budget is not None and budget < nominal * 0.99:
            notes.append(
                f"probe {kind}: ran {budget:.2f} s instead of {nominal:g} s (a short window "
                "or a late start): fewer, shorter repetitions, a noisier figure"
            )
        if kind == "cpu":
            _summarize(
                result,
                "probe.cpu.single_ops_per_s",
                _reps(_dict(section, "single")),
                lambda rep: _rate(rep, "iterations"),
            )
            _summarize(
                result, "probe.cpu.all_ops_per_s", _reps(_dict(section, "all")), _all_core_rate
            )
        elif kind == "memory":
            _summarize(
                result,
                "probe.memory.copy_mb_per_s",
                _reps(_dict(section, "copy")),
                lambda rep: _rate(rep, "bytes", MB),
            )
        elif kind == "disk":
            for phase in ("write", "read"):
                _summarize(
                    result,
                    f"probe.disk.{phase}_mb_per_s",
                    _reps(_dict(section, phase)),
                    lambda rep: _rate(rep, "bytes", MB),
                )
            if section.get("cache_dropped") is False:
                notes.append(
                    "probe disk: the page cache could not be dropped for the test file: "
                    "the read figure may be memory speed, not the disk's"
                )
        elif kind == "network":
            _summarize(
                result,
                "probe.network.send_mb_per_s",
                _reps(_dict(section, "send")),
                lambda rep: _rate(rep, "bytes", MB),
            )
            _summarize(result, "probe.network.rtt_ms", _reps(_dict(section, "rtt")), _rtt_ms)
    return result
