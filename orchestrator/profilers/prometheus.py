"""prometheus: the device's own Prometheus endpoints (node_exporter, the application's
/metrics), scraped by the runner during the window (``builtin: "prometheus"``,
fleetprof_device/scrape.py), each scrape reduced on the device to the families the
campaign keeps (fleetprof_device/exposition.py) and written as one line of
``prometheus.jsonl``.

Here each family becomes metrics over the window (docs/metrics.md, prometheus): a counter
its rate, a gauge (or an untyped family) its mean and max, a histogram its observations'
rate, mean, p50 and p95 from its buckets' increases, a summary its observations' rate and
mean. A family two endpoints share is summed across them, as label sets are. Family
names come from the device: those outside Prometheus' grammar are left out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.analysis import scrape_window as window
from orchestrator.campaign.model import Campaign
from orchestrator.models import HostFacts, ProfilerPlan
from orchestrator.profilers.base import ProfileResult, ToolChoice, begin_parse
from orchestrator.values import load_json, visible
from orchestrator.values import number as finite

NAME = "prometheus"
TOOL = None
LAUNCHER = False
LAUNCH_ONLY = False
OUTPUT = "prometheus.jsonl"
# A scrape of 100 families is about 5 KB: 32 MiB is two hours of one endpoint at 1 s.
MAX_BYTES = 32 * 1024 * 1024
NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,199}")
MAX_FAMILIES = 300  # families per host in metrics (the rest: a note)
TABLE = "prometheus"
MAX_ROWS = 500  # rows of the host's table
MAX_TEXT = 200  # characters of an error or a label set shown
STATS = ("rate_per_s", "mean", "max", "p50", "p95")
QUANTILES = (("p50", 0.5), ("p95", 0.95))
# What the device counted in a scrape, and the note its largest count gets.
COUNT_NOTES = (
    ("bad_lines", "lines a scrape were not the Prometheus text format and were skipped"),
    (
        "over_metrics",
        "families a scrape left out past max_metrics (narrow profilers.prometheus.metrics)",
    ),
    ("over_series", "labelled series a scrape summed only, past max_series"),
    ("not_finite", "NaN or infinite values a scrape skipped"),
)


def tool_push(facts: HostFacts, tool: ToolChoice | None) -> dict[str, str] | None:
    return None


def plan(campaign: Campaign, facts: HostFacts, tool: ToolChoice | None) -> ProfilerPlan:
    """Planned wherever the campaign names endpoints: the runner scrapes them itself with
    the standard library, so no tool is needed; it needs no target either."""
    spec = campaign.profilers.prometheus
    assert spec is not None  # planned only when the campaign names it
    base = ProfilerPlan.sampler(NAME, OUTPUT, MAX_BYTES, spec.interval_s)
    base.options.update(
        endpoints=list(spec.endpoints),
        metrics=spec.metrics,
        labels=spec.labels,
        timeout_s=spec.timeout_s,
        max_response_bytes=spec.max_response_kb * 1024,
        max_metrics=spec.max_metrics,
        max_series=spec.max_series,
    )
    return base


# --------------------------------------------------------------------------- reading


@dataclass
class Endpoint:
    """One endpoint's scrapes as the device wrote them (untrusted, checked here)."""

    url: str
    answers: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # the largest per scrape


