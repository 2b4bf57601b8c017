"""The prometheus profiler's parser: scrapes of a real prometheus_client registry, reduced by
the device's own parser (fleetprof_device/exposition.py) exactly as the runner writes them,
at times the test sets, so every rate and quantile has an exact truth; counter resets;
device output that is hostile; the report's part, escaped."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from fleetprof_device import arguments, exposition
from fleetprof_device.errors import InvocationError
from orchestrator.analysis.scrape_window import bucket_quantile, increase, rate
from orchestrator.campaign.loader import load_campaign
from orchestrator.campaign.messages import CampaignError
from orchestrator.campaign.model import Campaign
from orchestrator.profilers import prometheus
from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown
from orchestrator.stages.plan import make_plan
from tests.support.factories import host_facts
from tests.support.reports import PWN_SCRIPT, fleet_report, start_tags

GOOD = "http://127.0.0.1:9100/metrics"
BAD = "http://localhost:8000/metrics"


def chosen(**spec: Any) -> Campaign:
    data = {
        "name": "unit",
        "duration": "30s",
        "target": {"launch": {"command": ["python3", "app.py"]}},
        "profilers": {"prometheus": {"endpoints": [GOOD, BAD], **spec}},
    }
    return Campaign.from_mapping(data, source=Path("unit.yml"))


def record(t: float, ep: int, registry: CollectorRegistry, **keep: Any) -> dict[str, Any]:
    """What the runner writes for one answered scrape of ``registry`` at ``t``."""
    parsed = exposition.parse(generate_latest(registry).decode(), **keep)
    return {"t": t, "ep": ep, "ms": 1.0, "bytes": 1, "m": parsed.metrics, **parsed.counts()}


def write(tmp_path: Path, records: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    (tmp_path / prometheus.OUTPUT).write_text("\n".join(lines) + "\n")
    return tmp_path


def test_window_math_matches_promql() -> None:
    # A reset: 5 -> 10 (+5), 10 -> 3 (reset: +3), 3 -> 8 (+5).
    assert increase([(0, 5), (1, 10), (2, 3), (3, 8)]) == 13
    assert rate([(10, 0), (14, 100)]) == 25 and rate([(10, 5)]) is None
    buckets = [(0.1, 10.0), (0.2, 20.0), (float("inf"), 20.0)]
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.1)
    assert bucket_quantile(0.75, buckets) == pytest.approx(0.15)
    assert bucket_quantile(0.25, buckets) == pytest.approx(0.05)  # the first bucket from 0
    # A rank in +Inf answers the highest finite bound; no observation, no quantile.
    assert bucket_quantile(0.99, [(0.1, 1.0), (float("inf"), 10.0)]) == 0.1
    assert bucket_quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    # Counts falling with the bound (read across a reset) are evened out.
    assert bucket_quantile(0.5, [(1.0, 4.0), (2.0, 3.0), (float("inf"), 8.0)]) == 1.0


def test_rates_means_and_quantiles_over_the_window(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    frames = Counter("frames", "Frames", ["stage"], registry=registry)
    depth = Gauge("queue_depth", "Waiting", registry=registry)
    infer = Histogram("infer_seconds", "Inference", buckets=(0.1, 0.2, 0.4), registry=registry)
    records = []
    keep = {"labelled": exposition.regex_filter(["frames_total"])}
    for step in range(5):  # a scrape every 2 s: 30 + 10 frames/s, depth 1..5
        if step:
            frames.labels("decode").inc(60)
            frames.labels("infer").inc(20)
            for value in (0.05, 0.15, 0.15, 0.3):  # 1 in (0, 0.1], 2 in (0.1, 0.2], 1 above
                infer.observe(value)
        depth.set(step + 1)
        records.append(record(100.0 + 2 * step, 0, registry, **keep))
    records.append({"t": 101.0, "ep": 1, "error": "connection refused"})

    result = prometheus.parse(write(tmp_path, records), {}, chosen(labels=["frames_total"]))

    metrics = result.metrics
    assert metrics["prom.frames_total.rate_per_s"] == pytest.approx(40.0)
    assert metrics["prom.queue_depth.mean"] == 3.0 and metrics["prom.queue_depth.max"] == 5.0
    assert metrics["prom.infer_seconds.rate_per_s"] == pytest.approx(2.0)
    assert metrics["prom.infer_seconds.mean"] == pytest.approx(0.1625)
    # 16 observations, 4 / 8 / 4 in the buckets: rank 8 is halfway through (0.1, 0.2]'s
    # 8, rank 15.2 in (0.2, 0.4].
    assert metrics["prom.infer_seconds.p50"] == pytest.approx(0.15)
    assert metrics["prom.infer_seconds.p95"] == pytest.approx(0.2 + 0.2 * (15.2 - 12) / 4)
    assert not [name for name in metrics if "created" in name]
    rows = result.tables[prometheus.TABLE]
    labelled = {r["labels"]: r["rate_per_s"] for r in rows if r["labels"]}
    assert labelled == {'stage="decode"': pytest.approx(30.0), 'stage="infer"': pytest.approx(10.0)}
    assert result.data_quality == [
        f"prometheus: {BAD}: no scrape answered (1 tried): connection refused"
    ]


def test_a_counter_reset_and_two_endpoints_sharing_a_family(tmp_path: Path) -> None:
    records = []
    for step, value in enumerate((100.0, 150.0, 20.0, 70.0)):  # reset after 150
        records.append(
            {"t": 10.0 + step, "ep": 0, "m": {"jobs_total": {"type": "counter", "v": value}}}
        )
        records.append(
            {"t": 10.0 + step, "ep": 1, "m": {"jobs_total": {"type": "counter", "v": 5.0 * step}}}
        )

    records.insert(0, {"t": 9.5, "ep": 0, "error": "connection refused"})  # still starting

    result = prometheus.parse(write(tmp_path, records), {}, chosen())

    # Endpoint 0: +50, +20 (reset), +50 over 3 s = 40/s; endpoint 1: 5/s; summed.
    assert result.metrics == {"prom.jobs_total.rate_per_s": pytest.approx(45.0)}
    assert [r["rate_per_s"] for r in result.tables[prometheus.TABLE]] == [40.0, 5.0]
    assert result.data_quality == [
        f"prometheus: {GOOD}: the first scrape failed (connection refused); "
        "it answered from then on"
    ]


def test_hostile_device_output_is_checked_capped_and_noted(tmp_path: Path) -> None:
    bad_name = PWN_SCRIPT
    records = [
        "not json",
        json.dumps({"t": 1.0, "ep": 7, "m": {}}),  # no such endpoint
        json.dumps({"t": 1.0, "ep": "0", "m": {}}),
        json.dumps({"t": 2.0, "ep": 0, "m": {bad_name: {"type": "gauge", "v": 1}}}),
        json.dumps({"t": 3.0, "ep": 0, "m": {"ok": {"type": "gauge", "v": "NaN"}}}),
        json.dumps({"t": 4.0, "ep": 0, "m": {"ok": {"type": "gauge", "v": 2}}, "bad_lines": 3}),
        json.dumps({"t": 5.0, "ep": 1, "error": PWN_SCRIPT + "\x1b[2J" + "x" * 500}),
        json.dumps({"t": 6.0, "ep": 0, "m": {"h": {"type": "histogram", "b": "nope"}}}),
    ]

    result = prometheus.parse(write(tmp_path, records), {}, chosen())

    assert result.metrics == {"prom.ok.mean": 2.0, "prom.ok.max": 2.0}
    notes = result.data_quality
    assert "prometheus: 3 malformed lines in prometheus.jsonl skipped" in notes
    assert "prometheus: 1 family names outside Prometheus' grammar left out" in notes
    assert f"prometheus: {GOOD}: up to 3 lines a scrape were not the Prometheus text format" in (
        "\n".join(notes)
    )
    error_note = next(n for n in notes if n.startswith(f"prometheus: {BAD}"))
    assert "\x1b" not in error_note and len(error_note) < 300


def test_plan_carries_the_campaign_and_the_report_escapes_what_devices_wrote(
    tmp_path: Path,
) -> None:
    planned = prometheus.plan(chosen(metrics=["node_.*"], timeout="1s"), host_facts(), None)
    assert planned.builtin == "prometheus" and planned.outputs == [prometheus.OUTPUT]
    assert planned.options == {
        "interval_s": 5.0,
        "endpoints": [GOOD, BAD],
        "metrics": ["node_.*"],
        "labels": None,
        "timeout_s": 1.0,
        "max_response_bytes": 4096 * 1024,
        "max_metrics": 100,
        "max_series": 100,
    }
    report = fleet_report()
    row = {
        "endpoint": GOOD,
        "metric": "app_frames_total",
        "labels": f'stage="{PWN_SCRIPT}\x1b[2J"',
        "type": "counter",
        "rate_per_s": 12.5,
        "mean": None,
        "max": None,
        "p50": None,
        "p95": None,
        "scrapes": 9,
    }
    report["hosts"][0].setdefault("tables", {})[prometheus.TABLE] = [row]

    page = render_html(report)
    assert page.count("<h3>Prometheus") == 1 and ">12.5000<" in page
    assert "<script>document.title" not in page and "\x1b" not in page
    assert len([t for t in start_tags(page) if t[0] == "script"]) == 1
    text = render_markdown(report)
    section = text.split("## Prometheus per host", 1)[1].split("\n## ", 1)[0]
    line = next(ln for ln in section.splitlines() if ln.startswith("| edge-01"))
    assert "app\\_frames\\_total\\{stage=" in line and "12.5000" in line
    assert "<script>" not in line and "\x1b" not in line
    assert "<h3>Prometheus" not in render_html(fleet_report())


def test_a_summarys_own_quantiles_and_observations(tmp_path: Path) -> None:
    def scrape(t: float, count: float, total: float, median: float) -> dict[str, Any]:
        metric = {"type": "summary", "count": count, "sum": total, "q": [[0.5, median]]}
        return {"t": t, "ep": 0, "m": {"rpc_seconds": metric}}

    records = [scrape(0.0, 10, 1.0, 0.1), scrape(2.0, 30, 5.0, 0.3)]

    metrics = prometheus.parse(write(tmp_path, records), {}, chosen()).metrics

    assert metrics == {
        "prom.rpc_seconds.rate_per_s": 10.0,
        "prom.rpc_seconds.mean": 0.2,
        "prom.rpc_seconds.p50": 0.2,
    }


@pytest.mark.parametrize("low", [True, False])
def test_a_plan_the_controller_makes_the_device_accepts_at_every_bound(low: bool) -> None:
    spec = {
        "endpoints": [f"http://127.0.0.1:{9100 + i}/metrics" for i in range(1 if low else 8)],
        "interval": "0.1s" if low else "60s",
        "timeout": "0.1s" if low else "30s",
        "max_response_kb": 1 if low else 16384,
        "max_metrics": 1 if low else 1000,
        "max_series": 1 if low else 1000,
        "metrics": ["a"] if low else ["node_.*", "app_(frames|bytes)_total"],
        "labels": ["a"],
    }
    made = make_plan(chosen(**spec), host_facts(), "20261125-111500-ab12", {}, time.time() + 60)
    # The plan as the device reads it: JSON, checked by the runner's own validator.
    plan = json.loads(json.dumps(made.to_dict()))
    arguments.validate_plan(plan)
    entry = next(p for p in plan["profilers"] if p["name"] == "prometheus")
    entry["options"]["endpoints"][-1] = "http://192.0.2.1:80/"
    entry["options"]["timeout_s"] = 31
    with pytest.raises(InvocationError) as error:
        arguments.validate_plan(plan)
    assert "loopback" in str(error.value) and "timeout_s" in str(error.value)


@pytest.mark.parametrize(
    ("endpoints", "extra", "says"),
    [
        (
            '["http://127.0.0.1:9100/metrics", "http://10.0.0.5:9100/metrics"]',
            "",
            "9:50: profilers.prometheus.endpoints[1]: only the device's own loopback is "
            "scraped, not 10.0.0.5: 'http://10.0.0.5:9100/metrics' (endpoints on the device "
            "itself only)",
        ),
        (
            '["http://edge-7.lan:9100/metrics"]',
            "",
            "profilers.prometheus.endpoints[0]: the host must be localhost or a loopback address",
        ),
        ('["https://127.0.0.1:9100/metrics"]', "", "only http:// is scraped (got https://)"),
        (
            '["http://127.0.0.1:9100/metrics"]',
            "\n    metrics: [node_.*, '(']",
            "profilers.prometheus.metrics[1]: expected a regular expression matched against "
            "whole family names, got '(': missing ), unterminated subpattern",
        ),
        (
            '["http://127.0.0.1:9100/metrics"]',
            "\n    timeout: 1m",
            "profilers.prometheus.timeout: expected a timeout from 0.1s to 30s, like 2s, got 1m",
        ),
    ],
)
def test_a_campaign_naming_another_host_or_a_bad_key_is_exit_2_naming_file_and_key(
    tmp_path: Path, endpoints: str, extra: str, says: str
) -> None:
    path = tmp_path / "c.yml"
    path.write_text(
        "name: c\nduration: 10s\ntarget:\n  launch:\n    command: [python3, app.py]\n"
        f"profilers:\n  prometheus:\n    interval: 1s\n    endpoints: {endpoints}{extra}\n"
    )
    with pytest.raises(CampaignError) as error:
        load_campaign(path)
    assert str(path) in str(error.value) and says in str(error.value)
