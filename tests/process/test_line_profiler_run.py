"""line-profiler (kernprof's auto-profile) inside a launched target, run by the real device
runner: a real program whose hot function spends most of its time on one known line, still
running at the deadline; the runner sends it SIGINT (kernprof writes its stats on
KeyboardInterrupt), the program's own interpreter converts the pickle to JSON with
line_profiler's reader, and the controller's parser reads that JSON. The program counts
its own calls: the hits of the loop's line are exact."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import pytest

from orchestrator.profilers import line_profiler as lp
from tests.support.factories import campaign, host_facts
from tests.support.session import builtin_profiler, run_module
from tests.support.wrapped import has_module, wrapped_plan

PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")
N = 2000
HOT = f"""\
import os
import sys
import time

CALLS = [0]


def work(n):
    CALLS[0] += 1
    total = 0
    for _ in range(n):
        total += sum(j * j for j in range(20))  # the hot line
    return total


def main(truth):
    # One fixed-width pwrite per call: SIGINT lands between bytecodes, never inside a
    # write, so the file always holds a whole count (a truncating open could leave it empty).
    fd = os.open(truth, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.pwrite(fd, b"%12d" % 0, 0)
    while True:
        work({N})
        os.pwrite(fd, b"%12d" % CALLS[0], 0)
        time.sleep(0)


main(sys.argv[1])
"""
DEF_LINE, HOT_LINE = 8, 12


def plan_for(tmp_path: Path, python: str, window: float):
    program = tmp_path / "hot.py"
    program.write_text(HOT)
    command = [python, str(program), str(tmp_path / "calls.txt")]
    chosen = campaign(
        target={"launch": {"command": command}},
        profilers={"line-profiler": {"functions": [str(program)], "top": 5}},
    )
    return wrapped_plan(tmp_path, lp.plan(chosen, host_facts(), None), command, window), chosen


def test_the_hot_line_is_the_hottest_of_its_function_and_its_hits_are_exact(tmp_path):
    if not has_module(sys.executable, "line_profiler"):
        pytest.skip("line_profiler is not installed for this Python (pip install line_profiler)")
    plan, chosen = plan_for(tmp_path, sys.executable, window=4.0)

    run = run_module(tmp_path, plan, timeout=90)

    entry = run.manifest["profilers"]["line-profiler"]
    assert entry["status"] == "ok", entry["reason"]
    assert entry["signals_sent"] == ["SIGINT(group)"] and entry["post"][0]["status"] == "ok"
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    assert (session / "line_profiler.lprof").stat().st_size > 0
    result = lp.parse(session, entry, chosen)

    functions = {f["function"]: f for f in result.tables["line_profiler.functions"]}
    assert {"work", "main"} <= set(functions) and functions["work"]["line"] == DEF_LINE
    lines = {r["line"]: r for r in result.tables["line_profiler.lines"] if r["function"] == "work"}
    hot = lines[HOT_LINE]
    assert hot["text"] == "        total += sum(j * j for j in range(20))  # the hot line"
    assert hot["pct"] == max(r["pct"] for r in lines.values()) and hot["pct"] > 70.0
    # Every finished call of work() ran the hot line N times; the call SIGINT cut short,
    # fewer. The program wrote how many calls it finished.
    finished = int((tmp_path / "calls.txt").read_text())
    calls = lines[DEF_LINE + 1]["hits"]  # CALLS[0] += 1: once per call
    assert calls in (finished, finished + 1)
    assert N * finished <= hot["hits"] <= N * calls
    assert abs(hot["per_hit_us"] - 1e6 * hot["time_s"] / hot["hits"]) < 0.01
    assert result.data_quality == []


def test_a_python_without_line_profiler_skips_it_with_the_reason(tmp_path):
    if not PY38.exists() or has_module(str(PY38), "line_profiler"):
        pytest.skip(f"no {PY38} without line_profiler on this machine")
    plan, _chosen = plan_for(tmp_path, str(PY38), window=2.0)
    plan["profilers"].append(builtin_profiler("memory"))

    run = run_module(tmp_path, plan, timeout=60)

    entry = run.manifest["profilers"]["line-profiler"]
    assert entry["status"] == "skipped"
    assert entry["reason"].startswith(
        f"line_profiler is not installed for the program's Python ({PY38}: "
        "`import line_profiler` failed: ModuleNotFoundError"
    )
    assert run.result["status"] == "ok", run.result["reason"]
    assert json.loads(json.dumps(run.manifest["window"]))["ended_by"] == "deadline"