def _text(value: Any) -> str:
    text = visible(str(value))
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def read_scrapes(path: Path, urls: list[str]) -> tuple[list[Endpoint], int, bool]:
    """(each endpoint's scrapes in time order, malformed lines, whether the file was cut)."""
    endpoints = [Endpoint(url) for url in urls]
    with path.open("rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    cut = len(data) > MAX_BYTES
    bad = 0
    for raw in data[:MAX_BYTES].splitlines():
        if not raw.strip():
            continue
        try:
            record = load_json(raw)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if not isinstance(record, dict):
            bad += 1
            continue
        t, index = finite(record.get("t")), record.get("ep")
        if t is None or not isinstance(index, int) or not 0 <= index < len(endpoints):
            bad += 1
            continue
        endpoint = endpoints[index]
        if "error" in record:
            endpoint.errors.append((t, _text(record["error"])))
        elif isinstance(record.get("m"), dict):
            endpoint.answers.append((t, record["m"]))
            for key, _ in COUNT_NOTES:
                count = finite(record.get(key))
                if count is not None and count > endpoint.counts.get(key, 0):
                    endpoint.counts[key] = int(count)
        else:
            bad += 1
    for endpoint in endpoints:
        endpoint.answers.sort(key=lambda answer: answer[0])
    return endpoints, bad, cut


# --------------------------------------------------------------------------- one family


@dataclass
class Family:
    """One family of one endpoint over the window."""

    kind: str
    scrapes: int = 0
    rate_per_s: float | None = None
    mean: float | None = None
    max: float | None = None
    p50: float | None = None
    p95: float | None = None
    # Histograms: each bucket's increase; histograms and summaries: count and sum increases.
    buckets: list[tuple[float, float]] = field(default_factory=list)
    count_increase: float | None = None
    sum_increase: float | None = None
    span_s: float = 0.0


def _bound(value: Any) -> float | None:
    return math.inf if value == "+Inf" else finite(value)


def _buckets(metric: Mapping[str, Any]) -> dict[float, float]:
    out: dict[float, float] = {}
    raw = metric.get("b")
    for pair in raw if isinstance(raw, list) else []:
        if isinstance(pair, list) and len(pair) == 2:
            bound, count = _bound(pair[0]), finite(pair[1])
            if bound is not None and count is not None and count >= 0:
                out[bound] = count
    return out


def family_over(kind: str, points: Sequence[tuple[float, Mapping[str, Any]]]) -> Family:
    """A family's metrics over the window from its scrapes (time, the device's dict)."""
    family = Family(kind, scrapes=len(points))
    if points:
        family.span_s = points[-1][0] - points[0][0]
    if kind in ("counter",):
        values = [(t, v) for t, m in points if (v := finite(m.get("v"))) is not None]
        family.rate_per_s = window.rate(values)
        return family
    if kind in ("histogram", "summary"):
        counts = [(t, v) for t, m in points if (v := finite(m.get("count"))) is not None]
        sums = [(t, v) for t, m in points if (v := finite(m.get("sum"))) is not None]
        family.rate_per_s = window.rate(counts)
        family.count_increase = window.increase(counts)
        family.sum_increase = window.increase(sums)
        family.mean = _ratio(family.sum_increase, family.count_increase)
        if kind == "histogram":
            family.buckets = window.bucket_increases([_buckets(m) for _, m in points])
            family.p50 = window.bucket_quantile(0.5, family.buckets)
            family.p95 = window.bucket_quantile(0.95, family.buckets)
        else:
            _summary_quantiles(family, points)
        return family
    values = [(t, v) for t, m in points if (v := finite(m.get("v"))) is not None]
    if values:
        family.mean = sum(v for _, v in values) / len(values)
        family.max = max(v for _, v in values)
    return family


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def _summary_quantiles(family: Family, points: Sequence[tuple[float, Mapping[str, Any]]]) -> None:
    """A summary's own 0.5 and 0.95 quantiles, averaged over the scrapes that have them."""
    for stat, q in QUANTILES:
        seen: list[float] = []
        for _, metric in points:
            raw = metric.get("q")
            for pair in raw if isinstance(raw, list) else []:
                if isinstance(pair, list) and len(pair) == 2 and finite(pair[0]) == q:
                    value = finite(pair[1])
                    if value is not None:
                        seen.append(value)
        if seen:
            setattr(family, stat, sum(seen) / len(seen))


def _families(endpoint: Endpoint) -> Iterator[tuple[str, str, list[tuple[float, Any]]]]:
    """(name, type, its scrapes) of each family the endpoint answered with a valid name,
    the type its last scrape gave (scrapes of another type are left out)."""
    kinds: dict[str, str] = {}
    for _, metrics in endpoint.answers:
        for name, metric in metrics.items():
            if isinstance(metric, dict) and isinstance(metric.get("type"), str):
                kinds[name] = metric["type"]
    for name, kind in kinds.items():
        points = [
            (t, m[name])
            for t, m in endpoint.answers
            if isinstance(m.get(name), dict) and m[name].get("type") == kind
        ]
        yield name, kind, points


def _labelled(endpoint: Endpoint, name: str, kind: str) -> dict[str, Family]:
    """The label sets the device kept apart for a counter or gauge, each over the window."""
    series: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for t, metrics in endpoint.answers:
        metric = metrics.get(name)
        raw = metric.get("l") if isinstance(metric, dict) else None
        for pair in raw if isinstance(raw, list) else []:
            if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], dict):
                labels = ",".join(
                    f"{k}={json.dumps(str(v), ensure_ascii=False)}"
                    for k, v in sorted(pair[0].items())
                )
                series.setdefault(_text(labels), []).append((t, {"v": pair[1]}))
    return {labels: family_over(kind, points) for labels, points in series.items()}


# --------------------------------------------------------------------------- the host


def combined(families: list[Family]) -> Family:
    """One family from several endpoints: rates, means and maxima summed, histograms'
    bucket increases added before their quantiles; a summary's quantiles only from one."""
    if len(families) == 1:
        return families[0]
    kind = families[0].kind
    out = Family(kind, scrapes=sum(f.scrapes for f in families))
    out.rate_per_s = _sum(f.rate_per_s for f in families)
    if kind in ("histogram", "summary"):
        out.count_increase = _sum(f.count_increase for f in families)
        out.sum_increase = _sum(f.sum_increase for f in families)
        out.mean = _ratio(out.sum_increase, out.count_increase)
        if kind == "histogram":
            merged: dict[float, float] = {}
            for family in families:
                for bound, grown in family.buckets:
                    merged[bound] = merged.get(bound, 0.0) + grown
            out.buckets = sorted(merged.items())
            out.p50 = window.bucket_quantile(0.5, out.buckets)
            out.p95 = window.bucket_quantile(0.95, out.buckets)
    elif kind != "counter":
        out.mean = _sum(f.mean for f in families)
        out.max = _sum(f.max for f in families)
    return out


