"""Device-side faults on the real SSH test fleet (tests/fleet): a second campaign on busy
hosts, a target that exits mid-window, a device short of disk. One small fleet serves
the module."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Fleet
from tests.fleet.fixtures import requires_fleet
from tests.support.cli import FLEETPROF_ARGV
from tests.support.fleet import PYTHON, deploy
from tests.support.paths import REPO
from tests.support.workloads import SPLIT_WORKLOAD

pytestmark = [pytest.mark.integration, requires_fleet]


@pytest.fixture(scope="module")
def fleet(module_fleet_factory: Any) -> Iterator[Fleet]:
    fleet = module_fleet_factory({"board": 2})
    yield fleet


def run(campaign: Path, fleet: Fleet, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLEETPROF_ARGV, "run", str(campaign), "-i", str(fleet.inventory), "-o", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


def report_of(out: Path, name: str) -> dict[str, Any]:
    (path,) = out.glob(f"{name}/*/report.json")
    return dict(json.loads(path.read_text()))


def test_a_second_campaign_on_busy_hosts_gets_busy_and_the_first_is_undisturbed(
    fleet: Fleet, tmp_path: Path
) -> None:
    script = deploy(fleet, SPLIT_WORKLOAD, "split_workload.py")
    for host in fleet.hosts:
        fleet.start_background(host.name, [PYTHON, script, f"--device={host.name}"])
    time.sleep(0.5)
    attach = "target:\n  attach:\n    process: 'split_workload.py --device='\n"
    first = tmp_path / "first.yml"
    first.write_text(f"name: first\nduration: 12s\nstart: {{lead: 3s}}\n{attach}")
    second = tmp_path / "second.yml"
    second.write_text(f"name: second\nduration: 3s\nstart: {{lead: 3s}}\n{attach}")
    out = tmp_path / "out"
    long_run = subprocess.Popen(
        [*FLEETPROF_ARGV, "run", str(first), "-i", str(fleet.inventory), "-o", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Start the second as soon as the first's session play begins: its runners reach
        # the devices well inside the first's 12 s window.
        deadline = time.monotonic() + 90
        while not list(out.glob("first/*/ansible/artifacts/session")):
            if time.monotonic() > deadline or long_run.poll() is not None:
                pytest.fail("the first campaign never reached its session")
            time.sleep(0.2)
        clash = run(second, fleet, out)
        output, _ = long_run.communicate(timeout=120)
    finally:
        if long_run.poll() is None:
            long_run.kill()
    assert clash.returncode == 3, clash.stdout + clash.stderr
    for host in report_of(out, "second")["hosts"]:
        assert host["status"] == "busy", host
        assert "busy: another fleetprof session holds" in host["reason"]
    assert long_run.returncode == 0, output
    for host in report_of(out, "first")["hosts"]:
        assert host["status"] == "ok", host
        assert host["metrics"]["pyspy.samples"] > 0


def test_a_target_ending_by_itself_mid_window_is_a_complete_profile(
    fleet: Fleet, tmp_path: Path
) -> None:
    # The pipeline runs about 2 s of a 6 s window, then exits on its own with code 0: it
    # started at T0 under py-spy, and its whole run is the measurement.
    pipeline = deploy(fleet, REPO / "examples/workloads/video_pipeline.py", "video_pipeline.py")
    campaign = tmp_path / "short-lived.yml"
    campaign.write_text(
        "name: short-lived\nduration: 6s\nstart: {lead: 3s}\n"
        f"target:\n  launch:\n    command: ['{PYTHON}', '{pipeline}', '--duration', '2']\n"
    )
    out = tmp_path / "out"
    result = run(campaign, fleet, out)
    assert result.returncode == 0, result.stdout + result.stderr
    for host in report_of(out, "short-lived")["hosts"]:
        assert (host["status"], host["incomplete"]) == ("ok", None), host["reason"]
        assert 2.0 <= host["metrics"]["target.runtime_s"] < 5.0, host["metrics"]
        assert host["metrics"]["pyspy.samples"] > 0


def test_a_device_short_of_disk_starts_nothing_and_says_so(fleet: Fleet, tmp_path: Path) -> None:
    campaign = tmp_path / "full-disk.yml"
    campaign.write_text(
        "name: full-disk\nduration: 3s\nstart: {lead: 3s}\ntarget: {probe: [cpu]}\n"
        "limits: {min_free_mb: 100000000}\n"
    )
    out = tmp_path / "out"
    result = run(campaign, fleet, out)
    assert result.returncode == 3, result.stdout + result.stderr
    for host in report_of(out, "full-disk")["hosts"]:
        assert host["status"] == "failed", host
        assert "below the floor of 100000000 MiB" in host["reason"], host


def provisioned_hosts(run_dir: Path) -> set[str]:
    """The hosts the provision play ran a task on (the play's own output: ``ok: [host]``,
    ``changed: [host]``)."""
    stdout = (run_dir / "ansible/artifacts/provision/stdout").read_text()
    return set(re.findall(r"^(?:ok|changed): \[([^\]]+)\]", stdout, re.MULTILINE))


def test_only_a_host_that_lacks_its_tool_is_provisioned(fleet: Fleet, tmp_path: Path) -> None:
    # Both boards have py-spy (seeded); one loses it. Preflight hashes the tool where it
    # would land: the play that pushes it runs on that board alone, and it profiles.
    import platform

    from orchestrator import toolcache
    from orchestrator.profilers.pyspy import device_path
    from tests.support.factories import host_facts

    tool = toolcache.ensure_pyspy(platform.machine())
    dest = device_path(host_facts(home=str(Path.home())), tool.version)
    keeps, lacks = fleet.hosts
    lacks.private_path(dest).unlink()
    pipeline = deploy(fleet, REPO / "examples/workloads/video_pipeline.py", "video_pipeline.py")
    campaign = tmp_path / "provision.yml"
    campaign.write_text(
        "name: provision\nduration: 3s\nstart: {lead: 2s}\n"
        f"target:\n  launch:\n    command: ['{PYTHON}', '{pipeline}', '--duration', '30']\n"
    )
    out = tmp_path / "out"
    result = run(campaign, fleet, out)
    assert result.returncode == 0, result.stdout + result.stderr
    for host in report_of(out, "provision")["hosts"]:
        assert host["status"] == "ok", host
        assert host["metrics"]["pyspy.samples"] > 0
    (run_dir,) = (out / "provision").iterdir()
    assert provisioned_hosts(run_dir) == {lacks.name}
    assert lacks.private_path(dest).read_bytes() == Path(tool.path).read_bytes()
    facts = json.loads((run_dir / f"hosts/{keeps.name}/facts.json").read_text())
    assert facts["file_sha256"] == {dest: tool.sha256}
