"""Faults and bad input on the device side: two sessions at once, a filling disk, loose
directory modes, a tool binary that is not the one provision pushed.

Everything is real, as in test_session_runner.py: the runner module runs as a subprocess,
the locks are real flock(2) locks (the target's in /run/lock or /tmp, as on a device), the
disk fills for real. Two users are simulated by two fleetprof homes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.campaign.model import Campaign
from orchestrator.models import SessionPlan
from orchestrator.stages.plan import make_plan as controller_plan
from tests.support.factories import TOOL, campaign, host_facts
from tests.support.session import (
    MODULE,
    Fleet,
    Run,
    args_file,
    builtin_profiler,
    load_runner,
    make_plan,
    pid_alive,
    python_profiler,
    run_module,
    wait_for,
)

# A stand-in profiler that samples (one line every 50 ms) for argv[1] seconds, or until
# SIGINT, then ends cleanly: what py-spy --duration does.
SAMPLES = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGINT, lambda *a: sys.exit(0))\n"
    "end = time.time() + float(sys.argv[1])\n"
    "with open('out.txt', 'w') as out:\n"
    "    while time.time() < end:\n"
    "        out.write('sample\\n')\n"
    "        out.flush()\n"
    "        time.sleep(0.05)\n"
)
OTHER_RUN = "20261125-111501-cd34"
ISO_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    workloads = Fleet(tmp_path)
    yield workloads
    workloads.stop_all()


def sampler(seconds: float) -> dict:
    return python_profiler("p", SAMPLES, str(seconds), outputs=["out.txt"])


class Background:
    """A runner started without waiting for it (the first of two sessions)."""

    def __init__(self, tmp_path: Path, plan: dict) -> None:
        self.plan = plan
        self.started = time.time()
        self.process = subprocess.Popen(
            [sys.executable, str(MODULE), str(args_file(tmp_path, {"plan": plan}))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        try:
            return (Path(self.plan["workdir"]) / "runner.log").read_text()
        except OSError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        assert wait_for(lambda: text in self.log(), timeout), self.log()

    def finish(self, timeout: float = 30.0) -> Run:
        out, err = self.process.communicate(timeout=timeout)
        assert out.count("\n") == 1, f"one JSON line expected: {out!r} {err}"
        return Run(json.loads(out), self.process.returncode, time.time() - self.started, 0.0)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


@pytest.fixture
def background(tmp_path: Path) -> Iterator[list[Background]]:
    started: list[Background] = []
    yield started
    for runner in started:
        runner.kill()


def start(background: list[Background], tmp_path: Path, plan: dict) -> Background:
    runner = Background(tmp_path, plan)
    background.append(runner)
    return runner


def other_run(plan: dict, home: Path, run_id: str = OTHER_RUN) -> dict:
    """The same session under another run id (another campaign's run) in ``home``."""
    return {
        **plan,
        "run_id": run_id,
        "workdir": str(home / "runs" / "unit" / run_id),
        "archive": str(home / "runs" / "unit" / f"{run_id}.tar.gz"),
    }


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --------------------------------------------------------------------------- host lock


def test_a_second_session_on_the_host_is_busy_and_the_first_is_undisturbed(
    tmp_path, fleet, background
):
    pid = fleet.start().pid
    first_plan = make_plan(tmp_path, {"pid": pid}, [sampler(2.0)], lead=0.5, window=2.0)
    first = start(background, tmp_path, first_plan)
    first.wait_for_log("window: profiling")
    second_plan = other_run(make_plan(tmp_path, {"pid": pid}, [sampler(1.0)]), tmp_path)

    second = run_module(tmp_path, second_plan)

    lock = tmp_path / "session.lock"
    reason = second.result["reason"]
    assert second.result["status"] == "busy"
    assert reason == (
        f"busy: another fleetprof session holds the host lock {lock} (campaign unit, "
        f"run {first_plan['run_id']}, pid {first.pid}, until "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(first_plan['deadline_device']))})"
    )
    assert (second.result["failed"], second.result["changed"]) == (False, True)
    assert second.elapsed < 2.0, "busy is known at once, without waiting for T0"
    # Its own archive, for the controller to collect: the manifest and the runner's log.
    assert second.result["archive"] == second_plan["archive"]
    assert second.members() == ["manifest.json", "runner.log"]
    manifest = second.manifest
    assert (manifest["status"], manifest["reason"]) == ("busy", reason)
    assert manifest["started_at_device"] is None
    assert manifest["profilers"]["p"]["status"] == "skipped"
    assert manifest["profilers"]["p"]["reason"] == "not started: " + reason
    assert manifest["busy"]["lock"] == str(lock)
    assert manifest["busy"]["holder"]["pid"] == first.pid
    assert manifest["busy"]["holder"]["run_id"] == first_plan["run_id"]
    assert reason in second.read("runner.log")

    done = first.finish()
    assert done.result["status"] == "ok", done.result["reason"]
    assert done.manifest["locks"]["host"] == str(lock)
    assert done.read("out.txt").count("sample") > 10
    assert "busy" not in done.read("runner.log")
    assert pid_alive(pid)


