"""The system sampler's interface counters (/proc/net/dev) as rates over the window.

Each system.jsonl sample may hold ``net``: {interface: [counters in NET_DEV_FIELDS order]}
(fleetprof_device/netdev.py). Interface names are device data: reduced to
``[A-Za-z0-9_-]``, and at most REPORT_IFACES interfaces (the busiest) become metrics.

A counter that goes down between two samples was reset (the interface was re-created, the
driver reloaded) or, on a 32-bit counter, wrapped: a drop of more than half the 32-bit range
from a value that fits 32 bits is taken as a wrap (the interval's traffic is what went past
2**32), any other drop as a reset, and that interval is left out (its time and its change)
and counted. Never negative traffic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fleetprof_device.contract import NET_DEV_FIELDS, NET_IFACE_NAME_MAX, NET_MAX_IFACES
from orchestrator.values import number as finite

# Interfaces reported as metrics per host: the busiest by bytes (receive + send).
REPORT_IFACES = 8
# Distinct interfaces read per host over the window (the device lists at most
# NET_MAX_IFACES per sample; containers' virtual interfaces come and go).
MAX_SEEN_IFACES = 2 * NET_MAX_IFACES
LOOPBACK = "lo"
WRAP = 1 << 32
# The series' columns (system.jsonl's time axis): every interface but loopback.
SERIES_RX = "net.rx_bytes_per_s"
SERIES_TX = "net.tx_bytes_per_s"

_NAME_RE = re.compile(r"[^A-Za-z0-9_-]+")
_BYTES = ("rx_bytes", "tx_bytes")
_PACKETS = ("rx_packets", "tx_packets")
_COUNTS = ("rx_errors", "tx_errors", "rx_drops", "tx_drops")


def iface_name(raw: Any) -> str | None:
    """A device's interface name as it may appear in a metric name, or None."""
    if not isinstance(raw, str):
        return None
    name = _NAME_RE.sub("_", raw).strip("_")[:NET_IFACE_NAME_MAX]
    return name or None


def step(before: float, after: float) -> float | None:
    """How much a counter grew from ``before`` to ``after``; None for a reset."""
    if after >= before:
        return after - before
    if before < WRAP and before - after > WRAP // 2:
        return after + WRAP - before
    return None


@dataclass
class Counters:
    """One interface's counters over the window: per field the sum of its increases, the
    time those intervals cover, and how many intervals were left out as resets."""

    grown: dict[str, float] = field(default_factory=lambda: dict.fromkeys(NET_DEV_FIELDS, 0.0))
    covered_s: float = 0.0
    resets: int = 0

    def rate(self, key: str) -> float | None:
        return self.grown[key] / self.covered_s if self.covered_s > 0 else None


def _counters(sample: dict[str, Any], raw: str) -> list[float] | None:
    values = sample.get(raw)
    if not isinstance(values, list) or len(values) != len(NET_DEV_FIELDS):
        return None
    numbers = [finite(v) for v in values]
    if any(n is None or n < 0 for n in numbers):
        return None
    return [float(n) for n in numbers if n is not None]


def interfaces(records: list[dict[str, Any]]) -> tuple[dict[str, Counters], int]:
    """Per interface (its cleaned name) its counters over the samples, and how many names
    were left out (unusable, a second raw name that cleans to one already seen, or past
    the first MAX_SEEN_IFACES names: a device's samples are untrusted)."""
    found: dict[str, Counters] = {}
    raw_of: dict[str, str] = {}
    dropped: set[str] = set()
    previous: dict[str, tuple[float, list[float]]] = {}
    for record in records:
        t, sample = float(record["t"]), record.get("net")
        if not isinstance(sample, dict):
            continue
        for raw in sample:
            name = iface_name(raw)
            if name is not None and name not in raw_of and len(raw_of) < MAX_SEEN_IFACES:
                raw_of[name] = raw
            if name is None or raw_of.get(name) != raw:
                if len(dropped) < MAX_SEEN_IFACES:
                    dropped.add(str(raw)[: NET_IFACE_NAME_MAX + 1])
                continue
            values = _counters(sample, raw)
            if values is None:
                continue
            counters = found.setdefault(name, Counters())
            before = previous.get(name)
            previous[name] = (t, values)
            if before is None or t <= before[0]:
                continue
            steps = [step(b, a) for b, a in zip(before[1], values, strict=True)]
            if any(s is None for s in steps):
                counters.resets += 1
                continue
            counters.covered_s += t - before[0]
            for key, grown in zip(NET_DEV_FIELDS, steps, strict=True):
                counters.grown[key] += grown or 0.0
    return found, len(dropped)


