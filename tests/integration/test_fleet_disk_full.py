"""A device whose disk fills to the last byte mid-window, on the real SSH test fleet
(issue 14, item 4): the host still comes back `partial` with its samples.

One host's home (/root: the fleetprof home with the workdir and archive, Ansible's
remote tmp and its async job files, all on one file system as on most devices) is a
small tmpfs in that host's own mount namespace; once its window opens, dd fills it. The
runner's disk floor stops the session, its reserve pays for the manifest, the archive
would leave the disk full so it is not kept, and the collect play fetches the workdir's
files one by one. The other host is untouched and `ok`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator import device_bundle
from tests.fleet import Fleet
from tests.fleet.fixtures import requires_fleet
from tests.support.cli import FLEETPROF_ARGV
from tests.support.paths import REPO

pytestmark = [pytest.mark.integration, requires_fleet]

FULL, OTHER = "board-1", "board-2"
CAMPAIGN = """\
name: disk-full
duration: 8s
start: {lead: 18s}
target:
  launch:
    command: [sleep, '600']
profilers:
  system: {interval: 0.2s}
limits: {min_free_mb: 1}
"""


@pytest.fixture
def fleet(fleet_factory: Any) -> Iterator[Fleet]:
    """Two hosts; the first one's home an 8 MiB tmpfs."""
    fleet = fleet_factory({"board": 2})
    mount = fleet.run(FULL, ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", "/root"])
    assert mount.rc == 0, mount.stderr
    yield fleet
    fleet.run(FULL, ["umount", "-l", "/root"])


def runner_log(fleet: Fleet) -> str:
    found = fleet.run(FULL, ["sh", "-c", "cat /root/.fleetprof/runs/disk-full/*/runner.log"])
    return found.stdout


def test_a_device_disk_full_to_the_last_byte_comes_back_partial_with_its_samples(
    fleet: Fleet, tmp_path: Path
) -> None:
    campaign = tmp_path / "disk-full.yml"
    campaign.write_text(CAMPAIGN)
    out = tmp_path / "out"
    run = subprocess.Popen(
        [*FLEETPROF_ARGV, "run", str(campaign), "-i", str(fleet.inventory), "-o", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while "window: profiling" not in runner_log(fleet):
            if time.monotonic() > deadline or run.poll() is not None:
                pytest.fail("the session never opened its window on " + FULL)
            time.sleep(0.5)
        time.sleep(1.0)  # a few samples first
        fill = fleet.run(FULL, ["dd", "if=/dev/zero", "of=/root/fill", "bs=64k"], timeout=60)
        assert "No space left on device" in fill.stderr, fill.stderr
        output, _ = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 3, output  # one host partial
    (run_dir,) = out.glob("disk-full/*")
    report = json.loads((run_dir / "report.json").read_text())
    hosts = {host["name"]: host for host in report["hosts"]}

    full = hosts[FULL]
    assert full["status"] == "partial", full
    # The floor check, or the sampler's own write failing when dd outran that check.
    assert any(
        why in full["reason"]
        for why in ("fell below the floor of 1 MiB", "No space left on device")
    ), full["reason"]
    assert "device disk full: the archive" in full["reason"], full["reason"]
    assert full["metrics"]["system.samples"] >= 5, full["metrics"]
    assert "system.cpu.total_pct.mean" in full["metrics"]
    session = run_dir / "hosts" / FULL / "session"
    assert {"manifest.json", "runner.log", "system.jsonl"} <= set(os.listdir(session))
    assert not (run_dir / "hosts" / FULL / "loose").exists()
    assert not (run_dir / "hosts" / FULL / "session.tar.gz").exists()

    other = hosts[OTHER]
    assert other["status"] == "ok", other
    assert other["metrics"]["system.samples"] >= 20

    # Nothing of the session is left on the full device: no workdir, archive, reserve,
    # temp file, Ansible job status or module file; only the filler, fleetprof's lock and
    # the device package preflight pushed (a tool, kept for the next run like py-spy). Nor
    # on the other, collected by the session play itself: its workdir (the runner removed
    # it once packed), archive and job status file went in one command. Ansible's async
    # watcher removes its own module files up to 5 s after the job ended (it looks at the
    # job every 5 s), which can be after collect: give it that long.
    package = device_bundle.build().path
    expected = {
        FULL: [".fleetprof/session.lock", package, "fill"],
        OTHER: [".fleetprof/session.lock"],
    }

    def left() -> dict[str, list[str]]:
        found = {}
        for host in (FULL, OTHER):
            listed = fleet.run(host, ["find", "/root", "-type", "f", "-printf", "%P\\n"])
            tools = [".fleetprof/tools/"] if host == OTHER else []
            found[host] = sorted(
                f for f in listed.stdout.split() if not any(f.startswith(t) for t in tools)
            )
        return found

    deadline = time.monotonic() + 10
    while left() != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left() == expected


LIGHT = """\
name: loose
duration: 2s
start: {lead: 15s}
target: {launch: {command: [sleep, '30']}}
profilers: {system: {}}
"""


def test_a_hostile_workdir_left_without_an_archive_brings_back_only_plain_files(
    fleet_factory: Any, fleetprof: Any, tmp_path: Path
) -> None:
    """A device that says its archive could not be made and plants links, a FIFO, a
    directory, dot files and odd names in its workdir: `fleetprof collect` over real SSH
    fetches and takes in its plain, runner-named files only, and the honest host keeps its
    report."""
    fleet = fleet_factory({"board": 2})
    honest, hostile = fleet.hosts[0].name, fleet.hosts[1]
    campaign = tmp_path / "loose.yml"
    campaign.write_text(LIGHT)
    first = fleetprof("run", str(campaign), "-i", str(fleet.inventory))
    assert first.returncode == 0, first.stdout + first.stderr
    run_dir = first.run_dir("loose")
    host_dir = run_dir / "hosts" / hostile.name
    plan = json.loads((host_dir / "plan.json").read_text())
    workdir = Path(hostile.private_path(plan["workdir"]))
    assert not Path(hostile.private_path(plan["archive"])).exists()
    workdir.mkdir(parents=True)
    for name in ("manifest.json", "system.jsonl"):
        shutil.copy(host_dir / "session" / name, workdir / name)
    (workdir / "passwd.jsonl").symlink_to("/etc/passwd")
    os.mkfifo(workdir / "fifo.jsonl")
    (workdir / "sub").mkdir()
    (workdir / "sub" / "deep.txt").write_text("x")
    (workdir / ".hidden").write_text("x")
    (workdir / "bad name").write_text("x")
    (workdir / "-dash").write_text("x")
    # The run's controller "lost" this host after its session: collect fetches it again.
    shutil.rmtree(host_dir / "session")
    (host_dir / "session.tar.gz").unlink()
    status = {"host": hostile.name, "stage": "session", "status": "running", "reason": None}
    (host_dir / "status.json").write_text(json.dumps(status))

    done = subprocess.run(
        [*FLEETPROF_ARGV, "collect", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env={**os.environ, "NO_COLOR": "1"},
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(os.listdir(host_dir / "session")) == ["manifest.json", "system.jsonl"]
    assert not (host_dir / "loose").exists()
    hosts = {h["name"]: h for h in json.loads((run_dir / "report.json").read_text())["hosts"]}
    assert hosts[honest]["status"] == "ok" and hosts[honest]["metrics"]
    assert hosts[hostile.name]["status"] == "ok", hosts[hostile.name]
    assert hosts[hostile.name]["metrics"]["system.samples"] > 0
    assert not workdir.exists(), "collect removed the workdir from the device"