def test_the_same_plan_applied_twice_at_once_leaves_the_running_session_alone(
    tmp_path, fleet, background
):
    pid = fleet.start().pid
    plan = make_plan(tmp_path, {"pid": pid}, [sampler(1.5)], lead=0.5, window=1.5)
    first = start(background, tmp_path, plan)
    first.wait_for_log("window: profiling")
    log_before = first.log()

    again = run_module(tmp_path, plan)

    assert again.result["status"] == "busy"
    assert again.result["reason"].startswith("busy: another fleetprof session holds the host")
    assert (again.result["archive"], again.result["manifest"]) == (None, None)
    assert again.result["changed"] is False
    assert first.log().startswith(log_before), "the running session's log was not replaced"
    done = first.finish()
    assert done.result["status"] == "ok", done.result["reason"]
    assert done.read("out.txt").count("sample") > 10


def test_a_lock_left_by_a_killed_runner_does_not_block_the_next(tmp_path, fleet, background):
    pid = fleet.start().pid
    crashed_plan = make_plan(tmp_path, {"pid": pid}, [sampler(20.0)], lead=0.3, window=20.0)
    crashed = start(background, tmp_path, crashed_plan)
    crashed.wait_for_log("window: profiling")
    lock = tmp_path / "session.lock"
    assert json.loads(lock.read_text())["pid"] == crashed.pid
    os.kill(crashed.pid, signal.SIGKILL)
    crashed.process.wait()

    nxt = run_module(
        tmp_path, other_run(make_plan(tmp_path, {"pid": pid}, [sampler(1.0)]), tmp_path)
    )

    assert nxt.result["status"] == "ok", nxt.result["reason"]


def plant(kind: str, path: Path, canary: Path) -> None:
    if kind == "symlink":
        path.symlink_to(canary)
    elif kind == "hard link":
        os.link(canary, path)
    else:
        os.mkfifo(path)


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("symlink", "Too many levels of symbolic links"),
        ("hard link", "the lock file has 2 links"),
        ("fifo", "not a regular file"),
    ],
)
def test_a_link_or_fifo_planted_as_the_host_lock_is_refused(tmp_path, kind, why):
    canary = tmp_path / "canary"
    canary.write_text("keep me")
    plant(kind, tmp_path / "session.lock", canary)
    plan = make_plan(tmp_path, {"pid": os.getpid()}, [sampler(0.5)])

    run = run_module(tmp_path, plan)

    assert run.result["failed"] is True
    assert run.result["msg"].startswith(f"cannot take the host lock {tmp_path}/session.lock: ")
    assert why in run.result["msg"]
    assert run.elapsed < 2.0, "a FIFO does not hang the runner"
    assert canary.read_text() == "keep me"


