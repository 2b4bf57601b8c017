"""Prometheus on the device, run by the real device runner: a launched program serves a real
prometheus_client endpoint on 127.0.0.1 with a counter that grows at a known rate and a
histogram observed with known values; beside it in the same plan, an endpoint that never
answers and one that answers garbage. The runner scrapes all three for the window; the
controller's parser turns the good one's scrapes into a rate and quantiles within 5% of the
truth the test computes from what the program did, and notes each bad endpoint while the
good one is kept."""

from __future__ import annotations

import dataclasses
import json
import socket
import statistics
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.campaign.model import Campaign
from orchestrator.profilers import prometheus
from orchestrator.report.scraped import scrape_views
from tests.support.factories import campaign, host_facts
from tests.support.session import make_plan, run_module

RATE = 250.0  # counter increments per second
OBSERVATIONS_PER_S = 400.0
# Observation k is VALUES[k % 100]: 0.005 .. 0.995 in a shuffled (stride 37) order, so any
# stretch of observations is spread evenly over the buckets, and linear interpolation
# inside a 0.1-wide bucket is close to the observations' own quantile.
VALUES = [((i * 37) % 100 + 0.5) / 100 for i in range(100)]
BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
PROGRAM = f"""\
import json
import sys
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

registry = CollectorRegistry()
work = Counter("work_items", "Items done", registry=registry)
latency = Histogram("step_seconds", "Step time", buckets={BUCKETS!r}, registry=registry)
depth = Gauge("queue_depth", "Frames waiting", ["stage"], registry=registry)
depth.labels("<b>decode</b>").set(3)
depth.labels("infer").set(4)
values = {VALUES!r}
start_http_server(int(sys.argv[1]), addr="127.0.0.1", registry=registry)
start = time.time()
with open(sys.argv[2], "w") as truth:
    truth.write(json.dumps({{"start": start}}))
done = observed = 0
while True:
    now = time.time() - start
    due = int(now * {RATE})
    work.inc(due - done)
    done = due
    while observed < int(now * {OBSERVATIONS_PER_S}):
        latency.observe(values[observed % 100])
        observed += 1
    time.sleep(0.002)
"""
WINDOW = 4.0
INTERVAL = 0.25


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Garbage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><script>alert(1)</script>\x00\xff{not: metrics}\n" * 50
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def bad_endpoints() -> Iterator[tuple[int, int]]:
    """(a port that accepts and never answers, a port that answers garbage)."""
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)
    garbage = ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=garbage.serve_forever, daemon=True).start()
    yield hang.getsockname()[1], garbage.server_address[1]
    garbage.shutdown()
    garbage.server_close()
    hang.close()


def launch_plan(tmp_path: Path, chosen: Campaign, command: list[str], window: float) -> dict:
    """The runner's plan: ``command`` launched at T0, prometheus as the campaign plans it."""
    planned = prometheus.plan(chosen, host_facts(), None)
    return make_plan(
        tmp_path,
        {"mode": "launch", "command": command},
        [dataclasses.asdict(planned)],
        window=window,
        lead=1.0,
    )


def truth_quantile(q: float, start: float, begin: float, end: float) -> float:
    """The ``q`` quantile of the observations the program made between ``begin`` and
    ``end`` (its observation k at start + k / OBSERVATIONS_PER_S)."""
    first = int((begin - start) * OBSERVATIONS_PER_S) + 1
    last = int((end - start) * OBSERVATIONS_PER_S)
    seen = sorted(VALUES[k % 100] for k in range(first, last + 1))
    return statistics.quantiles(seen, n=100, method="inclusive")[round(q * 100) - 1]


