"""tracemalloc through the real device runner (run as Ansible runs it): the controller's
plan, the runner's startup hook in a real program that leaks a known number of bytes a
second at a known line, stopped at the deadline; the controller's parser on what came back.
The program keeps its own truth: when it leaked each block and how big the block is."""

from __future__ import annotations

import dataclasses
import json
import sys
import tarfile
from pathlib import Path

from orchestrator.profilers import tracemalloc as tm
from orchestrator.stages.parse import profiler_cost
from tests.support.factories import campaign, host_facts
from tests.support.leaker import LEAK_LINE, LEAKER, leaked_between
from tests.support.session import make_plan, run_module


def test_the_leaking_line_is_first_by_growth_within_ten_percent_of_the_truth(tmp_path):
    program = tmp_path / "leaker.py"
    program.write_text(LEAKER)
    truth_file = tmp_path / "truth.json"
    command = [sys.executable, str(program), str(truth_file)]
    chosen = campaign(
        target={"launch": {"command": command}},
        profilers={"tracemalloc": {"interval": "1s", "frames": 3, "top": 10}},
    )
    planned = tm.plan(chosen, host_facts(), None)
    assert planned.status == "planned", planned.reason
    plan = make_plan(
        tmp_path,
        {"mode": "launch", "command": command},
        [dataclasses.asdict(planned)],
        window=6.0,
        lead=0.5,
    )

    run = run_module(tmp_path, plan, timeout=60)

    assert run.result["status"] == "ok", run.result["reason"]
    entry = run.manifest["profilers"]["tracemalloc"]
    assert entry["status"] == "ok" and entry["data_quality"]["samples"] >= 4
    assert run.manifest["window"]["ended_by"] == "deadline"
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    raw = json.loads((session / "tracemalloc.json").read_text())
    result = tm.parse(session, entry, chosen)

    growth = result.tables["tracemalloc.growth"]
    first = growth[0]
    assert (Path(first["file"]).name, first["line"]) == ("leaker.py", LEAK_LINE)
    leaked = leaked_between(truth_file, raw["first_at"], raw["last_at"])
    assert abs(first["size_diff"] - leaked) <= 0.10 * leaked, (first, leaked)
    span_min = (raw["last_at"] - raw["first_at"]) / 60.0
    assert abs(first["mb_per_min"] - leaked / 1048576 / span_min) <= 0.1 * first["mb_per_min"]
    # The program ended at SIGTERM through sys.exit: its last snapshot was taken at exit.
    assert raw["final"] is True
    assert result.metrics["tracemalloc.growth_mb"] > 0.9 * leaked / 1048576
    assert result.metrics["tracemalloc.peak_mb"] >= result.metrics["tracemalloc.current_mb"]
    top = result.tables["tracemalloc.by_size"][0]
    assert top["traceback"][0].endswith(f"leaker.py:{LEAK_LINE}")


def test_a_program_killed_before_its_first_snapshot_costs_tracemalloc_only(tmp_path):
    program = tmp_path / "quick.py"
    program.write_text("import os, time\ntime.sleep(0.3)\nos._exit(0)\n")
    command = [sys.executable, str(program)]
    chosen = campaign(
        target={"launch": {"command": command}},
        profilers={"tracemalloc": {"interval": "5s"}, "memory": {}},
    )
    planned = [tm.plan(chosen, host_facts(), None)]
    memory = {
        "name": "memory",
        "status": "planned",
        "reason": None,
        "argv": [],
        "launch_argv": [],
        "outputs": ["memory.jsonl"],
        "max_bytes": 1 << 20,
        "builtin": "memory",
        "options": {"interval_s": 0.1},
    }
    plan = make_plan(
        tmp_path,
        {"mode": "launch", "command": command},
        [dataclasses.asdict(planned[0]), memory],
        window=4.0,
        lead=0.5,
    )

    run = run_module(tmp_path, plan, timeout=60)

    # The program ended by itself with code 0 before the deadline: a complete window; only
    # tracemalloc has nothing, and says why.
    assert run.result["status"] == "partial", run.result["reason"]
    entry = run.manifest["profilers"]["tracemalloc"]
    assert entry["status"] == "failed"
    assert "wrote no snapshot" in entry["reason"]
    # The runner spent nothing on it: no overhead.tracemalloc.cpu_pct of 0 that would hide
    # what the program paid.
    assert entry["cpu_s"] is None and profiler_cost("tracemalloc", entry) == {}
    assert run.manifest["profilers"]["memory"]["status"] == "ok"
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    result = tm.parse(session, entry, chosen)
    assert result.metrics == {} and "wrote no snapshot" in result.data_quality[0]