# --------------------------------------------------------------------------- target lock


def test_two_users_sessions_on_one_process_collide_on_the_target_lock(tmp_path, fleet, background):
    workload = fleet.start()
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    first_plan = make_plan(alice, {"pid": workload.pid}, [sampler(2.0)], lead=0.5, window=2.0)
    first = start(background, tmp_path, first_plan)
    first.wait_for_log("window: profiling")
    held = re.search(r"lock: holding (\S+fleetprof-target-\S+\.lock)", first.log())
    assert held is not None, first.log()
    lock = held.group(1)
    assert os.path.dirname(lock) in ("/run/lock", "/tmp")
    assert Path(lock).name.startswith(f"fleetprof-target-{workload.pid}-")
    second_plan = other_run(make_plan(bob, {"pid": workload.pid}, [sampler(1.0)], lead=0.3), bob)

    second = run_module(tmp_path, second_plan)

    reason = second.result["reason"]
    assert second.result["status"] == "busy"
    assert re.fullmatch(
        rf"busy: another fleetprof session holds target pid {workload.pid} \(lock "
        rf"{re.escape(lock)}\) \(campaign unit, run {first_plan['run_id']}, "
        rf"pid {first.pid}, until {ISO_RE}\)",
        reason,
    ), reason
    assert second.elapsed < 2.0
    assert second.manifest["target"]["pid"] == workload.pid
    assert second.manifest["profilers"]["p"]["status"] == "skipped"
    assert second.members() == ["manifest.json", "runner.log"]
    # The shared lock file names campaign and run, no path in the holder's home.
    assert "workdir" not in second.manifest["busy"]["holder"]

    done = first.finish()
    assert done.result["status"] == "ok", done.result["reason"]
    assert done.manifest["locks"]["target"] == lock
    assert not os.path.lexists(lock), "the holder removes its target lock as it ends"
    assert workload.poll() is None, "neither session touched the target"


def start_time(pid: int) -> int:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rindex(b")") + 2 :].split()[19])


@pytest.mark.parametrize("kind", ["symlink", "hard link"])
def test_a_link_planted_at_the_targets_lock_name_is_never_written_through(tmp_path, fleet, kind):
    """Another user may plant anything in /run/lock or /tmp: the runner writes nothing
    through it, and the session says why it did not run."""
    workload = fleet.start()
    runner = load_runner()
    lock = Path(runner.target_lock_path(workload.pid, start_time(workload.pid)))
    canary = lock.parent / f"fleetprof-canary-{workload.pid}"  # a hard link stays on one fs
    canary.write_text("keep me")
    try:
        plant(kind, lock, canary)
        run = run_module(tmp_path, make_plan(tmp_path, {"pid": workload.pid}, [sampler(0.5)]))
    finally:
        lock.unlink(missing_ok=True)
        text = canary.read_text()
        canary.unlink()

    assert run.result["status"] == "failed"
    assert run.result["reason"].startswith(f"cannot lock target pid {workload.pid} ({lock}): ")
    assert text == "keep me"
    assert run.manifest["profilers"]["p"]["status"] == "failed"


def test_a_target_lock_left_by_a_killed_runner_does_not_block(tmp_path, fleet, background):
    workload = fleet.start()
    crashed = start(
        background,
        tmp_path,
        make_plan(tmp_path / "a", {"pid": workload.pid}, [sampler(20.0)], lead=0.3, window=20),
    )
    crashed.wait_for_log("window: profiling")
    os.kill(crashed.pid, signal.SIGKILL)
    crashed.process.wait()

    run = run_module(tmp_path, make_plan(tmp_path / "b", {"pid": workload.pid}, [sampler(1.0)]))

    assert run.result["status"] == "ok", run.result["reason"]
    assert not os.path.lexists(run.manifest["locks"]["target"])


# --------------------------------------------------------------------------- disk floor


def free_mib(path: Path) -> float:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize / float(1 << 20)


