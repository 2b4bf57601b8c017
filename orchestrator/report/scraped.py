"""The Prometheus families a host's endpoints answered (report.json
``hosts[].tables["prometheus"]``, orchestrator/profilers/prometheus.py) as rows for
report.html's "Prometheus" part and summary.md: checked again (report.json may be old or
edited); the renderers escape every name, label and URL (they come from devices).

Not to be confused with report/prometheus.py, which writes fleetprof's own results as a
node_exporter textfile."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.profilers.prometheus import STATS, TABLE
from orchestrator.report.mdtable import md_text, num, table
from orchestrator.values import dicts, mapping, number, visible


def _text(value: Any) -> str:
    return visible(value) if isinstance(value, str) else ""


def scrape_views(tables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The host's rows, as the parser kept them: families first, then kept label sets."""
    rows = []
    for row in dicts(tables.get(TABLE)):
        view: dict[str, Any] = {
            key: _text(row.get(key)) for key in ("endpoint", "metric", "labels", "type")
        }
        view.update({stat: number(row.get(stat)) for stat in STATS})
        view["scrapes"] = number(row.get("scrapes"))
        rows.append(view)
    return rows


def scrape_markdown(hosts: Sequence[Mapping[str, Any]]) -> list[str]:
    """summary.md's "Prometheus per host" table: each host's rows, escaped by md_text."""
    rows = [
        [
            md_text(host.get("name")),
            md_text(view["endpoint"]),
            md_text(view["metric"] + (f"{{{view['labels']}}}" if view["labels"] else "")),
            md_text(view["type"]),
            *(num(view[stat], 4) for stat in STATS),
        ]
        for host in hosts
        for view in scrape_views(mapping(host.get("tables")))
    ]
    if not rows:
        return []
    header = ["host", "endpoint", "family", "type", "rate /s", "mean", "max", "p50", "p95"]
    return ["## Prometheus per host", "", *table(header, rows, {4, 5, 6, 7, 8}), ""]
