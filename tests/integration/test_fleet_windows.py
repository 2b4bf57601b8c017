"""Complete windows on the real SSH test fleet (tests/fleet): a device frozen across T0
(its runner already waiting) starts half a window late; the report marks it incomplete
and partial, names the late start, and its peers stay complete and ok."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.fixtures import requires_fleet
from tests.support.cli import FLEETPROF_ARGV
from tests.support.fleet import wait_for_t0
from tests.support.paths import REPO

pytestmark = [pytest.mark.integration, requires_fleet]

WINDOW_S = 8.0


def test_a_host_frozen_across_t0_is_incomplete_and_its_peers_are_not(
    fleet_factory: Any, tmp_path: Path
) -> None:
    fleet = fleet_factory({"board": 3})
    late = fleet.hosts[1].name
    campaign = tmp_path / "windows.yml"
    campaign.write_text(
        # A long lead: on a machine loaded by other fleets a peer's runner may otherwise
        # be started late by the controller itself (measured: 6.1 s at load 18 on two
        # cores), and it would rightly be incomplete too.
        f"name: windows\nduration: {WINDOW_S:g}s\nstart: {{lead: 20s}}\n"
        "target: {probe: [memory]}\n"
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*FLEETPROF_ARGV, "run", str(campaign), "-i", str(fleet.inventory), "-o", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        t0 = wait_for_t0(out, "windows", proc)
        # Freeze the device once its runner waits for T0, thaw it half a window after T0.
        until = time.monotonic() + 60
        while not any("fleetprof_session" in p.args for p in fleet.processes(late)):
            assert time.monotonic() < until, "the runner never started on the device"
            time.sleep(0.1)
        assert time.time() < t0 - 0.3, "the runner started too close to T0 to freeze it first"
        # Frozen as briefly as the test allows: a device silent for 15 s loses its SSH
        # connection (ServerAliveInterval 5 x 3) and would be unreachable, not late.
        time.sleep(max(0.0, t0 - 1.0 - time.time()))
        fleet.freeze(late)
        time.sleep(max(0.0, t0 + WINDOW_S / 2 - time.time()))
        fleet.thaw(late)
        output, _ = proc.communicate(timeout=180)
    finally:
        fleet.thaw(late)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, output  # the run finished, one host not ok
    (report_file,) = out.glob("windows/*/report.json")
    hosts = {h["name"]: h for h in json.loads(report_file.read_text())["hosts"]}
    for name, host in hosts.items():
        assert "incomplete" in host
        if name == late:
            assert host["status"] == "partial", (host["reason"], output[-2000:])
            assert host["incomplete"].startswith("started "), host["incomplete"]
            assert host["incomplete"].endswith(f" s late in a {WINDOW_S:g} s window")
            late_s = float(host["incomplete"].split()[1])
            assert WINDOW_S / 2 - 1.0 <= late_s <= WINDOW_S / 2 + 1.5, host["incomplete"]
            assert host["reason"].endswith("incomplete: " + host["incomplete"])
        else:
            assert (host["status"], host["incomplete"]) == ("ok", None), (name, host["reason"])
