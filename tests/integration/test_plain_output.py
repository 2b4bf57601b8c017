"""A campaign's output piped (a CI log, ``| tee``): an unreachable host's long reason
comes out whole, on the host's line, with no box drawing (docs/commands.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client"),
]

FLEETPROF = [sys.executable, "-m", "orchestrator.cli"]
BOX = re.compile("[\u2500-\u257f]")
# Longer than any terminal's width with the other columns beside it.
HOST = "ghost-camera-yard-north-gate-0042-behind-the-loading-dock"


def test_an_unreachable_hosts_whole_reason_reaches_a_pipe(tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.yml"
    # Nothing listens on port 9 of this loopback address: the connection is refused.
    inventory.write_text(
        f"all:\n  hosts:\n    {HOST}:\n      ansible_host: 127.0.0.9\n      ansible_port: 9\n"
        "      fleetprof_hw_model: phantom-board-with-a-long-model-name\n"
    )
    campaign = tmp_path / "piped.yml"
    campaign.write_text("name: piped\nduration: 2s\nstart: {lead: 4s}\ntarget: {probe: [cpu]}\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS", "FLEETPROF_OUTPUT")
    }
    out = tmp_path / "reports"
    done = subprocess.run(
        [*FLEETPROF, "run", str(campaign), "-i", str(inventory), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    (report_file,) = out.glob("piped/*/report.json")
    host = json.loads(report_file.read_text())["hosts"][0]
    assert host["status"] == "unreachable"
    reason = host["reason"]
    assert "refused" in reason.lower() and len(reason) > 80, reason
    lines = done.stdout.splitlines()
    row = next(line for line in lines if line.startswith(HOST))
    assert row.endswith(reason), row
    assert "phantom-board-with-a-long-model-name" in row
    assert f"  {HOST}: unreachable in preflight" in lines
    assert "preflight: 1/1 done, 1 unreachable" in lines
    assert not BOX.search(done.stdout + done.stderr), done.stdout
    assert "\x1b" not in done.stdout + done.stderr