def mount_point(path: Path) -> str:
    current = os.path.realpath(path)
    device = os.stat(current).st_dev
    while current != "/" and os.stat(os.path.dirname(current)).st_dev == device:
        current = os.path.dirname(current)
    return current


def test_below_the_disk_floor_nothing_starts(tmp_path):
    floor = round(free_mib(tmp_path)) + 10 * 1024
    plan = make_plan(tmp_path, {"pid": os.getpid()}, [sampler(1.0)], lead=2.0)
    plan["min_free_mb"] = floor

    run = run_module(tmp_path, plan)

    reason = run.result["reason"]
    match = re.fullmatch(
        rf"free space on (\S+) is (\d+) MiB, below the floor of {floor} MiB: nothing was started",
        reason,
    )
    assert match is not None, reason
    assert match.group(1) == mount_point(tmp_path)
    assert run.result["status"] == "failed"
    assert run.elapsed < 1.5, "known before T0"
    assert run.manifest["profilers"]["p"]["status"] == "failed"
    assert "out.txt" not in run.members()
    disk = run.manifest["disk"]
    assert disk["min_free_mb"] == floor
    assert disk["free_mb_at_start"] == pytest.approx(int(match.group(2)), abs=1)


def test_free_space_falling_below_the_floor_stops_every_profiler_early(tmp_path):
    """A file the test writes into the workdir's filesystem mid-window (at most 200 MiB)
    pushes free space below a floor set just under what was free at the start."""
    filler = tmp_path / "filler.bin"
    for _attempt in range(3):
        # Other processes share this filesystem: a start that already found free space
        # below the floor was their doing, and is tried again with a fresh floor.
        # Or freed space meanwhile (a test's temporary files removed) faster than the
        # filler took it: that attempt never crossed the floor, and is tried again too.
        run, floor = fill_the_disk_during_a_session(tmp_path, filler, _attempt)
        if "fell below the floor" in (run.result["reason"] or ""):
            break
    reason = run.result["reason"]
    fs = mount_point(tmp_path)
    assert run.result["status"] == "partial", reason
    assert re.match(
        rf"free space on {re.escape(fs)} fell below the floor of {floor:g} MiB "
        rf"\((\d+) MiB left\)",
        reason,
    ), reason
    manifest = run.manifest
    deadline = manifest["deadline_device"]
    fell = manifest["disk"]["fell_below_at_device"]
    assert fell is not None and fell < deadline - 2.0
    profiler = manifest["profilers"]["p"]
    assert profiler["status"] == "partial"
    assert "free space below the floor" in profiler["reason"]
    assert profiler["signals_sent"] == ["SIGINT"]
    assert profiler["stopped_at_device"] < fell + 3.0 < deadline
    assert profiler["outputs"]["out.txt"]["bytes"] > 0
    system = manifest["profilers"]["system"]
    assert system["status"] == "partial"
    assert system["data_quality"]["ended"] == "stopped"
    assert system["stopped_at_device"] < fell + 1.0
    last = [json.loads(line) for line in run.read("system.jsonl").splitlines()][-1]
    assert last["t"] <= fell + 0.05, "the sampler wrote nothing once the floor was crossed"
    assert run.elapsed < 5.0 + 1.0


def fill_the_disk_during_a_session(tmp_path: Path, filler: Path, attempt: int) -> tuple[Run, float]:
    floor = round(free_mib(tmp_path) - 60)
    plan = make_plan(
        tmp_path,
        {"pid": os.getpid()},
        [sampler(6.0), builtin_profiler("system", 0.1)],
        lead=0.5,
        window=6.0,
    )
    plan = other_run(plan, tmp_path, f"20261125-11150{attempt}-disk")
    plan["min_free_mb"] = floor
    runner = Background(tmp_path, plan)
    try:
        assert wait_for(
            lambda: "window: profiling" in runner.log() or runner.process.poll() is not None, 10
        )
        chunk = b"\0" * (10 << 20)
        with open(filler, "wb") as handle:
            for _ in range(40):  # at most 400 MiB
                if "disk: " in runner.log() or runner.process.poll() is not None:
                    break
                handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
                time.sleep(0.05)
            wait_for(lambda: "disk: " in runner.log() or runner.process.poll() is not None, 3)
        return runner.finish(), floor
    finally:
        runner.kill()
        filler.unlink(missing_ok=True)


