"""Issue acceptance: on a test host running an I/O- and memory-heavy workload, a campaign
with `system`, `iotop`, `memory` and `py-spy` reports the target's CPU %, peak RSS and I/O
rates within 10% of what the kernel itself counted for that process.

The workload (shared with the runner-level test) snapshots its own getrusage and
/proc/self/io when its steady phase starts and when the session stops it; those
snapshots travel back in the session tarball as truth.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.fixtures import requires_fleet
from tests.support.fleet import PYTHON, deploy
from tests.support.workloads import RUSAGE_WORKLOAD

pytestmark = [
    pytest.mark.integration,
    requires_fleet,
    pytest.mark.skipif(
        shutil.which("iotop") is None and not Path("/usr/sbin/iotop").exists(),
        reason="needs iotop (make test installs it as root)",
    ),
]

TOLERANCE = 0.10


def close(measured: float, truth: float, what: str) -> None:
    assert truth > 0, what
    assert abs(measured - truth) <= TOLERANCE * truth, f"{what}: {measured} vs kernel {truth}"


def test_cpu_peak_rss_and_io_rates_agree_with_the_kernel(
    fleet_factory: Any, fleetprof: Any, tmp_path: Path
) -> None:
    fleet = fleet_factory({"io-box": 1})
    script = deploy(fleet, RUSAGE_WORKLOAD, "io_memory_workload.py")
    campaign = tmp_path / "io-memory.yml"
    campaign.write_text(
        "name: io-memory\nduration: 6s\nstart: {lead: 4s}\n"
        f"target:\n  launch:\n    command: ['{PYTHON}', '{script}']\n"
        "profilers:\n"
        "  py-spy: {rate: 97}\n"
        "  system: {interval: 500ms}\n"
        "  iotop: {interval: 1s}\n"
        "  memory: {}\n"
    )
    result = fleetprof("run", str(campaign), "-i", str(fleet.inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    [host] = result.report("io-memory")["hosts"]
    assert host["status"] == "ok", host["reason"]
    for name in ("py-spy", "system", "iotop", "memory"):
        assert host["profilers"][name]["status"] == "ok", (name, host["profilers"][name])
    session = result.run_dir("io-memory") / f"hosts/{host['name']}/session"
    truth = json.loads((session / "truth.json").read_text())
    # Launched at T0 with the samplers: the window covers the program from its start.
    first, last = truth["begin"], truth["last"]
    elapsed = last["t"] - first["t"]
    metrics = host["metrics"]

    close(
        metrics["target.cpu_pct.mean"],
        100.0 * (last["cpu_s"] - first["cpu_s"]) / elapsed,
        "target CPU %",
    )
    close(metrics["target.rss_mb.peak"], last["maxrss_kb"] / 1024.0, "peak RSS (system)")
    close(metrics["memory.rss_peak_mb"], last["maxrss_kb"] / 1024.0, "peak RSS (memory)")
    write_rate = (last["write_bytes"] - first["write_bytes"]) / elapsed
    close(metrics["target.write_bytes_per_s"], write_rate, "write rate (system)")
    # iotop reports rates from its second iteration on: its first second (the program's
    # set-up, a 4 MiB file written) is not in them, only the steady phase that follows.
    steady = truth["first"]
    steady_rate = (last["write_bytes"] - steady["write_bytes"]) / (last["t"] - steady["t"])
    close(metrics["iotop.target.write_bytes_per_s.mean"], steady_rate, "write rate (iotop)")
    # The profile names the workload's own loop.
    assert any(row["file"] and "io_memory_workload" in row["file"] for row in host["top_functions"])
