"""tcpdump's top talkers of a host (report.json ``hosts[].tables["tcpdump.talkers"]`` and
``["tcpdump.hosts"]``) as rows for report.html's "Packet capture" part and summary.md's
table: checked again (report.json may be old or edited), their first TALKER_ROWS rows. The
HTML renderer escapes every string; the markdown here goes through md_text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.profilers.tcpdump import HOSTS, TALKERS
from orchestrator.report.mdtable import md_text
from orchestrator.report.mdtable import num as _num
from orchestrator.report.mdtable import table as _table
from orchestrator.values import dicts, mapping, number, visible

TALKER_ROWS = 20
MD_ROWS = 5  # conversations per host in summary.md


def _text(value: Any) -> str:
    return visible(value)[:80] if isinstance(value, str) else "?"


def _port(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535
    return value if ok else None


def talker_views(tables: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The host's conversations and addresses, the most bytes first; {} without a capture."""
    talkers = [
        {
            "src": _text(row.get("src")),
            "dst": _text(row.get("dst")),
            "proto": _text(row.get("proto")),
            "dport": _port(row.get("dport")),
            "packets": number(row.get("packets")),
            "bytes": number(row.get("bytes")),
            "bytes_pct": number(row.get("bytes_pct")),
        }
        for row in dicts(tables.get(TALKERS))[:TALKER_ROWS]
    ]
    hosts = [
        {
            "address": _text(row.get("address")),
            **{
                key: number(row.get(key))
                for key in ("packets_sent", "bytes_sent", "packets_received", "bytes_received")
            },
        }
        for row in dicts(tables.get(HOSTS))[:TALKER_ROWS]
    ]
    if not talkers and not hosts and "tcpdump.packets" not in metrics:
        return {}
    return {
        "talkers": talkers,
        "hosts": hosts,
        **{
            key: number(metrics.get(f"tcpdump.{key}"))
            for key in ("packets", "bytes", "packets_per_s", "bytes_per_s", "dropped")
        },
    }


def talker_markdown(hosts: list[Mapping[str, Any]]) -> list[str]:
    """summary.md: one table, each host's top conversations by bytes (tcpdump)."""
    rows: list[list[str]] = []
    for host in hosts:
        view = talker_views(mapping(host.get("tables")), mapping(host.get("metrics")))
        for row in view.get("talkers", [])[:MD_ROWS]:
            port = row["dport"]
            rows.append(
                [
                    md_text(host.get("name")),
                    md_text(row["src"]),
                    md_text(row["dst"]),
                    md_text(row["proto"]),
                    str(port) if port is not None else "",
                    _num(row["packets"], 0),
                    _num(row["bytes"], 0),
                    _num(row["bytes_pct"], 1),
                ]
            )
    if not rows:
        return []
    header = ["host", "source", "destination", "protocol", "port", "packets", "bytes", "% bytes"]
    return ["## Top talkers per host (tcpdump)", "", *_table(header, rows, {4, 5, 6, 7}), ""]
