"""Ctrl-C on the controller: a clean stop, a partial report, nothing left running."""

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

from tests.integration.conftest import FLEETPROF, REPO, needs_ptrace
from tests.integration.test_localhost import SPLIT_WORKLOAD

pytestmark = [pytest.mark.integration, needs_ptrace]


def running(pattern: str) -> bool:
    """Whether a process whose command line matches ``pattern`` runs on this machine."""
    found = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True)
    return found.returncode == 0


def test_ctrl_c_during_the_window_stops_cleanly_and_writes_a_partial_report(
    workload: Any, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    target = workload(SPLIT_WORKLOAD, f"--token={token}")
    campaign = tmp_path / "long.yml"
    campaign.write_text(
        f"name: long\nduration: 8s\nstart: {{lead: 1s}}\n"
        f"target:\n  attach:\n    process: '--token={token}'\n"
    )
    out = tmp_path / "reports"
    proc = subprocess.Popen(
        [*FLEETPROF, "run", str(campaign), "-o", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    # Wait until the device session has started, then interrupt the controller.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        manifests = list(out.glob("long/*/hosts/localhost/plan.json"))
        if manifests and running(f"--pid {target.pid} "):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the session never started")
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    [run_dir] = list((out / "long").iterdir())
    report = json.loads((run_dir / "report.json").read_text())
    [host] = report["hosts"]
    assert host["status"] == "failed"
    assert "interrupted" in host["reason"]
    assert (run_dir / "report.html").is_file()
    # The device session ends by its own deadline (8 s window + 10 s grace at most).
    time.sleep(1)
    limit = time.monotonic() + 20
    while time.monotonic() < limit and running(f"--pid {target.pid} "):
        time.sleep(0.5)
    assert not running(f"--pid {target.pid} ")
    assert target.poll() is None  # the profiled process itself is never touched