def _tracemalloc_alone(tmp_path: Path, text: str, window: float = 4.0) -> tuple:
    """The program ``text`` launched with tracemalloc as the only profiler (interval 5 s,
    longer than the program lives); the run, its tracemalloc entry and unpacked session."""
    program = tmp_path / "program.py"
    program.write_text(text)
    command = [sys.executable, str(program)]
    chosen = campaign(
        target={"launch": {"command": command}},
        profilers={"tracemalloc": {"interval": "5s"}},
    )
    planned = tm.plan(chosen, host_facts(), None)
    assert planned.status == "planned", planned.reason
    plan = make_plan(
        tmp_path,
        {"mode": "launch", "command": command},
        [dataclasses.asdict(planned)],
        window=window,
        lead=0.5,
    )
    run = run_module(tmp_path, plan, timeout=60)
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    entry = run.manifest["profilers"]["tracemalloc"]
    return run, entry, session, tm.parse(session, entry, chosen)


def test_tracemalloc_alone_a_program_killed_before_its_first_snapshot_is_partial(tmp_path):
    # SIGKILL: no exit handler runs, so the hook never wrote. The program ran: the host is
    # partial, saying how the program ended, and what it printed is kept.
    run, entry, session, result = _tracemalloc_alone(
        tmp_path,
        "import os, signal, time\nprint('ran', flush=True)\ntime.sleep(0.3)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n",
    )

    assert run.result["status"] == "partial", run.result["reason"]
    assert "target exited at" in run.result["reason"]
    assert "with code -9" in run.result["reason"]
    assert "killed by SIGKILL before its first" in run.result["reason"]
    assert entry["status"] == "failed" and "wrote no snapshot" in entry["reason"]
    assert run.manifest["target"]["exit_code"] == -9
    assert (session / "target.stdout").read_text() == "ran\n"
    assert (session / "runner.log").is_file()
    assert result.metrics == {} and "wrote no snapshot" in result.data_quality[0]


def test_tracemalloc_alone_a_program_that_exits_at_once_is_ok_with_its_exit_snapshot(tmp_path):
    # A normal exit runs the hook's exit handler: one snapshot, final, and the host is ok.
    run, entry, session, result = _tracemalloc_alone(tmp_path, "blocks = [bytes(1000)] * 10\n")

    assert run.result["status"] == "ok", run.result["reason"]
    assert entry["status"] == "ok" and entry["data_quality"]["samples"] == 1
    assert run.manifest["window"]["ended_by"] == "target finished"
    raw = json.loads((session / "tracemalloc.json").read_text())
    assert raw["snapshots"] == 1 and raw["final"] is True
    assert "tracemalloc.peak_mb" in result.metrics


def test_tracemalloc_alone_a_program_failing_at_once_is_partial_with_its_snapshot(tmp_path):
    run, entry, _, _ = _tracemalloc_alone(tmp_path, "import sys\nsys.exit(3)\n")

    assert run.result["status"] == "partial", run.result["reason"]
    assert "with code 3" in run.result["reason"]
    assert entry["status"] == "ok" and entry["data_quality"]["samples"] == 1


def test_tracemalloc_alone_a_program_leaving_by_os_exit_is_partial_naming_why(tmp_path):
    # os._exit(0) skips the exit handlers: a complete window, but no snapshot; the reason
    # says so instead of failing the host.
    run, entry, _, _ = _tracemalloc_alone(
        tmp_path, "import os, time\ntime.sleep(0.2)\nos._exit(0)\n"
    )

    assert run.result["status"] == "partial", run.result["reason"]
    assert "ended with code 0 before its first" in run.result["reason"]
    assert "os._exit" in run.result["reason"]
    assert run.manifest["window"]["ended_by"] == "target finished"
    assert entry["status"] == "failed"
