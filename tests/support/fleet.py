"""What the tests on the SSH test fleet share beyond tests/fleet: deploying files, the
devices' Python, waiting for a session's T0."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.fleet import Fleet

PYTHON = "/usr/bin/python3"


def deploy(fleet: Fleet, source: Path | str, name: str) -> str:
    """Put a file into every host's private /opt, as a deployment would; its device path."""
    for host in fleet.hosts:
        target = Path(host.private_path(f"/opt/{name}"))
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, Path):
            shutil.copyfile(source, target)
        else:
            target.write_text(source)
    return f"/opt/{name}"


def wait_for_t0(out: Path, name: str, proc: subprocess.Popen[str], timeout: float = 120) -> float:
    """The common start (controller clock) once the session's plans are rescheduled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"fleetprof ended before the window: {proc.communicate()[0]}")
        for path in out.glob(f"{name}/*/hosts/*/plan.json"):
            plan = json.loads(path.read_text())
            t0 = plan["t0_device"] - plan["clock_offset_s"]
            # The first plan is written at planning time; the session's has a T0 in the
            # near future and the session stage has begun.
            if (path.parents[2] / "ansible/artifacts/session").exists():
                return float(t0)
        time.sleep(0.2)
    pytest.fail("the session never started")