def test_outputs_capped_at_max_bytes_keep_their_mark_when_the_disk_stops_the_session(
    tmp_path,
):
    """The disk floor and max_bytes together: the cap's truncated mark survives."""
    profiler = python_profiler("p", SAMPLES, "3", outputs=["out.txt"], max_bytes=64)
    plan = make_plan(tmp_path, {"pid": os.getpid()}, [profiler], lead=0.3, window=3.0)
    plan["min_free_mb"] = 0  # a floor of 0 never stops anything

    run = run_module(tmp_path, plan)

    out = run.manifest["profilers"]["p"]["outputs"]["out.txt"]
    assert out["truncated"] is True
    assert run.manifest["disk"]["fell_below_at_device"] is None
    assert run.result["status"] == "partial"
    assert "truncated" in run.result["reason"]


# A filesystem that fills to the last byte: a small tmpfs, private to one process's mount
# namespace (unshare -m), so nothing outside the test ever sees it or fills.
FULL_DISK_READY = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("mount"),
    reason="a private tmpfs needs root and unshare/mount (util-linux)",
)
# Runs inside the namespace: mounts the tmpfs, runs the module in the background, fills
# the disk with dd once the window is open, waits, runs the module again (the same plan),
# then copies the workdir out and lists what the tmpfs holds.
FULL_DISK_SCRIPT = r"""
import json, os, shutil, subprocess, sys, time
mnt, module, args, out, wait_for = sys.argv[1:6]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt], check=True)
plan = json.load(open(args))["plan"]
log = os.path.join(plan["workdir"], "runner.log")
runner = subprocess.Popen([sys.executable, module, args], stdout=subprocess.PIPE, text=True)
end = time.time() + 20
while time.time() < end and runner.poll() is None:
    if os.path.exists(log) and "window: profiling" in open(log).read():
        break
    time.sleep(0.05)
if wait_for:  # a profiler's output, written in full before the disk fills
    path = os.path.join(plan["workdir"], wait_for)
    while time.time() < end and not (os.path.exists(path) and os.path.getsize(path) >= 2560 << 10):
        time.sleep(0.05)
fill = subprocess.run(["dd", "if=/dev/zero", "of=" + os.path.join(mnt, "fill"), "bs=64k"],
                      capture_output=True, text=True)
first = runner.communicate(timeout=30)[0]
again = subprocess.run([sys.executable, module, args], capture_output=True, text=True).stdout
os.unlink(os.path.join(mnt, "fill"))
shutil.copytree(plan["workdir"], os.path.join(out, "workdir"))
listing = sorted(os.path.relpath(os.path.join(d, f), mnt)
                 for d, _, files in os.walk(mnt) for f in files)
json.dump({"first": first, "again": again, "dd": fill.stderr, "listing": listing},
          open(os.path.join(out, "outcome.json"), "w"))
"""


# 2.5 MiB of random bytes (gzip cannot shrink them), then idle until stopped.
RANDOM_OUTPUT = (
    "import os, time\n"
    "with open('out.bin', 'wb') as out:\n"
    "    out.write(os.urandom(2560 * 1024))\n"
    "time.sleep(60)\n"
)


