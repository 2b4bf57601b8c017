"""``report.json`` -> node_exporter textfile (``fleetprof check --prometheus FILE``).

The gauges of docs/check.md, in a fresh registry, written atomically by
``prometheus_client.write_to_textfile`` (node_exporter never reads half a file):

- ``fleetprof_check_passed{campaign}``: 1 when the verdict is ``pass``;
- ``fleetprof_check_timestamp_seconds{campaign}``: when the checked run started;
- ``fleetprof_check_findings{campaign,host,kind}``: confirmed findings, 0 for every host
  judged and every kind, so an alert is a plain ``> 0`` (no ``absent()``);
- ``fleetprof_host_ok{campaign,host,group}``: 1 when the host's status is ``ok``;
- ``fleetprof_metric{campaign,host,group,metric}``: each finite metric of each host.

A plain run's report (no ``check{}``) gets only the last two. Label values come from
devices: prometheus_client escapes backslashes, quotes and newlines; what UTF-8 cannot
encode at all (lone surrogates) is replaced here, so the file is always written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from orchestrator.values import dicts as _dicts
from orchestrator.values import mapping as _mapping
from orchestrator.values import moment
from orchestrator.values import number as _number

KINDS = ("outlier", "regression", "failed", "missing", "incomplete")
"""Finding kinds (docs/check.md); a kind a later check adds gets its own series too."""


def label(value: Any) -> str:
    """A label value prometheus_client can write: any string, lone surrogates replaced."""
    text = "" if value is None else str(value)
    return text.encode("utf-8", errors="replace").decode("utf-8")


def timestamp(value: Any) -> float | None:
    """An ISO 8601 ``started_at`` as Unix seconds (a time without zone taken as UTC)."""
    parsed = moment(value)
    return parsed.timestamp() if parsed is not None else None


def _group(host: Mapping[str, Any]) -> str:
    value = host.get("group") if host.get("group") is not None else host.get("hw_model")
    return "unknown" if value is None else str(value)


def check_registry(report: Mapping[str, Any]) -> CollectorRegistry:
    """The report's gauges in a registry of their own (see the module's docstring)."""
    registry = CollectorRegistry()
    campaign = label(report.get("campaign"))
    hosts = _dicts(report.get("hosts"))
    check = report.get("check")
    judged = _dicts(check.get("hosts")) if isinstance(check, Mapping) else []

    host_ok = Gauge(
        "fleetprof_host_ok",
        "1 when the host's status in the run is ok, else 0",
        ["campaign", "host", "group"],
        registry=registry,
    )
    metric = Gauge(
        "fleetprof_metric",
        "A host metric of the run (report.json hosts[].metrics)",
        ["campaign", "host", "group", "metric"],
        registry=registry,
    )
    seen: set[str] = set()
    for host in hosts:
        name, group = label(host.get("name")), label(_group(host))
        seen.add(name)
        host_ok.labels(campaign, name, group).set(1 if host.get("status") == "ok" else 0)
        for key, value in _mapping(host.get("metrics")).items():
            number = _number(value)
            if number is not None:
                metric.labels(campaign, name, group, label(key)).set(number)
    for host in judged:  # judged but not in the run (missing): not ok
        name = label(host.get("name"))
        if name not in seen:
            seen.add(name)
            ok = 1 if host.get("status") == "ok" else 0
            host_ok.labels(campaign, name, label(_group(host))).set(ok)

    if not isinstance(check, Mapping):
        return registry
    passed = Gauge(
        "fleetprof_check_passed",
        "1 when the last check of the campaign passed, else 0",
        ["campaign"],
        registry=registry,
    )
    passed.labels(campaign).set(1 if check.get("verdict") == "pass" else 0)
    started = timestamp(report.get("started_at"))
    if started is not None:
        stamp = Gauge(
            "fleetprof_check_timestamp_seconds",
            "When the last check's run started, Unix time",
            ["campaign"],
            registry=registry,
        )
        stamp.labels(campaign).set(started)
    findings = _dicts(check.get("findings"))
    unconfirmed = _dicts(check.get("unconfirmed"))
    names = [label(h.get("name")) for h in judged]
    names += [label(f.get("host")) for f in (*findings, *unconfirmed)]
    kinds = list(KINDS) + [label(f.get("kind")) for f in findings]
    counts = dict.fromkeys(((h, k) for h in names for k in kinds), 0)
    for finding in findings:
        counts[label(finding.get("host")), label(finding.get("kind"))] += 1
    gauge = Gauge(
        "fleetprof_check_findings",
        "Confirmed findings of the last check, per host and kind",
        ["campaign", "host", "kind"],
        registry=registry,
    )
    for (host_name, kind), count in counts.items():
        gauge.labels(campaign, host_name, kind).set(count)
    return registry


def write_prometheus(report: Mapping[str, Any], path: Path) -> None:
    """Write the report's gauges to ``path`` in the textfile collector's format,
    atomically (a temporary file in the same directory, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), check_registry(report))
