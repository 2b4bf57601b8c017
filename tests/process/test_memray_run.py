"""memray inside a launched target, run by the real device runner: a real program holds a
known number of bytes allocated at a known line when the window ends; the runner sends it
SIGINT (memray closes its capture on KeyboardInterrupt), the program's own interpreter
converts the capture to JSON with memray's reader, and the controller's parser reads it.
A Python without memray: memray is skipped on the device with the reason, the program
runs without it. The programs keep their own truth (how many bytes, at which line)."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import pytest

from orchestrator.campaign.model import Campaign
from orchestrator.profilers import memray as mr
from tests.support.factories import campaign, host_facts
from tests.support.session import builtin_profiler, pyspy_profiler, run_module
from tests.support.wrapped import has_module, wrapped_plan

PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")
BLOCK = 1024 * 1024
BLOCKS = 24
HOLDER = f"""\
import time


def hold(blocks):
    kept = []
    for _ in range(blocks):
        kept.append(bytearray({BLOCK}))  # the line that allocates
    return kept


def churn():
    for _ in range(300):
        scratch = bytes(50000)  # allocated and freed, 300 times
    return scratch


data = hold({BLOCKS})
churn()
while True:
    time.sleep(0.05)
"""
HOLD_LINE = 7
CHURN_LINE = 13
CALL_LINE = 17


def memray_plan(tmp_path: Path, python: str, window: float) -> tuple[dict, Campaign]:
    program = tmp_path / "holder.py"
    program.write_text(HOLDER)
    command = [python, str(program)]
    chosen = campaign(target={"launch": {"command": command}}, profilers={"memray": {"top": 10}})
    return wrapped_plan(tmp_path, mr.plan(chosen, host_facts(), None), command, window), chosen


def test_the_holding_line_is_first_at_the_peak_within_ten_percent_of_the_truth(tmp_path):
    if not has_module(sys.executable, "memray"):
        pytest.skip("memray is not installed for this Python (pip install memray)")
    plan, chosen = memray_plan(tmp_path, sys.executable, window=4.0)

    run = run_module(tmp_path, plan, timeout=90)

    entry = run.manifest["profilers"]["memray"]
    assert entry["status"] == "ok", entry["reason"]
    assert entry["signals_sent"] == ["SIGINT(group)"]
    assert entry["post"][0]["status"] == "ok"
    assert run.result["status"] == "ok", run.result["reason"]
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    assert (session / "memray.bin").stat().st_size > 0  # for `memray flamegraph`
    result = mr.parse(session, entry, chosen)

    truth = BLOCKS * BLOCK
    for table in ("memray.peak", "memray.leaked", "memray.by_size"):
        first = result.tables[table][0]
        assert (Path(first["file"]).name, first["line"]) == ("holder.py", HOLD_LINE), table
        assert first["function"] == "hold"
        assert abs(first["size"] - truth) <= 0.10 * truth, (table, first["size"], truth)
    peak = result.tables["memray.peak"][0]
    assert peak["count"] == BLOCKS
    assert peak["traceback"][:2] == [
        f"hold {peak['file']}:{HOLD_LINE}",
        f"<module> {peak['file']}:{CALL_LINE}",
    ]
    by_count = {
        (Path(r["file"]).name, r["line"]): r["count"] for r in result.tables["memray.by_count"]
    }
    assert by_count[("holder.py", CHURN_LINE)] == 300
    metrics = result.metrics
    assert abs(metrics["memray.peak_mb"] - truth / BLOCK) <= 0.10 * truth / BLOCK + 2.0
    assert metrics["memray.leaked_mb"] >= 0.9 * truth / BLOCK
    # Held plus 300 scratch buffers of 50000 bytes, allocated and freed.
    churned = 300 * 50000
    assert metrics["memray.total_allocated_mb"] * BLOCK >= 0.95 * (truth + churned)
    assert metrics["memray.allocations"] >= BLOCKS + 300
    assert not [note for note in result.data_quality if "could not" in note]


def test_a_python_without_memray_skips_memray_with_the_reason_and_runs_the_program(tmp_path):
    if not PY38.exists():
        pytest.skip(f"no {PY38} on this machine")
    if has_module(str(PY38), "memray"):
        pytest.skip(f"{PY38} has memray installed")
    plan, chosen = memray_plan(tmp_path, str(PY38), window=2.0)
    plan["profilers"].append(builtin_profiler("memory"))  # memray alone: nothing would run

    run = run_module(tmp_path, plan, timeout=60)

    entry = run.manifest["profilers"]["memray"]
    assert entry["status"] == "skipped"
    assert entry["reason"].startswith(f"memray is not installed for the program's Python ({PY38}")
    assert "No module named 'memray'" in entry["reason"]
    # The program ran as the campaign wrote it, without the wrap, and was the window.
    assert run.manifest["window"]["ended_by"] == "deadline"
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    result = mr.parse(session, entry, chosen)
    assert result.metrics == {} and result.data_quality == []
    log = (session / "runner.log").read_text()
    assert "memray: skipped: memray is not installed" in log
    launched = next(line for line in log.splitlines() if "target: launched pid" in line)
    assert launched.endswith(f"{PY38} {tmp_path / 'holder.py'}")
    assert run.manifest["profilers"]["memory"]["status"] == "ok"
    assert run.result["status"] == "ok", run.result["reason"]


def test_py_spy_attaching_from_outside_samples_the_program_memray_runs_in(tmp_path, py_spy):
    if not has_module(sys.executable, "memray"):
        pytest.skip("memray is not installed for this Python (pip install memray)")
    plan, _chosen = memray_plan(tmp_path, sys.executable, window=3.0)
    spy = pyspy_profiler(py_spy, 3.0)
    spy["argv"].append("--idle")  # the program sleeps once it holds its memory
    plan["profilers"].append(spy)

    run = run_module(tmp_path, plan, timeout=90)

    entries = run.manifest["profilers"]
    assert entries["memray"]["status"] == "ok", entries["memray"]["reason"]
    assert entries["py-spy"]["status"] == "ok", entries["py-spy"]["reason"]
    assert str(run.manifest["target"]["pid"]) in entries["py-spy"]["argv"]
    folded = run.read(next(m for m in run.members() if m.endswith("py-spy.folded")))
    assert "holder.py" in folded