def _sum(values: Iterator[float | None] | Any) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def significant(value: float) -> float:
    """``value`` to 9 significant digits: byte counters in the billions and latencies in
    microseconds both keep theirs."""
    return float(f"{value:.9g}")


def _row(url: str, name: str, labels: str, family: Family) -> dict[str, Any]:
    row: dict[str, Any] = {"endpoint": url, "metric": name, "labels": labels, "type": family.kind}
    for stat in STATS:
        value = getattr(family, stat)
        row[stat] = None if value is None else significant(value)
    row["scrapes"] = family.scrapes
    return row


def _endpoint_notes(endpoint: Endpoint, entry: Mapping[str, Any]) -> list[str]:
    url, notes = endpoint.url, []
    tried = len(endpoint.answers) + len(endpoint.errors)
    errors: dict[str, int] = {}
    for _, text in endpoint.errors:
        errors[text] = errors.get(text, 0) + 1
    worst = max(errors.items(), key=lambda kv: kv[1])[0] if errors else None
    first = endpoint.answers[0][0] if endpoint.answers else None
    after = sum(1 for t, _ in endpoint.errors if first is not None and t > first)
    if not tried:
        refused = _refused(entry, url)
        notes.append(f"prometheus: {url}: not scraped" + (f": {refused}" if refused else ""))
    elif not endpoint.answers:
        notes.append(f"prometheus: {url}: no scrape answered ({tried} tried): {worst}")
    elif after:
        notes.append(
            f"prometheus: {url}: {len(endpoint.errors)} of {tried} scrapes failed: {worst}"
        )
    elif endpoint.errors:
        first_ones = (
            "the first scrape"
            if len(endpoint.errors) == 1
            else f"the first {len(endpoint.errors)} scrapes"
        )
        notes.append(f"prometheus: {url}: {first_ones} failed ({worst}); it answered from then on")
    if 0 < len(endpoint.answers) < 2:
        notes.append(f"prometheus: {url}: one scrape answered: no rates or quantiles")
    for key, what in COUNT_NOTES:
        if endpoint.counts.get(key):
            notes.append(f"prometheus: {url}: up to {endpoint.counts[key]} {what}")
    return notes


def _refused(entry: Mapping[str, Any], url: str) -> str | None:
    quality = entry.get("data_quality")
    listed = quality.get("endpoints") if isinstance(quality, dict) else None
    for item in listed if isinstance(listed, list) else []:
        if isinstance(item, dict) and item.get("url") == url and item.get("refused"):
            return _text(item["refused"])
    return None


def parse(session_dir: Path, entry: dict[str, Any], campaign: Campaign) -> ProfileResult:
    """prometheus.jsonl -> ``prom.<family>.<stat>`` metrics, the host's table of every
    family and kept label set per endpoint, and each endpoint's data-quality notes."""
    result, path = begin_parse(session_dir, OUTPUT)
    spec = campaign.profilers.prometheus
    if path is None or spec is None:
        return result
    notes = result.data_quality
    try:
        endpoints, bad, cut = read_scrapes(path, list(spec.endpoints))
    except OSError as error:
        notes.append(f"prometheus: {OUTPUT} could not be read: {error}")
        return result
    if bad:
        notes.append(f"prometheus: {bad} malformed lines in {OUTPUT} skipped")
    if cut:
        notes.append(f"prometheus: {OUTPUT} was cut at its size cap: the window ends early")
    by_name: dict[str, list[Family]] = {}
    rows: list[dict[str, Any]] = []
    labelled_rows: list[dict[str, Any]] = []
    invalid = 0
    for endpoint in endpoints:
        notes.extend(_endpoint_notes(endpoint, entry))
        for name, kind, points in _families(endpoint):
            if not NAME_RE.fullmatch(name):
                invalid += 1
                continue
            family = family_over(kind, points)
            by_name.setdefault(name, []).append(family)
            rows.append(_row(endpoint.url, name, "", family))
            if kind in ("counter", "gauge", "untyped"):
                for labels, series in _labelled(endpoint, name, kind).items():
                    labelled_rows.append(_row(endpoint.url, name, labels, series))
    if invalid:
        notes.append(f"prometheus: {invalid} family names outside Prometheus' grammar left out")
    names = sorted(by_name)
    if len(names) > MAX_FAMILIES:
        notes.append(
            f"prometheus: {len(names)} families; the first {MAX_FAMILIES} by name are metrics"
        )
    for name in names[:MAX_FAMILIES]:
        family = combined(by_name[name])
        for stat in STATS:
            value = getattr(family, stat)
            if value is not None and math.isfinite(value):
                result.metrics[f"prom.{name}.{stat}"] = significant(value)
    table = sorted(rows, key=lambda r: (r["metric"], r["endpoint"])) + sorted(
        labelled_rows, key=lambda r: (r["metric"], r["endpoint"], r["labels"])
    )
    if len(table) > MAX_ROWS:
        notes.append(f"prometheus: the table keeps {MAX_ROWS} of its {len(table)} rows")
    if table:
        result.tables[TABLE] = table[:MAX_ROWS]
    return result