def test_a_real_endpoint_is_measured_and_bad_ones_are_noted(tmp_path, bad_endpoints):
    hang, garbage = bad_endpoints
    port = free_port()
    program = tmp_path / "serve.py"
    program.write_text(PROGRAM)
    truth = tmp_path / "truth.json"
    command = [sys.executable, str(program), str(port), str(truth)]
    good = f"http://127.0.0.1:{port}/metrics"
    endpoints = [good, f"http://localhost:{hang}/metrics", f"http://127.0.0.1:{garbage}/"]
    chosen = campaign(
        target={"launch": {"command": command}},
        profilers={
            "prometheus": {
                "endpoints": endpoints,
                "interval": f"{INTERVAL}s",
                "timeout": "0.5s",
                "metrics": ["work_items_total", "step_seconds", "queue_.*"],
                "labels": ["queue_depth"],
            }
        },
    )
    plan = launch_plan(tmp_path, chosen, command, WINDOW)

    run = run_module(tmp_path, plan, timeout=30)

    entry = run.manifest["profilers"]["prometheus"]
    # The good endpoint answered; the other two make the profiler (and the host) partial.
    assert entry["status"] == "partial", entry["reason"]
    assert run.manifest["status"] == "partial"
    assert f"{endpoints[1]}: no scrape answered" in entry["reason"]
    assert f"{endpoints[2]}: no scrape answered" in entry["reason"]
    assert good + ":" not in entry["reason"]
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")

    result = prometheus.parse(session, entry, chosen)

    records = [json.loads(line) for line in (session / "prometheus.jsonl").read_text().splitlines()]
    answered = [r for r in records if r["ep"] == 0 and "m" in r]
    assert len(answered) >= 10
    begin, end = answered[0]["t"], answered[-1]["t"]
    start = json.loads(truth.read_text())["start"]
    metrics = result.metrics
    rate = metrics["prom.work_items_total.rate_per_s"]
    assert rate == pytest.approx(RATE, rel=0.05)
    assert metrics["prom.step_seconds.rate_per_s"] == pytest.approx(OBSERVATIONS_PER_S, rel=0.05)
    for stat, q in (("p50", 0.5), ("p95", 0.95)):
        expected = truth_quantile(q, start, begin, end)
        assert metrics[f"prom.step_seconds.{stat}"] == pytest.approx(expected, rel=0.05), stat
    # A gauge: its label sets summed in the metrics, kept apart in the table.
    assert metrics["prom.queue_depth.mean"] == 7.0 and metrics["prom.queue_depth.max"] == 7.0
    notes = "\n".join(result.data_quality)
    assert f"prometheus: {endpoints[1]}: no scrape answered" in notes
    assert "no whole answer within 0.5 s" in notes
    assert f"prometheus: {endpoints[2]}: no scrape answered" in notes
    assert "not the Prometheus text format" in notes
    # The host's table: the good endpoint's families, nothing from the garbage one.
    rows = scrape_views(result.tables)
    assert {row["endpoint"] for row in rows} == {good}
    assert {row["metric"] for row in rows} == {"work_items_total", "step_seconds", "queue_depth"}
    labelled = {row["labels"]: row["mean"] for row in rows if row["labels"]}
    assert labelled == {'stage="<b>decode</b>"': 3.0, 'stage="infer"': 4.0}
    p50, p95 = (truth_quantile(q, start, begin, end) for q in (0.5, 0.95))
    print(
        f"rate {rate:.2f}/s (truth {RATE}); p50 {metrics['prom.step_seconds.p50']:.4f} "
        f"(truth {p50:.4f}); p95 {metrics['prom.step_seconds.p95']:.4f} (truth {p95:.4f})"
    )


NODE_EXPORTER = Path("/usr/bin/prometheus-node-exporter")


@pytest.mark.skipif(
    not NODE_EXPORTER.exists(), reason="no node_exporter (apt-get install prometheus-node-exporter)"
)
def test_node_exporter_cpu_and_network_series(tmp_path):
    """The real node_exporter launched as the target: its CPU seconds, summed over CPUs
    and modes, grow by one second per second per CPU (the truth: /proc/stat's CPUs), and
    its network counters are in the report, each interface apart."""
    port = free_port()
    command = [str(NODE_EXPORTER), f"--web.listen-address=127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}/metrics"
    chosen = campaign(
        target={"launch": {"command": command}},
        profilers={
            "prometheus": {
                "endpoints": [url],
                "interval": "0.5s",
                "metrics": [
                    "node_cpu_seconds_total",
                    "node_network_(receive|transmit)_bytes_total",
                ],
                "labels": ["node_network_.*"],
            }
        },
    )
    plan = launch_plan(tmp_path, chosen, command, 3.0)

    run = run_module(tmp_path, plan, timeout=30)

    entry = run.manifest["profilers"]["prometheus"]
    assert entry["status"] == "ok", entry["reason"]
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    result = prometheus.parse(session, entry, chosen)

    cpus = sum(
        1
        for line in Path("/proc/stat").read_text().splitlines()
        if line[:3] == "cpu" and line[3:4].isdigit()
    )
    metrics = result.metrics
    assert metrics["prom.node_cpu_seconds_total.rate_per_s"] == pytest.approx(cpus, rel=0.05)
    assert metrics["prom.node_network_receive_bytes_total.rate_per_s"] >= 0
    assert "prom.node_network_transmit_bytes_total.rate_per_s" in metrics
    devices = {
        row["labels"]
        for row in scrape_views(result.tables)
        if row["metric"] == "node_network_receive_bytes_total"
    }
    interfaces = {
        line.split(":", 1)[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]
    }
    named = {label for label in devices if label}
    assert named and named <= {f'device="{name}"' for name in interfaces}
    measured = metrics["prom.node_cpu_seconds_total.rate_per_s"]
    print(f"CPU seconds per second {measured:.3f} (truth {cpus})")