@FULL_DISK_READY
@pytest.mark.parametrize(
    ("extra", "why"),
    [
        # The archive (a few KiB) fits, but would leave the disk full: not kept.
        ([], "was not kept: it left"),
        # An archive larger than the reserve's room cannot be made at all.
        (
            [python_profiler("p", RANDOM_OUTPUT, outputs=["out.bin"], max_bytes=8 << 20)],
            "could not be made (No space left on device",
        ),
    ],
    ids=["not-kept", "enospc"],
)
def test_a_disk_full_to_the_last_byte_leaves_the_samples_for_collect(tmp_path, extra, why):
    """The floor stops the session; with the disk then full, the runner's reserve pays for
    the manifest; the archive is dropped, so the files stay in the workdir, the manifest
    says partial and why, nothing temporary is left, and the same plan applied again
    reports that session instead of running over it."""
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    profilers = [builtin_profiler("system", 0.1), *extra]
    plan = make_plan(tmp_path, {"pid": os.getpid()}, profilers, lead=1.0, window=6.0)
    plan = other_run(plan, mnt / "home", "20261125-111509-full")
    plan["min_free_mb"] = 1
    args = args_file(tmp_path, {"plan": plan, "_ansible_check_mode": False})
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK_SCRIPT)
    done = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            str(script),
            str(mnt),
            str(MODULE),
            str(args),
            str(out),
            "out.bin" if extra else "",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads((out / "outcome.json").read_text())
    assert "No space left on device" in outcome["dd"]
    result = json.loads(outcome["first"])
    assert result["failed"] is False, result["msg"]
    assert result["archive"] is None and result["workdir"] == plan["workdir"]
    assert result["status"] == "partial"
    # What stopped the session: the floor check, or (dd outran its 1 s check on a loaded
    # machine) the sampler's own write failing; either way the disk, and said so.
    assert any(
        why_stopped in result["reason"]
        for why_stopped in ("fell below the floor of 1 MiB", "No space left on device")
    ), result["reason"]
    assert "device disk full: the archive" in result["reason"]
    assert why in result["reason"], result["reason"]
    workdir = out / "workdir"
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["status"] == "partial" and manifest["reason"] == result["reason"]
    assert manifest["archive_error"].startswith("device disk full")
    # The disk may fill in the middle of a sample: every line but that last one is whole.
    lines = (workdir / "system.jsonl").read_text().splitlines()
    samples = [json.loads(line) for line in lines[:-1]]
    assert len(samples) >= 3 and all("cpu_pct" in s for s in samples[1:]), samples[:2]
    assert "archive: not made: device disk full" in (workdir / "runner.log").read_text()
    # Nothing temporary is left: no reserve, no manifest temp, no archive or its temp.
    run_dir = "home/runs/unit/20261125-111509-full"
    names = ["manifest.json", "runner.log", "system.jsonl"]
    names += ["out.bin", "p.stdout", "p.stderr"] if extra else []
    expected = {f"{run_dir}/{name}" for name in names}
    assert set(outcome["listing"]) == {*expected, "home/session.lock"}, outcome["listing"]
    again = json.loads(outcome["again"])
    assert again["changed"] is False and again["status"] == "partial", again
    assert again["archive"] is None and again["workdir"] == plan["workdir"]


PACK_ON_FULL_DISK = r"""
import errno, json, os, subprocess, sys
mnt, root = sys.argv[1:3]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt], check=True)
sys.path.insert(0, root)
from fleetprof_device import files as runner
workdir = os.path.join(mnt, "w")
os.mkdir(workdir)
with open(os.path.join(workdir, "data.bin"), "wb") as handle:  # random: gzip cannot shrink it
    handle.write(os.urandom(700 * 1024))
seen = {}
try:
    runner.pack_archive(workdir, os.path.join(mnt, "a.tar.gz"))
except OSError as exc:
    seen["pack"] = errno.errorcode[exc.errno]
subprocess.run(["dd", "if=/dev/zero", "of=" + os.path.join(mnt, "fill"), "bs=4k"],
               capture_output=True)
try:
    runner.write_json(os.path.join(workdir, "manifest.json"), {"pad": "x" * 100000})
except OSError as exc:
    seen["manifest"] = errno.errorcode[exc.errno]
seen["left"] = sorted(os.listdir(mnt)) + sorted(os.listdir(workdir))
print(json.dumps(seen))
"""


