"""The workload's own numbers through the real runner: a launched program finds
FLEETPROF_METRICS_FILE in its environment, appends JSON lines there, and the controller's
reader turns them into workload.<name> metrics. The truth is what the program wrote, which
it also records apart (argv[1]); a program that floods the file is cut at the contract's
cap, whole lines kept, and the host keeps its other results."""

from __future__ import annotations

import json
import statistics
import sys
import tarfile
from pathlib import Path

from fleetprof_device.contract import WORKLOAD_METRICS_ENV, WORKLOAD_METRICS_MAX_BYTES
from orchestrator.stages.workload import read_workload
from tests.support.session import builtin_profiler, make_plan, run_module

# Writes one value of each name every 0.05 s until stopped, with a few lines fleetprof
# must skip; keeps the values it wrote in argv[1], one JSON list per name, as the truth.
WRITER = """\
import json, os, signal, sys, time
path = os.environ["FLEETPROF_METRICS_FILE"]
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
wrote = {"latency_ms": [], "queue": []}
def stop(*_):
    with open(sys.argv[1], "w") as out:
        json.dump(wrote, out)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
os.write(fd, b'not json\\n{"name": "<b>x</b>", "value": 1}\\n{"name": "q", "value": "NaN"}\\n')
i = 0
while True:
    for name, value in (("latency_ms", 10.0 + (i % 7)), ("queue", float(i % 3))):
        wrote[name].append(value)
        line = {"name": name, "value": value, "unit": "ms" if name == "latency_ms" else None,
                "t": time.time()}
        os.write(fd, (json.dumps(line) + "\\n").encode())
    i += 1
    time.sleep(0.05)
"""

FLOOD = """\
import os, time
fd = os.open(os.environ["FLEETPROF_METRICS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
line = b'{"name": "spam", "value": 1.5}\\n'
chunk = line * 20000  # 620 kB
for _ in range(32):  # 20 MB, more than twice the cap
    os.write(fd, chunk)
time.sleep(30)
"""


def launch(tmp_path: Path, source: str, *args: str, window: float) -> dict:
    script = tmp_path / "program.py"
    script.write_text(source)
    command = [sys.executable, str(script), *args]
    return make_plan(
        tmp_path,
        {"mode": "launch", "command": command},
        [builtin_profiler("memory", interval=0.5)],
        window=window,
    )


def unpack(tmp_path: Path, archive: str) -> Path:
    session = tmp_path / "session"
    with tarfile.open(archive) as tar:
        tar.extractall(session, filter="data")
    return session


def test_the_program_s_own_metrics_come_back_as_workload_metrics(tmp_path: Path) -> None:
    truth_file = tmp_path / "truth.json"
    plan = launch(tmp_path, WRITER, str(truth_file), window=2.5)

    run = run_module(tmp_path, plan, timeout=30)

    assert run.manifest["status"] == "ok", run.manifest["reason"]
    entry = run.manifest["workload_metrics"]
    assert entry["file"] == "workload.jsonl" and entry["cut_bytes"] == 0
    truth = json.loads(truth_file.read_text())
    assert len(truth["latency_ms"]) > 20
    result = read_workload(unpack(tmp_path, run.result["archive"]), run.manifest)
    m = result.metrics
    latency = truth["latency_ms"]
    assert m["workload.latency_ms.count"] == len(latency)
    assert m["workload.latency_ms"] == round(statistics.fmean(latency), 6)
    assert m["workload.latency_ms.p50"] == statistics.median(latency)
    assert m["workload.latency_ms.last"] == latency[-1]
    assert min(latency) <= m["workload.latency_ms.p95"] <= max(latency)
    assert m["workload.queue.count"] == len(truth["queue"])
    [latency_row] = [r for r in result.rows if r["name"] == "latency_ms"]
    assert latency_row["unit"] == "ms"
    # The series: seconds from T0, every point inside the window.
    times = result.series["workload.t"]
    assert 0.0 <= times[0] < 0.5 and times[-1] <= 2.5
    # What fleetprof had to skip is said, not silently lost; markup never became a name.
    notes = " ".join(result.data_quality)
    assert "2 malformed lines" in notes and "1 lines with an unusable name" in notes
    assert not any("<b>" in r["name"] for r in result.rows)


def test_a_program_flooding_the_file_is_cut_at_the_cap_and_the_host_keeps_its_results(
    tmp_path: Path,
) -> None:
    plan = launch(tmp_path, FLOOD, window=2.5)

    run = run_module(tmp_path, plan, timeout=30)

    assert run.manifest["status"] == "ok", run.manifest["reason"]
    entry = run.manifest["workload_metrics"]
    assert entry["bytes"] <= WORKLOAD_METRICS_MAX_BYTES and entry["cut_bytes"] > 0
    session = unpack(tmp_path, run.result["archive"])
    data = (session / "workload.jsonl").read_bytes()
    assert len(data) == entry["bytes"] and data.endswith(b"\n")
    result = read_workload(session, run.manifest)
    assert result.metrics["workload.spam"] == 1.5
    assert result.metrics["workload.spam.count"] == data.count(b"\n")
    assert any(WORKLOAD_METRICS_ENV in note and "dropped" in note for note in result.data_quality)
    assert "memory.jsonl" in run.members()
