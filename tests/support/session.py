"""The device runner run as Ansible runs it (``python3 MODULE ARGS_FILE``): plans, profilers,
workload processes to profile, and the result, manifest and archive it leaves."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO
from tests.support.runner import SESSION_MODULE as MODULE
from tests.support.runner import device_namespace

PY_SPY = REPO / ".venv" / "bin" / "py-spy"


WORKLOAD = """\
import os
import sys
import time


def spin_a():
    end = time.time() + 0.01
    while time.time() < end:
        pass


def spin_b():
    end = time.time() + 0.01
    while time.time() < end:
        pass


def main():
    # argv: [EXIT_AT_EPOCH [EXIT_CODE]]
    print("cwd=%s env=%s" % (os.getcwd(), os.environ.get("FLEETPROF_TEST_ENV")), flush=True)
    exit_at = float(sys.argv[1]) if len(sys.argv) > 1 else None
    while exit_at is None or time.time() < exit_at:
        spin_a()
        spin_b()
    sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)


main()
"""


def pid_alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return data[data.rindex(b")") + 2 :].split()[0] not in (b"Z", b"X")


def processes_running(needle: str) -> list[int]:
    """Pids of live processes whose command line contains ``needle``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if needle.encode() in cmdline and pid_alive(int(name)):
            found.append(int(name))
    return found


def wait_for(condition: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


class Fleet:
    """Workloads a test started; all killed at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.script = tmp_path / f"workload_{uuid.uuid4().hex[:10]}.py"
        self.script.write_text(WORKLOAD)
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def command(self) -> list[str]:
        return [sys.executable, str(self.script)]

    @property
    def regex(self) -> str:
        return self.script.name.replace(".", r"\.")

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [*self.command, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.processes.append(process)
        assert wait_for(lambda: pid_alive(process.pid))
        return process

    def running(self) -> list[int]:
        return processes_running(str(self.script))

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        for pid in self.running():
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    workloads = Fleet(tmp_path)
    yield workloads
    workloads.stop_all()


@pytest.fixture(scope="session")
def py_spy() -> str:
    """The real py-spy, once it has shown it may attach to a process here."""
    if not os.access(PY_SPY, os.X_OK):
        pytest.skip(f"py-spy is not installed at {PY_SPY}")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.2)
        probe = subprocess.run(
            [str(PY_SPY), "dump", "--pid", str(sleeper.pid)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    finally:
        sleeper.kill()
        sleeper.wait()
    if probe.returncode != 0:
        pytest.skip(f"py-spy may not attach here (ptrace not permitted?): {probe.stderr.strip()}")
    return str(PY_SPY)


def pyspy_profiler(py_spy: str, duration: float, command: list[str] | None = None) -> dict:
    options = ["--duration", str(max(1, math.ceil(duration))), "--rate", "97", "--format", "raw"]
    options += ["--output", "py-spy.folded", "--nonblocking"]
    return {
        "name": "py-spy",
        "status": "planned",
        "reason": None,
        "argv": [py_spy, "record", "--pid", "{pid}", *options],
        "launch_argv": [py_spy, "record", *options, "--", *command] if command else [],
        "outputs": ["py-spy.folded"],
        "max_bytes": 64 * 1024 * 1024,
    }


def python_profiler(name: str, code: str, *args: str, outputs: list[str], **extra: Any) -> dict:
    """A stand-in profiler: a real Python process running ``code`` (argv[1:] = args)."""
    return {
        "name": name,
        "status": "planned",
        "reason": None,
        "argv": [sys.executable, "-c", code, *args],
        "launch_argv": [],
        "outputs": outputs,
        "max_bytes": 1024 * 1024,
        **extra,
    }


def make_plan(
    tmp_path: Path,
    target: dict,
    profilers: list[dict],
    *,
    lead: float = 0.5,
    window: float = 1.5,
    grace: float = 3.0,
    offset: float = 0.25,
) -> dict:
    t0 = time.time() + lead
    full_target = {
        "mode": "attach",
        "process": None,
        "pid": None,
        "pidfile": None,
        "command": None,
        "cwd": None,
        "env": {},
        "via_profiler": False,
    }
    full_target.update(target)
    return {
        "schema": "fleetprof.plan/1",
        "campaign": "unit",
        "run_id": "20261125-111500-ab12",
        "host": "localhost",
        "workdir": str(tmp_path / "runs" / "unit" / "20261125-111500-ab12"),
        "archive": str(tmp_path / "runs" / "unit" / "20261125-111500-ab12.tar.gz"),
        "t0_device": t0,
        "deadline_device": t0 + window,
        "grace_s": grace,
        "clock_offset_s": offset,
        "target": full_target,
        "profilers": profilers,
    }


class Run:
    """One finished runner invocation: its result JSON, exit code and wall time."""

    def __init__(self, result: dict, returncode: int, elapsed: float, finished_at: float) -> None:
        self.result = result
        self.returncode = returncode
        self.elapsed = elapsed
        self.finished_at = finished_at

    @property
    def manifest(self) -> dict:
        return self.result["manifest"]

    def members(self) -> list[str]:
        with tarfile.open(self.result["archive"]) as tar:
            return tar.getnames()

    def read(self, name: str) -> str:
        with tarfile.open(self.result["archive"]) as tar:
            member = tar.extractfile(name)
            assert member is not None
            return member.read().decode()


def args_file(tmp_path: Path, args: dict) -> Path:
    path = tmp_path / f"args-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(args))
    return path


def run_module(
    tmp_path: Path, plan: Any, python: str = sys.executable, timeout: float = 30, **extra: Any
) -> Run:
    args = {"plan": plan, "_ansible_check_mode": False, "_ansible_no_log": False, **extra}
    started = time.time()
    done = subprocess.run(
        [python, str(MODULE), str(args_file(tmp_path, args))],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    finished = time.time()
    assert done.stdout.count("\n") == 1, f"one JSON line expected: {done.stdout!r} {done.stderr}"
    return Run(json.loads(done.stdout), done.returncode, finished - started, finished)


def builtin_profiler(name: str, interval: float = 0.2, max_bytes: int = 1 << 20) -> dict:
    """A sampler the runner runs itself: no argv, one output."""
    return {
        "name": name,
        "status": "planned",
        "reason": None,
        "argv": [],
        "launch_argv": [],
        "outputs": [f"{name}.jsonl"],
        "max_bytes": max_bytes,
        "builtin": name,
        "options": {"interval_s": interval},
    }


def load_runner() -> Any:
    return device_namespace()
