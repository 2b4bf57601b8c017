"""Acceptance for what the application and the system say (issue 17), on a mixed-model
test fleet: one campaign collects the workload's own metrics (FLEETPROF_METRICS_FILE),
strace's syscall counts and the open descriptors together, and a sweep campaign runs a
benchmark once per batch size on every host at once.

The truth is the program's own: it counts what it does (the getppid calls it makes, the
files it opens and keeps, the work it finishes) and writes those counts through the
metrics protocol or into a file, and the sweep's throughput per batch follows from the
time it sleeps per batch. One host of the model with peers is starved of CPU: its
declared lower-is-better latency makes it the outlier, on that side only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.fixtures import requires_fleet
from tests.support.fleet import PYTHON, deploy

pytestmark = [pytest.mark.integration, requires_fleet]

STARVED = "edge-a-3"
CPU = 0.5

# Each round: a fixed piece of CPU work (its time: chunk_ms, lower is better; about 7 ms
# of a core, so a CPU quota of 15 ms a period stretches it), 100 getppid() calls, and
# every 0.2 s a file opened and kept (5 a second: a descriptor leak of 300 a minute). It
# writes its rates through the protocol each second.
APP = """\
import json, os, time
fd = os.open(os.environ["FLEETPROF_METRICS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
def put(name, value, unit):
    line = {"name": name, "value": value, "unit": unit, "t": time.time()}
    os.write(fd, (json.dumps(line) + "\\n").encode())
kept, started = [], time.time()
next_open = started
period_start, calls = time.time(), 0
while True:
    began = time.perf_counter()
    total = 0
    for i in range(100000):
        total += i * i
    put("chunk_ms", (time.perf_counter() - began) * 1000.0, "ms")
    for _ in range(100):
        os.getppid()
    calls += 100
    now = time.time()
    while now >= next_open:
        kept.append(open("/etc/hostname"))
        next_open += 0.2
    if now - period_start >= 1.0:
        put("getppid_per_s", calls / (now - period_start), "calls/s")
        period_start, calls = now, 0
    time.sleep(0.01)
"""

# Processes BATCH items per round in 0.05 + 0.01 x BATCH seconds (sleeping).
BENCH = """\
import json, os, sys, time
batch = int(sys.argv[2])
assert os.environ["BATCH"] == sys.argv[2]
fd = os.open(os.environ["FLEETPROF_METRICS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
while True:
    began = time.perf_counter()
    time.sleep(0.05 + 0.01 * batch)
    rate = batch / (time.perf_counter() - began)
    line = {"name": "items_per_s", "value": rate, "unit": "items/s", "t": time.time()}
    os.write(fd, (json.dumps(line) + "\\n").encode())
"""


def test_workload_metrics_strace_and_descriptors_in_one_campaign_and_a_sweep(
    fleet_factory: Any, fleetprof: Any, tmp_path: Path
) -> None:
    fleet = fleet_factory({"edge-a": {"count": 3, "cpu": CPU}, "edge-b": {"count": 1, "cpu": CPU}})
    fleet.set_cpu(STARVED, 0.15)
    app = deploy(fleet, APP, "app.py")
    campaign = tmp_path / "app.yml"
    campaign.write_text(
        "name: app-metrics\nduration: 6s\nstart: {lead: 4s}\n"
        f"target:\n  launch:\n    command: ['{PYTHON}', '{app}']\n"
        "    metrics: {chunk_ms: lower, getppid_per_s: higher}\n"
        "profilers:\n  strace: {}\n  open-files: {interval: 0.5s}\n  system: {interval: 0.5s}\n"
    )
    result = fleetprof("run", str(campaign), "-i", str(fleet.inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.report("app-metrics")
    hosts = {h["name"]: h for h in report["hosts"]}
    assert len(hosts) == 4
    for name, host in hosts.items():
        m = host["metrics"]
        context = (name, host["reason"], host["data_quality"])
        assert host["status"] == "ok", context
        assert {host["profilers"][p]["status"] for p in ("strace", "open-files")} == {"ok"}
        # The workload's own numbers came back, with their units and their series.
        assert m["workload.chunk_ms.count"] > 5 and m["workload.getppid_per_s.count"] >= 4
        units = {r["name"]: r["unit"] for r in host["tables"]["workload.metrics"]}
        assert units == {"chunk_ms": "ms", "getppid_per_s": "calls/s"}
        assert host["series"]["workload.t"] and host["series"]["workload.chunk_ms"]
        # strace counted the calls the program says it made (10%: the program's rate is
        # over whole seconds of its own, strace's over the time it traced).
        strace_rate = m["strace.syscall.getppid.calls_per_s"]
        assert strace_rate == pytest.approx(m["workload.getppid_per_s"], rel=0.10), context
        # A file kept every 0.2 s: 300 a minute, flagged as a descriptor leak.
        assert m["fds.leak"] == 1.0, context
        assert m["fds.growth_per_min"] == pytest.approx(300.0, rel=0.10), context
        # The interface counters (the fleet's hosts share the controller's loopback: each
        # sees the whole fleet's SSH traffic there).
        assert m["net.lo.rx_bytes_per_s"] > 0 and m["net.lo.tx_packets_per_s"] > 0, context
    # The starved host's work takes longer: an outlier on chunk_ms (lower is better), and
    # nobody is flagged for being faster.
    chunk = [o for o in report["outliers"] if o["metric"] == "workload.chunk_ms"]
    assert [o["host"] for o in chunk] == [STARVED], report["outliers"]
    assert chunk[0]["value"] > chunk[0]["group_median"]
    assert report["compare"]["directions"] == {"chunk_ms": "lower", "getppid_per_s": "higher"}
    run_dir = result.run_dir("app-metrics")
    page = (run_dir / "report.html").read_text()
    assert "The workload&#39;s own metrics" in page or "The workload's own metrics" in page
    assert "workload: chunk_ms" in page
    summary = (run_dir / "summary.md").read_text()
    assert "## The workload's own metrics" in summary

    # The sweep: every host runs batch 1, then 4, then 8, 2 s each, at the same times.
    bench = deploy(fleet, BENCH, "bench.py")
    fleet.set_cpu(STARVED, CPU)
    sweep = tmp_path / "sweep.yml"
    sweep.write_text(
        "name: app-sweep\nduration: 6s\nstart: {lead: 4s}\n"
        f"target:\n  launch:\n    command: ['{PYTHON}', '{bench}', '--batch', '{{BATCH}}']\n"
        "    metrics: {items_per_s: higher}\n"
        "    sweep: {variable: BATCH, values: [1, 4, 8]}\n"
        "profilers:\n  memory: {}\n"
    )
    result = fleetprof("run", str(sweep), "-i", str(fleet.inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.report("app-sweep")
    for host in report["hosts"]:
        assert host["status"] == "ok", (host["name"], host["reason"], host["data_quality"])
        runs = {r["value"]: r for r in host["tables"]["sweep.runs"]}
        assert list(runs) == ["1", "4", "8"]
        for batch in (1, 4, 8):
            truth = batch / (0.05 + 0.01 * batch)
            measured = host["metrics"][f"workload.items_per_s[{batch}]"]
            assert measured == pytest.approx(truth, rel=0.05), (host["name"], batch)
            assert runs[str(batch)]["started_s"] == pytest.approx(
                2.0 * (batch > 1) + 2.0 * (batch > 4), abs=0.5
            )
    summary_groups = report["sweep"]["groups"]
    assert sorted(summary_groups) == ["edge-a", "edge-b"]
    for group in summary_groups.values():
        assert group["items_per_s"]["best"] == "8"
    page = (result.run_dir("app-sweep") / "report.html").read_text()
    assert 'id="sweep"' in page
    # The network probe: every host measures its round trip and throughput against the
    # controller (the peer the session play serves).
    probe = tmp_path / "net.yml"
    probe.write_text("name: app-net\nduration: 3s\nstart: {lead: 4s}\ntarget: {probe: [network]}\n")
    result = fleetprof("run", str(probe), "-i", str(fleet.inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    for host in result.report("app-net")["hosts"]:
        m = host["metrics"]
        assert host["status"] == "ok", (host["name"], host["reason"], host["data_quality"])
        assert m["probe.network.send_mb_per_s"] > 1.0 and 0 < m["probe.network.rtt_ms"] < 50
    manifests = [
        json.loads(
            (
                result.run_dir("app-sweep") / "hosts" / h["name"] / "session/manifest.json"
            ).read_text()
        )
        for h in report["hosts"]
    ]
    assert all(m["target"]["exit_code"] in (0, None) for m in manifests)