@FULL_DISK_READY
def test_an_archive_or_manifest_that_cannot_be_written_leaves_no_temp_file(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "pack.py"
    script.write_text(PACK_ON_FULL_DISK)
    done = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            str(script),
            str(mnt),
            str(MODULE.parents[3]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["pack"] == "ENOSPC" and seen["manifest"] == "ENOSPC", seen
    assert seen["left"] == ["fill", "w", "data.bin"], seen


# --------------------------------------------------------------------------- directories


def test_every_directory_the_runner_makes_or_uses_is_private(tmp_path):
    umask = os.umask(0o022)  # as on most devices (the runner inherits it): not relied on
    home = tmp_path / ".fleetprof"
    (home / "runs").mkdir(parents=True)
    home.chmod(0o755)
    (home / "runs").chmod(0o755)
    plan = make_plan(home, {"pid": os.getpid()}, [sampler(0.5)], window=0.5)
    fresh = make_plan(tmp_path / "new" / ".fleetprof", {"pid": os.getpid()}, [sampler(0.5)])
    fresh = other_run(fresh, tmp_path / "new" / ".fleetprof")

    try:
        first = run_module(tmp_path, plan)
        second = run_module(tmp_path, fresh)
    finally:
        os.umask(umask)

    for run, root, used in ((first, home, plan), (second, tmp_path / "new" / ".fleetprof", fresh)):
        assert run.result["status"] == "ok", run.result["reason"]
        for directory in (root, root / "runs", root / "runs" / "unit", Path(used["workdir"])):
            assert mode(directory) == 0o700, directory
        assert mode(run.result["archive"]) == 0o600
        assert mode(root / "session.lock") == 0o600
    assert mode(tmp_path / "new") == 0o700, "a directory the runner had to create"


def test_directories_outside_fleetprofs_layout_are_not_chmodded(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    plan = make_plan(tmp_path, {"pid": os.getpid()}, [sampler(0.5)], window=0.5)
    plan["workdir"] = str(shared / "session")
    plan["archive"] = str(shared / "session.tar.gz")

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "ok", run.result["reason"]
    assert mode(shared) == 0o755, "not fleetprof's own directory: left as it was"
    assert mode(shared / "session") == 0o700
    assert run.manifest["locks"]["host"] == str(shared / "session.lock")


# --------------------------------------------------------------------------- checksums


def sha256_of(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_a_tool_whose_sha256_differs_from_the_plans_is_not_run(tmp_path):
    marker = tmp_path / "ran"
    pinned = python_profiler(
        "p", f"open({str(marker)!r}, 'w'); open('out.txt', 'w').write('x\\n')", outputs=["out.txt"]
    )
    pinned["tool_sha256"] = "0" * 64
    other = python_profiler("q", SAMPLES, "0.5", outputs=["q.txt"])
    other["argv"] = [*other["argv"][:2], SAMPLES.replace("out.txt", "q.txt"), "0.5"]
    plan = make_plan(tmp_path, {"pid": os.getpid()}, [pinned, other], window=1.0)

    run = run_module(tmp_path, plan)

    entry = run.manifest["profilers"]["p"]
    actual = sha256_of(sys.executable)
    assert entry["status"] == "failed"
    assert entry["reason"] == (
        f"tool {sys.executable} sha256 {actual} does not match the plan's {'0' * 64}: not run"
    )
    assert entry["tool_check"] == {
        "path": sys.executable,
        "expected": "0" * 64,
        "sha256": actual,
        "ok": False,
    }
    assert not marker.exists(), "a tool that fails its check never runs"
    assert run.manifest["profilers"]["q"]["status"] == "ok"
    assert run.result["status"] == "partial"


def test_a_tool_whose_sha256_matches_runs(tmp_path):
    pinned = sampler(0.5)
    pinned["tool_sha256"] = sha256_of(sys.executable).upper()  # hex case does not matter
    plan = make_plan(tmp_path, {"pid": os.getpid()}, [pinned], window=0.5)

    run = run_module(tmp_path, plan)

    assert run.result["status"] == "ok", run.result["reason"]
    assert run.manifest["profilers"]["p"]["tool_check"]["ok"] is True


def test_a_missing_pinned_tool_is_not_run_and_says_why(tmp_path):
    pinned = sampler(0.5)
    pinned["argv"] = [str(tmp_path / "no-such-tool"), *pinned["argv"][1:]]
    pinned["tool_sha256"] = "ab" * 32
    plan = make_plan(tmp_path, {"pid": os.getpid()}, [pinned], window=0.5)

    run = run_module(tmp_path, plan)

    reason = run.manifest["profilers"]["p"]["reason"]
    assert reason.startswith(f"tool {tmp_path / 'no-such-tool'} cannot be read to check its sha256")
    assert reason.endswith(": not run")


# --------------------------------------------------------------------------- plan fields


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min_free_mb": -1}, "min_free_mb must be a number of MiB, 0 or more"),
        ({"min_free_mb": "200"}, "min_free_mb must be a number of MiB, 0 or more"),
        ({"min_free_mb": True}, "min_free_mb must be a number of MiB, 0 or more"),
    ],
)
def test_a_bad_floor_fails_the_module(tmp_path, change, message):
    plan = make_plan(tmp_path, {"pid": os.getpid()}, [sampler(0.5)]) | change
    run = run_module(tmp_path, plan)
    assert run.result["failed"] is True
    assert message in run.result["msg"]


@pytest.mark.parametrize("digest", ["abc", "g" * 64, 12])
def test_a_bad_tool_sha256_fails_the_module(tmp_path, digest):
    plan = make_plan(tmp_path, {"pid": os.getpid()}, [sampler(0.5) | {"tool_sha256": digest}])
    run = run_module(tmp_path, plan)
    assert run.result["failed"] is True
    assert "tool_sha256 must be a sha256 in hex" in run.result["msg"]


def test_the_plan_pins_the_pushed_py_spy_and_carries_the_disk_floor() -> None:
    plan = controller_plan(campaign(), host_facts(), "r", TOOL, t0=0.0)
    pyspy = next(p for p in plan.profilers if p.name == "py-spy")
    assert pyspy.argv[0] == plan.tools["py-spy"]["dest"]
    assert pyspy.tool_sha256 == "ab" * 32
    assert plan.min_free_mb == 200.0
    floored = controller_plan(campaign(limits={"min_free_mb": 0}), host_facts(), "r", TOOL, t0=0.0)
    assert floored.min_free_mb == 0.0
    # The controller's plan is one the runner accepts.
    load_runner().validate_plan(json.loads(json.dumps(plan.to_dict())))


def test_a_profiler_that_runs_no_pushed_tool_is_not_pinned() -> None:
    plan = controller_plan(
        campaign(profilers={"py-spy": {}, "system": {}}), host_facts(), "r", TOOL, t0=0.0
    )
    system = next(p for p in plan.profilers if p.name == "system")
    assert system.tool_sha256 is None


def test_plans_written_before_the_new_fields_still_load() -> None:
    data: dict[str, Any] = controller_plan(campaign(), host_facts(), "r", TOOL, t0=0.0).to_dict()
    del data["min_free_mb"]
    for profiler in data["profilers"]:
        del profiler["tool_sha256"]
    old = SessionPlan.from_dict(data)
    assert old.min_free_mb is None
    assert all(p.tool_sha256 is None for p in old.profilers)


def test_limits_min_free_mb_is_checked_when_the_campaign_loads() -> None:
    assert (
        Campaign.from_mapping(
            {"name": "c", "duration": "1s", "target": {"attach": {"pid": 1}}}
        ).limits.min_free_mb
        == 200.0
    )
