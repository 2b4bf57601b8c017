"""strace run by the real device runner on a launched program that counts its own calls of
one syscall: strace's count within 2% of the program's count over the time strace traced it.

The program calls getppid() in a loop and, every CHECK calls, reads its own TracerPid from
/proc/self/status (pread on a descriptor it keeps open: one syscall, not getppid): the
count when a tracer first appears and the last count while one is there. Their difference
is the truth, independent of clocks: strace attaches after the runner launched the program
and detaches when the runner sends it SIGINT at the deadline. Also: a target blocked the
whole window (nothing counted, still ok), and what py-spy does beside strace (the plan's
ptrace rule)."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from fleetprof_device.contract import STOP_AT_DEADLINE_OPTION
from orchestrator.profilers import strace
from tests.support.factories import campaign, host_facts
from tests.support.session import make_plan, run_module

CHECK = 32
WINDOW_S = 3.0
PROGRAM = f"""\
import os
import sys
import time

status = os.open("/proc/self/status", os.O_RDONLY)
truth = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)


def traced():
    text = os.pread(status, 4096, 0)
    start = text.index(b"TracerPid:") + len(b"TracerPid:")
    return int(text[start : text.index(b"\\n", start)]) != 0


count, first, last, first_t, last_t = 0, -1, -1, 0.0, 0.0
while True:
    os.getppid()
    count += 1
    if count % {CHECK} == 0 and traced():
        if first < 0:
            first, first_t = count, time.monotonic()
        last, last_t = count, time.monotonic()
        # One fixed-width pwrite: the file always holds a whole record.
        os.pwrite(truth, b"%20d %20d %20.6f\\n" % (first, last, last_t - first_t), 0)
"""


def test_strace_counts_the_programs_getppid_calls_within_2_percent(tmp_path: Path) -> None:
    binary = shutil.which("strace")
    if binary is None:
        pytest.skip("strace is not installed")
    program = tmp_path / "getppid_loop.py"
    program.write_text(PROGRAM)
    truth = tmp_path / "truth.txt"
    command = ["python3", str(program), str(truth)]
    chosen = campaign(target={"launch": {"command": command}}, profilers={"strace": {}})
    planned = strace.plan(chosen, host_facts(tools={"strace": binary}), None)
    assert planned.status == "planned" and planned.options[STOP_AT_DEADLINE_OPTION] is True
    plan = make_plan(
        tmp_path,
        {"mode": "launch", "command": command},
        [dataclasses.asdict(planned)],
        window=WINDOW_S,
        lead=1.0,
    )

    run = run_module(tmp_path, plan, timeout=60)

    entry = run.manifest["profilers"]["strace"]
    if "Operation not permitted" in entry.get("stderr_tail", ""):
        pytest.skip(f"strace may not trace here: {entry['stderr_tail'][-200:]}")
    # Stopped with SIGINT at the deadline, not 2 s after it; that exit is its normal end.
    assert entry["status"] == "ok", entry["reason"]
    assert entry["signals_sent"] == ["SIGINT"]
    deadline = run.manifest["deadline_device"]
    assert entry["stopped_at_device"] - deadline < 1.0
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    result = strace.parse(session, entry, chosen)

    first, last, traced_s = truth.read_text().split()
    expected = int(last) - int(first)
    counted = next(r for r in result.tables[strace.TABLE] if r["syscall"] == "getppid")["calls"]
    print(
        f"getppid: program {expected} while traced ({float(traced_s):.2f} s, "
        f"{expected / float(traced_s):.0f}/s), strace {counted}; "
        f"strace.calls_per_s {result.metrics['strace.calls_per_s']}; stopped "
        f"{entry['stopped_at_device'] - deadline:.3f} s after the deadline"
    )
    assert expected > 1000
    assert counted == pytest.approx(expected, rel=0.02)
    assert result.metrics["strace.syscall.getppid.calls_per_s"] == pytest.approx(
        counted / result.metrics["strace.traced_s"], rel=1e-3
    )
    assert result.data_quality == []


def test_a_target_blocked_the_whole_window_is_ok_with_nothing_counted(tmp_path: Path) -> None:
    binary = shutil.which("strace")
    if binary is None:
        pytest.skip("strace is not installed")
    chosen = campaign(profilers={"strace": {}})
    planned = strace.plan(chosen, host_facts(tools={"strace": binary}), None)
    # In its one nanosleep from long before the window opens to after it closes: strace
    # sees no call end, and writes nothing.
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        plan = make_plan(
            tmp_path, {"mode": "attach", "pid": sleeper.pid}, [dataclasses.asdict(planned)]
        )
        run = run_module(tmp_path, plan, timeout=60)
    finally:
        sleeper.kill()
        sleeper.wait()

    entry = run.manifest["profilers"]["strace"]
    if "Operation not permitted" in entry.get("stderr_tail", ""):
        pytest.skip(f"strace may not trace here: {entry['stderr_tail'][-200:]}")
    assert entry["status"] == "ok", entry["reason"]
    assert entry["outputs"]["strace.txt"]["bytes"] == 0 and entry["signals_sent"] == ["SIGINT"]
    assert run.result["status"] == "ok", run.result["reason"]
    session = tmp_path / "session"
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    result = strace.parse(session, entry, chosen)
    assert result.metrics == {} and result.data_quality == [strace.NO_CALLS]


def test_the_ptrace_rule_rests_on_what_py_spy_does_beside_strace(
    tmp_path: Path, py_spy: str
) -> None:
    """strace.yield_to_pyspy's premise, measured: with strace attached, a blocking py-spy
    cannot take its first sample (EPERM), and a nonblocking one samples throughout."""
    binary = shutil.which("strace")
    if binary is None:
        pytest.skip("strace is not installed")
    program = tmp_path / "loop.py"
    program.write_text("import os\nwhile True:\n    os.getppid()\n")
    target = subprocess.Popen(["python3", str(program)])
    tracer = None
    try:
        time.sleep(0.3)
        tracer = subprocess.Popen(
            [binary, "-c", "-f", "-o", str(tmp_path / "strace.txt"), "-p", str(target.pid)],
            stderr=subprocess.PIPE,
        )
        time.sleep(0.3)
        record = [py_spy, "record", "--pid", str(target.pid), "--duration", "1"]
        record += ["--rate", "50", "--format", "raw"]
        blocking = subprocess.run(
            [*record, "--output", str(tmp_path / "b.folded")], capture_output=True, text=True
        )
        nonblocking = subprocess.run(
            [*record, "--output", str(tmp_path / "n.folded"), "--nonblocking"],
            capture_output=True,
            text=True,
        )
    finally:
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=10)
        target.kill()
        target.wait()
    assert blocking.returncode != 0
    assert "Failed to suspend process" in blocking.stderr + blocking.stdout
    assert nonblocking.returncode == 0, nonblocking.stderr
    assert (tmp_path / "n.folded").stat().st_size > 0
    assert "getppid" in (tmp_path / "strace.txt").read_text()  # strace kept counting
