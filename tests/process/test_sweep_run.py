"""A benchmark sweep through the real runner: the runner launches fleetprof's sweep
supervisor, which runs the command once per value in equal slots of the window, the value
in the environment and in place of {BATCH} in the arguments, each run with its own metrics
file. The program's throughput per value is known (it sleeps a fixed time per batch), so
each run's KPI is checked against the formula, and the best value is the largest batch.
A value that makes the program exit at once is said, and the other runs are kept."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import pytest

from orchestrator.analysis.directions import declared_directions
from orchestrator.analysis.sweep import sweep_summary
from orchestrator.stages.sweep import read_sweep
from tests.support.session import builtin_profiler, make_plan, pid_alive, run_module

# Processes BATCH items per round; a round takes 0.05 + 0.01 x BATCH seconds (sleeping),
# so its rate is BATCH / (0.05 + 0.01 x BATCH) items/s. A batch of 0 is refused at once.
BENCH = """\
import json, os, sys, time
batch = int(os.environ["BATCH"])
assert sys.argv[1:] == ["--batch", str(batch)], sys.argv
if batch == 0:
    sys.exit(3)
fd = os.open(os.environ["FLEETPROF_METRICS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
with open(sys.argv[0] + ".pid.%d" % batch, "w") as out:
    out.write(str(os.getpid()))
while True:
    began = time.perf_counter()
    time.sleep(0.05 + 0.01 * batch)
    rate = batch / (time.perf_counter() - began)
    line = {"name": "items_per_s", "value": rate, "unit": "items/s", "t": time.time()}
    os.write(fd, (json.dumps(line) + "\\n").encode())
"""


def truth(batch: int) -> float:
    return batch / (0.05 + 0.01 * batch)


def test_each_value_runs_in_its_slot_with_its_own_metrics_and_the_best_is_named(
    tmp_path: Path,
) -> None:
    script = tmp_path / "bench.py"
    script.write_text(BENCH)
    values = ["1", "4", "0", "8"]
    plan = make_plan(
        tmp_path,
        {
            "mode": "launch",
            "command": [sys.executable, str(script), "--batch", "{BATCH}"],
            "sweep": {"variable": "BATCH", "values": values, "slot_s": 1.5},
        },
        [builtin_profiler("memory", interval=0.25)],
        window=6.0,
    )

    run = run_module(tmp_path, plan, timeout=40)

    assert run.manifest["status"] == "ok", run.manifest["reason"]
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    swept = read_sweep(session, run.manifest, "BATCH")
    rows = {r["value"]: r for r in swept.rows}
    assert list(rows) == values
    for batch in (1, 4, 8):
        row = rows[str(batch)]
        assert row["status"] == "ok" and row["ended_by"] in ("slot end", "stopped"), row
        assert row["kpis"]["items_per_s"] == pytest.approx(truth(batch), rel=0.05), batch
        assert swept.metrics[f"workload.items_per_s[{batch}]"] == row["kpis"]["items_per_s"]
        assert swept.metrics[f"workload.items_per_s.count[{batch}]"] >= 10
        # Each run was stopped at its slot's end: nothing of it is left.
        pid = int((tmp_path / f"bench.py.pid.{batch}").read_text())
        assert not pid_alive(pid)
    # Slots follow one another: run I started about I x 1.5 s after T0.
    for index, value in enumerate(values):
        assert rows[value]["started_s"] == pytest.approx(1.5 * index, abs=0.3), rows[value]
    assert rows["0"]["exit_code"] == 3 and rows["0"]["ended_by"] == "itself"
    said = "BATCH=0: the program ended by itself with exit code 3"
    assert any(said in note for note in swept.data_quality), swept.data_quality
    # The memory sampler followed every run as the supervisor's child.
    assert "memory.jsonl" in run.members()

    with declared_directions({"items_per_s": "higher"}):
        summary = sweep_summary("BATCH", values, [("h1", "model-a", {"sweep.runs": swept.rows})])
    kpi = summary["groups"]["model-a"]["items_per_s"]
    assert kpi["best"] == "8"
    assert set(kpi["values"]) == {"1", "4", "8"}  # the value that ran nothing has no cell
