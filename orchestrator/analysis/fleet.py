"""Stage 8: the per-host views -> the fleet's report.json (pure)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from orchestrator.models import REPORT_SCHEMA, HostStatus

STATUSES = [s.value for s in HostStatus]


@dataclass
class HostView:
    """One host's entry in report.json (see DESIGN.md, Contracts)."""

    name: str
    hw_model: str
    arch: str
    status: str
    reason: str | None = None
    start_offset_ms: float | None = None
    profilers: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    top_functions: list[dict[str, Any]] = field(default_factory=list)
    flamegraph: dict[str, Any] | None = None
    data_quality: list[str] = field(default_factory=list)
    group: str | None = None  # the host's value of compare.group_by (hw_model by default)
    series: dict[str, list[float]] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hw_model": self.hw_model,
            "arch": self.arch,
            "status": str(self.status),
            "reason": self.reason,
            "start_offset_ms": self.start_offset_ms,
            "profilers": self.profilers,
            "metrics": self.metrics,
            "top_functions": self.top_functions,
            "flamegraph": self.flamegraph,
            "series": self.series,
            "tables": self.tables,
            "data_quality": self.data_quality,
            "group": self.group if self.group is not None else self.hw_model,
        }


def group_stats(hosts: list[HostView]) -> list[dict[str, Any]]:
    """Per hardware model: median, MAD and n of every metric, over hosts that produced data."""
    by_model: dict[str, list[HostView]] = defaultdict(list)
    for host in hosts:
        by_model[host.hw_model].append(host)
    groups = []
    for model in sorted(by_model):
        members = by_model[model]
        values: dict[str, list[float]] = defaultdict(list)
        for host in members:
            if host.status in (HostStatus.OK, HostStatus.PARTIAL):
                for name, value in host.metrics.items():
                    values[name].append(value)
        metrics = {}
        for name in sorted(values):
            series = values[name]
            median = statistics.median(series)
            mad = statistics.median(abs(v - median) for v in series)
            metrics[name] = {"median": round(median, 4), "mad": round(mad, 4), "n": len(series)}
        groups.append({"hw_model": model, "hosts": [h.name for h in members], "metrics": metrics})
    return groups


def build_report(meta: dict[str, Any], hosts: list[HostView]) -> dict[str, Any]:
    """``meta``: campaign, run_id, started_at, duration_s, mode (from run.json)."""
    counts = dict.fromkeys(STATUSES, 0)
    for host in hosts:
        counts[str(host.status)] = counts.get(str(host.status), 0) + 1
    offsets = [h.start_offset_ms for h in hosts if h.start_offset_ms is not None]
    return {
        "schema": REPORT_SCHEMA,
        "campaign": meta["campaign"],
        "run_id": meta["run_id"],
        "started_at": meta["started_at"],
        "duration_s": meta["duration_s"],
        "mode": meta.get("mode"),
        "summary": {"hosts": len(hosts), **counts},
        "start_skew_ms": round(max(offsets) - min(offsets), 1) if offsets else None,
        "hosts": [h.to_dict() for h in sorted(hosts, key=lambda h: (h.hw_model, h.name))],
        "groups": group_stats(hosts),
        "outliers": [],
    }
