"""report.json -> the history store's rows: every string bounded, numbers only when
finite (what a device wrote is never trusted).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC
from typing import Any

from orchestrator.check.schema import MAX_TEXT
from orchestrator.values import dicts as _dicts
from orchestrator.values import mapping as _mapping
from orchestrator.values import moment
from orchestrator.values import number as _number


def host_rows(run_id: str, hosts: Sequence[Mapping[str, Any]]) -> Iterator[tuple[Any, ...]]:
    for host in hosts:
        name = text(host.get("name"))
        if name:
            yield (
                run_id,
                name,
                text(host.get("hw_model")),
                text(host.get("group")),
                text(host.get("status")),
                text(host.get("reason")),
                _incomplete(host.get("incomplete")),
            )


def metric_rows(run_id: str, hosts: Sequence[Mapping[str, Any]]) -> Iterator[tuple[Any, ...]]:
    for host in hosts:
        name = text(host.get("name"))
        for metric, raw in _mapping(host.get("metrics")).items():
            value = _number(raw)
            if name and metric and value is not None:
                yield run_id, name, text(metric), value


def sample_rows(run_id: str, hosts: Sequence[Mapping[str, Any]]) -> Iterator[tuple[Any, ...]]:
    for host in hosts:
        name = text(host.get("name"))
        for metric, raw in _mapping(host.get("samples")).items():
            if not name or not isinstance(raw, list):
                continue
            values = [v for v in map(_number, raw) if v is not None]
            for seq, value in enumerate(values):
                yield run_id, name, text(metric), seq, value


def finding_rows(run_id: str, check: Mapping[str, Any]) -> Iterator[tuple[Any, ...]]:
    for key, default in (("findings", None), ("unconfirmed", 0)):
        for finding in _dicts(check.get(key)):
            host, kind = text(finding.get("host")), text(finding.get("kind"))
            if not host or not kind:
                continue
            flag = finding.get("confirmed")
            confirmed = int(flag) if isinstance(flag, bool) else default
            metric, message = text(finding.get("metric")), text(finding.get("message"))
            yield run_id, host, kind, metric, confirmed, message


def _incomplete(value: Any) -> str | None:
    """hosts[].incomplete as stored: its reason, NULL for a complete window (or none)."""
    if value is None or value is False:
        return None
    return text(value) if not isinstance(value, bool) else "incomplete measurement window"


def text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)[:MAX_TEXT]


def count(value: Any, default: int) -> int:
    number = _number(value)
    return int(number) if number is not None else default


def utc_iso(value: Any) -> str | None:
    """A report's ``started_at`` in one comparable form: ISO 8601 in UTC (naive = UTC)."""
    parsed = moment(value)
    return parsed.astimezone(UTC).isoformat() if parsed is not None else None