def _r(value: float, digits: int = 1) -> float:
    return round(value, digits)


def net_metrics(records: list[dict[str, Any]], metrics: dict[str, float], notes: list[str]) -> None:
    """``net.<iface>.*`` for the busiest REPORT_IFACES interfaces and ``net.*`` totals over
    every interface but loopback (see docs/metrics.md)."""
    found, bad_names = interfaces(records)
    if not found:  # an older runner, or /proc/net/dev unreadable (the manifest says which)
        return
    seen = {n: c for n, c in found.items() if c.covered_s > 0}
    busiest = sorted(
        seen, key=lambda n: (-(seen[n].grown["rx_bytes"] + seen[n].grown["tx_bytes"]), n)
    )
    for name in busiest[:REPORT_IFACES]:
        counters = seen[name]
        for key in (*_BYTES, *_PACKETS):
            rate = counters.rate(key)
            if rate is not None:
                metrics[f"net.{name}.{key}_per_s"] = _r(rate)
        for key in _COUNTS:
            metrics[f"net.{name}.{key}"] = counters.grown[key]
    others = [c for n, c in seen.items() if n != LOOPBACK]
    if others:
        for key in _BYTES:
            metrics[f"net.{key}_per_s"] = _r(sum(c.rate(key) or 0.0 for c in others))
        metrics["net.errors"] = sum(c.grown["rx_errors"] + c.grown["tx_errors"] for c in others)
        metrics["net.drops"] = sum(c.grown["rx_drops"] + c.grown["tx_drops"] for c in others)
    if len(seen) > REPORT_IFACES:
        notes.append(
            f"system: {len(seen) - REPORT_IFACES} quieter interfaces beyond the busiest "
            f"{REPORT_IFACES} not reported"
        )
    if bad_names:
        notes.append(
            f"system: {bad_names} interface names unusable, repeated or past the first "
            f"{MAX_SEEN_IFACES} (skipped)"
        )
    resets = sum(c.resets for c in found.values())
    if resets:
        notes.append(f"system: interface counters went down {resets} times (reset: skipped)")


def net_columns(records: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Series columns aligned with ``records``: bytes/s received and sent per interval over
    every interface but loopback (None for the first sample, and where any interface's
    counter went down or a sample lacks one seen before)."""
    columns: dict[str, list[float | None]] = {SERIES_RX: [], SERIES_TX: []}
    previous: dict[str, list[float]] = {}
    previous_t: float | None = None
    for record in records:
        t, sample = float(record["t"]), record.get("net")
        now: dict[str, list[float]] = {}
        if isinstance(sample, dict):
            for raw in sample:
                values = _counters(sample, raw)
                if values is not None and raw != LOOPBACK:
                    now[str(raw)] = values
        for index, key in (
            (NET_DEV_FIELDS.index("rx_bytes"), SERIES_RX),
            (NET_DEV_FIELDS.index("tx_bytes"), SERIES_TX),
        ):
            columns[key].append(_interval(previous, now, index, previous_t, t))
        previous, previous_t = now, t
    return columns


def _interval(
    before: dict[str, list[float]],
    now: dict[str, list[float]],
    index: int,
    before_t: float | None,
    t: float,
) -> float | None:
    if before_t is None or t <= before_t or not now or set(before) - set(now):
        return None
    total = 0.0
    for name, values in now.items():
        if name not in before:
            continue
        grown = step(before[name][index], values[index])
        if grown is None:
            return None
        total += grown
    return total / (t - before_t)
