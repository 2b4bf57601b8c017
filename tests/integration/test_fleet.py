"""Campaigns over a real SSH test fleet (tests/fleet): six hosts in two hardware models.

Each host is an sshd in its own PID and mount namespace and cgroup; the slow model is a
CPU quota. fleetprof reaches them only through Ansible, with host key checking on.
"""

from __future__ import annotations

import json
import stat
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator import device_bundle
from orchestrator.toolcache import PYSPY_VERSION
from tests.fleet.fixtures import requires_fleet
from tests.support.fleet import PYTHON, deploy
from tests.support.paths import REPO
from tests.support.workloads import SPLIT_WORKLOAD, function_pct

pytestmark = [pytest.mark.integration, requires_fleet]


def test_one_campaign_profiles_six_hosts_in_one_window_each_its_own_process(
    fleet_factory: Any, fleetprof: Any, tmp_path: Path
) -> None:
    # Quotas on both models keep six CPU-bound workloads from starving the controller's
    # Ansible on the 2-core CI machine (it ran 64 s without them). Fresh devices: nothing
    # of fleetprof's on them yet, so this campaign pushes the device package and py-spy.
    fleet = fleet_factory(
        {"edge-x86": {"count": 3, "cpu": 0.5}, "edge-slow": {"count": 3, "cpu": 0.3}},
        seed_tools=False,
    )
    script = deploy(fleet, SPLIT_WORKLOAD, "split_workload.py")
    for host in fleet.hosts:
        # Each device runs its own copy, tagged with its name: a host that could see
        # another's process would match two and fail, or report the wrong one.
        fleet.start_background(host.name, [PYTHON, script, f"--device={host.name}"])
    time.sleep(0.5)
    campaign = tmp_path / "fleet-attach.yml"
    campaign.write_text(
        "name: fleet-attach\nduration: 5s\nstart: {lead: 4s}\n"
        "target:\n  attach:\n    process: 'split_workload.py --device='\n"
    )
    result = fleetprof("run", str(campaign), "-i", str(fleet.inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.report("fleet-attach")
    hosts = {h["name"]: h for h in report["hosts"]}
    assert sorted(hosts) == sorted(h.name for h in fleet.hosts)
    for name, host in hosts.items():
        assert host["status"] == "ok", (name, host["reason"])
        assert host["hw_model"] == fleet.host(name).model
        manifest = json.loads(
            (result.run_dir("fleet-attach") / f"hosts/{name}/session/manifest.json").read_text()
        )
        assert manifest["target"]["cmdline"][-1] == f"--device={name}"
        assert function_pct(host, "alpha_work") > function_pct(host, "beta_work")
    offsets = [h["start_offset_ms"] for h in hosts.values()]
    assert max(offsets) - min(offsets) <= 100.0, offsets
    assert report["start_skew_ms"] <= 100.0
    assert {g["hw_model"] for g in report["groups"]} == {"edge-x86", "edge-slow"}
    # What the first campaign pushed stays, private: the package 0600, py-spy 0755, every
    # directory fleetprof made 0700.
    package = f"/root/{device_bundle.build().path}"
    pyspy = f"/root/.fleetprof/tools/py-spy/{PYSPY_VERSION}/py-spy"
    for host in fleet.hosts:
        assert mode(host.private_path(package)) == 0o600, host.name
        assert mode(host.private_path(pyspy)) == 0o755, host.name
        for path in (package, pyspy):
            for parent in Path(path).parents:
                if parent in (Path("/root"), Path("/")):
                    break
                assert mode(host.private_path(str(parent))) == 0o700, (host.name, parent)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_throttled_model_shows_a_lower_frame_rate_in_launch_mode(
    fleet_factory: Any, fleetprof: Any, tmp_path: Path
) -> None:
    fleet = fleet_factory(
        {"fast-board": {"count": 3, "cpu": 0.5}, "slow-board": {"count": 3, "cpu": 0.1}}
    )
    pipeline = deploy(fleet, REPO / "examples/workloads/video_pipeline.py", "video_pipeline.py")
    campaign = tmp_path / "fleet-launch.yml"
    campaign.write_text(
        "name: fleet-launch\nduration: 6s\nstart: {lead: 4s}\n"
        f"target:\n  launch:\n    command: ['{PYTHON}', '{pipeline}', '--fps-file', 'fps.json',"
        " '--scale', '0.25']\n"
    )
    result = fleetprof("run", str(campaign), "-i", str(fleet.inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.report("fleet-launch")
    groups = {g["hw_model"]: g for g in report["groups"]}
    fast = groups["fast-board"]["metrics"]["workload.fps"]
    slow = groups["slow-board"]["metrics"]["workload.fps"]
    assert fast["n"] == slow["n"] == 3
    assert slow["median"] < 0.7 * fast["median"], (slow, fast)
    for host in report["hosts"]:
        assert host["status"] == "ok", host["reason"]
        # A board at a tenth of a core spends much of a short window building the
        # pipeline's synthetic frames: only the fast ones must be mostly decoding.
        share = function_pct(host, "decode_frame")
        assert share > (20 if host["hw_model"] == "fast-board" else 0), host["name"]
    # The launched pipelines were stopped at the deadline on every device.
    for host in fleet.hosts:
        left = [p for p in fleet.processes(host.name) if "video_pipeline" in " ".join(p.argv)]
        assert left == [], (host.name, left)
    slow_fps = [
        h["metrics"]["workload.fps"] for h in report["hosts"] if h["hw_model"] == "slow-board"
    ]
    # The group's median is rounded to 4 decimals (report.md), the hosts' values to 6.
    assert statistics.median(slow_fps) == pytest.approx(slow["median"], abs=1e-4)
