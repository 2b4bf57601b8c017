"""Ctrl-C on the controller: the cleanup play stops the device sessions, collect brings
back what they measured, a partial report is written, nothing is left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import FLEETPROF_ARGV, needs_ptrace
from tests.support.paths import REPO
from tests.support.workloads import SPLIT_WORKLOAD

pytestmark = [pytest.mark.integration, needs_ptrace]


def running(pattern: str) -> bool:
    """Whether a process whose command line matches ``pattern`` runs on this machine."""
    found = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True)
    return found.returncode == 0


def start_long_run(
    workload: Any, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], Path, subprocess.Popen[str]]:
    """A 30 s campaign attached to a fresh workload, returned once its device session runs
    (py-spy sampling the target): the workload, the output root and the controller."""
    token = uuid.uuid4().hex
    target = workload(SPLIT_WORKLOAD, f"--token={token}")
    campaign = tmp_path / "long.yml"
    campaign.write_text(
        f"name: long\nduration: 30s\nstart: {{lead: 1s}}\n"
        f"target:\n  attach:\n    process: '--token={token}'\n"
    )
    out = tmp_path / "reports"
    proc = subprocess.Popen(
        [*FLEETPROF_ARGV, "run", str(campaign), "-o", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    # Wait until the device session has started; the caller interrupts the controller.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if list(out.glob("long/*/hosts/localhost/plan.json")) and running(f"--pid {target.pid} "):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the session never started")
    return target, out, proc


def test_ctrl_c_during_the_window_stops_cleanly_and_writes_a_partial_report(
    workload: Any, tmp_path: Path
) -> None:
    target, out, proc = start_long_run(workload, tmp_path)
    time.sleep(2)  # a few samples to bring back
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert time.monotonic() - interrupted < 20, "the 30 s window should not be waited out"
    assert "Traceback" not in output
    [run_dir] = list((out / "long").iterdir())
    report = json.loads((run_dir / "report.json").read_text())
    [host] = report["hosts"]
    # The cleanup play stopped the device session; collect brought back what it measured.
    assert host["status"] == "partial", host
    assert "SIGTERM" in host["reason"], host
    assert host["metrics"].get("pyspy.samples", 0) > 0, host["metrics"]
    assert (run_dir / "report.html").is_file()
    # Stopped now, not at the session's own deadline: nothing of it is left running.
    assert not running(f"--pid {target.pid} ")
    assert target.poll() is None  # the profiled process itself is never touched


def test_a_controller_killed_outright_is_recovered_by_fleetprof_collect(
    workload: Any, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    target = workload(SPLIT_WORKLOAD, f"--token={token}")
    campaign = tmp_path / "lost.yml"
    campaign.write_text(
        f"name: lost\nduration: 6s\nstart: {{lead: 1s}}\n"
        f"target:\n  attach:\n    process: '--token={token}'\n"
    )
    out = tmp_path / "reports"
    proc = subprocess.Popen(
        [*FLEETPROF_ARGV, "run", str(campaign), "-o", str(out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not running(f"--pid {target.pid} "):
        time.sleep(0.2)
    # The controller and everything it started (ansible-playbook, ssh) die at once, as in
    # a power cut; the device's runner is on its own.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    [run_dir] = list((out / "lost").iterdir())
    # ansible-runner starts ansible-playbook in a session of its own: a power cut takes it
    # too, a killpg does not.
    subprocess.run(["pkill", "-KILL", "-f", f"ansible-playbook.*{run_dir}"], check=False)
    assert not (run_dir / "report.json").exists()
    collected = subprocess.run(
        [*FLEETPROF_ARGV, "collect", str(run_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    assert collected.returncode == 0, collected.stdout + collected.stderr
    report = json.loads((run_dir / "report.json").read_text())
    [host] = report["hosts"]
    assert host["status"] == "ok", host
    assert host["metrics"]["pyspy.samples"] > 0
    # collect waited for the session's deadline: nothing of it outlived deadline + grace.
    assert not running(f"--pid {target.pid} ")
    again = subprocess.run(
        [*FLEETPROF_ARGV, "collect", str(run_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr  # nothing left to fetch: the report stands


def test_a_second_ctrl_c_exits_at_once_and_leaves_no_playbook(
    workload: Any, tmp_path: Path
) -> None:
    """The second Ctrl-C ends ansible-playbook too, within a second (the watchdog alone
    took up to 8 s: SIGTERM, then SIGKILL after its grace). The device session still ends
    by itself at its deadline, as docs/faults.md says."""
    target, out, proc = start_long_run(workload, tmp_path)
    [run_dir] = list((out / "long").iterdir())
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)  # the first one starts the cleanup play
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=10)
    exited = time.monotonic()
    assert proc.returncode == 130, output
    while running(f"ansible-playbook.*{run_dir}") and time.monotonic() - exited < 5:
        time.sleep(0.1)
    assert time.monotonic() - exited < 1.0, "ansible-playbook outlived the second Ctrl-C"
    subprocess.run(["pkill", "-f", "--", f"--pid {target.pid} "], check=False)
