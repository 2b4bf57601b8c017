"""What the fleet benchmarks share: a test fleet (tests/fleet) of N hosts, `fleetprof run` on
it with the time of each stage, plain ``ssh``/``scp`` to its hosts, and what the controller can
see of a host from outside (its processes' memory).

Every figure is taken on the controller with ``time.monotonic()``; the stage times come from
the files ansible-runner writes for each stage (``ansible/artifacts/<stage>/command`` when it
started the playbook, ``status`` when the playbook ended), so they cost the run nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from configparser import ConfigParser
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from benchmarks.common import ROOT, BenchmarkError, python

if TYPE_CHECKING:
    from tests.fleet import Fleet


def runner_zipapp() -> Path:
    """The device package as fleetprof ships it (orchestrator/device_bundle.py): the
    baselines run its session command, ``python3 fleetprof_device.pyz session ARGS``."""
    from orchestrator import device_bundle

    return device_bundle.build().src


MODEL = "bench"
STAGES = ("preflight", "provision", "session", "collect")
# A Python process for py-spy to sample that costs the emulated devices (which share the
# controller's cores) almost nothing: 32 of them must not load the controller.
IDLE_LOOP = "while 1: __import__('time').sleep(0.02); sum(range(5000))"


def fleet_problem() -> str | None:
    """Why this machine cannot run a test fleet (None: it can)."""
    from tests.fleet import fleet_unavailable

    return fleet_unavailable(need_cpu=False)


def skip_smoke(name: str) -> dict[str, Any] | None:
    """At the smoke size, a machine that cannot run a fleet (no root, no sshd) skips the
    benchmark with the reason, as the fleet tests do; the full size fails instead."""
    problem = fleet_problem()
    if problem is None:
        return None
    print(f"{name}: skipped, no SSH test fleet here: {problem}", file=sys.stderr)
    return {"skipped": problem}


def require_fleet() -> None:
    problem = fleet_problem()
    if problem:
        raise BenchmarkError(f"this benchmark needs the SSH test fleet (tests/fleet): {problem}")


@contextlib.contextmanager
def bench_fleet(count: int, *, seeded: bool, cpu: float | None = None) -> Iterator[Fleet]:
    """A fleet of ``count`` hosts (``cpu``: each host's CPU quota, cores; None: none), torn
    down whatever happens. ``seeded``: the hosts already have the controller's py-spy, as
    after an earlier campaign."""
    from tests.fleet import Fleet
    from tests.fleet.fixtures import seed_pyspy

    require_fleet()
    fleet = Fleet.up({MODEL: {"count": count, "cpu": cpu}}, ready_timeout=60.0)
    try:
        if seeded:
            seed_pyspy(fleet)
        yield fleet
    finally:
        fleet.down()


@functools.cache
def pyspy_device_path() -> str:
    """Where fleetprof puts py-spy on a fleet host (root's home), as ``seed_pyspy`` does."""
    from orchestrator import toolcache
    from orchestrator.profilers.pyspy import device_path
    from tests.support.factories import host_facts

    tool = toolcache.ensure_pyspy(platform.machine())
    return device_path(host_facts(home=str(Path.home())), tool.version)


def unseed_pyspy(fleet: Fleet, hosts: Sequence[str]) -> None:
    """Remove py-spy from these hosts: the next campaign pushes it (a first run)."""
    path = pyspy_device_path()
    for name in hosts:
        fleet.host(name).private_path(path).unlink(missing_ok=True)


def pyspy_stamp(fleet: Fleet, host: str) -> tuple[int, int] | None:
    """(inode, mtime ns) of py-spy on the host: a push replaces the file and changes it."""
    try:
        found = fleet.host(host).private_path(pyspy_device_path()).stat()
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_mtime_ns


def ansible_forks(config: Path = ROOT / "ansible.cfg") -> int:
    """The forks an ansible.cfg sets (Ansible's default: 5)."""
    parser = ConfigParser()
    parser.read(config)
    return parser.getint("defaults", "forks", fallback=5)


# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True)
class SshHost:
    """One host as the fleet's inventory describes it, for plain ``ssh``/``scp``."""

    name: str
    address: str
    port: int
    user: str
    key: str
    common_args: tuple[str, ...]  # the inventory's -o UserKnownHostsFile=... StrictHostKey...
    python: str

    def options(self) -> list[str]:
        # -F /dev/null: no user or system ssh_config, so no ControlMaster sneaks in.
        return [
            "-F",
            "/dev/null",
            "-i",
            self.key,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            *self.common_args,
        ]

    def ssh(self, remote: Sequence[str]) -> list[str]:
        """ssh argv running ``remote`` (an argv, quoted for the remote shell)."""
        target = f"{self.user}@{self.address}"
        return ["ssh", *self.options(), "-p", str(self.port), target, "--", shlex.join(remote)]

    def scp_to(self, local: Path, remote: str) -> list[str]:
        target = f"{self.user}@{self.address}:{remote}"
        return ["scp", "-q", *self.options(), "-P", str(self.port), str(local), target]

    def scp_from(self, remote: str, local: Path) -> list[str]:
        source = f"{self.user}@{self.address}:{remote}"
        return ["scp", "-q", *self.options(), "-P", str(self.port), source, str(local)]


def _inventory_hostvars(inventory: Path) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(inventory.read_text(encoding="utf-8"))
    found: dict[str, dict[str, Any]] = {}
    for group in (data["all"].get("children") or {}).values():
        for name, hostvars in (group.get("hosts") or {}).items():
            found[name] = dict(hostvars or {})
    return found


def ssh_hosts(inventory: Path) -> dict[str, SshHost]:
    """The fleet inventory's hosts: address, port, user, key, known_hosts, python."""
    return {
        name: SshHost(
            name=name,
            address=str(v["ansible_host"]),
            port=int(v["ansible_port"]),
            user=str(v["ansible_user"]),
            key=str(v["ansible_ssh_private_key_file"]),
            common_args=tuple(shlex.split(str(v.get("ansible_ssh_common_args", "")))),
            python=str(v.get("ansible_python_interpreter", "/usr/bin/python3")),
        )
        for name, v in _inventory_hostvars(inventory).items()
    }


def write_inventory(
    source: Path, hosts: Sequence[str], dest: Path, *, extra_ssh_args: str = ""
) -> Path:
    """The fleet inventory narrowed to ``hosts`` (one group), optionally with more ssh args."""
    every = _inventory_hostvars(source)
    chosen: dict[str, dict[str, Any]] = {}
    for name in hosts:
        hostvars = dict(every[name])
        if extra_ssh_args:
            common = str(hostvars.get("ansible_ssh_common_args", ""))
            hostvars["ansible_ssh_common_args"] = f"{common} {extra_ssh_args}".strip()
        chosen[name] = hostvars
    document = {"all": {"children": {MODEL: {"hosts": chosen}}}}
    dest.write_text(yaml.safe_dump(document, sort_keys=False, width=1000), encoding="utf-8")
    return dest


# --------------------------------------------------------------------------- connections


@contextlib.contextmanager
def control_dir() -> Iterator[Path]:
    """A fresh ``ANSIBLE_SSH_CONTROL_PATH_DIR``: the run opens its own SSH masters (cold, as
    a campaign more than ControlPersist after the last one), closed again afterwards."""
    # Short, under /tmp: a control socket's path must fit in 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="fpcp-", dir="/tmp"))
    try:
        yield path
    finally:
        close_masters(path)
        shutil.rmtree(path, ignore_errors=True)


def close_masters(path: Path) -> None:
    """Ask every SSH master with a socket in ``path`` to exit (``ssh -O exit``)."""
    for socket in sorted(path.iterdir()) if path.is_dir() else ():
        subprocess.run(
            ["ssh", "-F", "/dev/null", "-o", f"ControlPath={socket}", "-O", "exit", "master"],
            capture_output=True,
            timeout=15,
            check=False,
        )


# --------------------------------------------------------------------------- campaigns


def idle_target(device_python: str) -> list[str]:
    return [device_python, "-c", IDLE_LOOP]


def write_campaign(
    path: Path,
    name: str,
    window_s: float,
    command: Sequence[str],
    profilers: Mapping[str, Mapping[str, Any]],
    *,
    lead_s: float = 0.0,
) -> Path:
    """A launch campaign. ``lead: 0s`` lets fleetprof choose its own lead from what preflight
    measured (``plan.effective_lead``): the least it needs, so no idle second counts."""
    campaign = {
        "name": name,
        "duration": f"{window_s:g}s",
        "start": {"lead": f"{lead_s:g}s"},
        "target": {"launch": {"command": list(command)}},
        "profilers": {k: dict(v) for k, v in profilers.items()},
    }
    path.write_text(yaml.safe_dump(campaign, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class FleetprofRun:
    """One ``fleetprof run``: its wall time (controller, monotonic), stages and report."""

    wall_s: float
    window_s: float
    rc: int
    run_dir: Path
    report: dict[str, Any]
    stages: dict[str, float]
    lead_s: float | None
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    # stage -> (start, end), wall clock: when ansible-runner launched its playbook and ended
    marks: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def overhead_s(self) -> float:
        return self.wall_s - self.window_s

    @property
    def hosts(self) -> list[dict[str, Any]]:
        hosts: list[dict[str, Any]] = self.report.get("hosts") or []
        return hosts

    @property
    def ok_hosts(self) -> int:
        return sum(1 for h in self.hosts if h.get("status") == "ok")

    @property
    def skew_ms(self) -> float | None:
        value = self.report.get("start_skew_ms")
        return float(value) if isinstance(value, int | float) else None

    @property
    def late_hosts(self) -> int:
        """Hosts whose runner started more than 50 ms after T0 (the report's own metric)."""
        return sum(
            1 for h in self.hosts if ((h.get("metrics") or {}).get("session.late_by_ms") or 0) > 50
        )

    def figures(self, prefix: str) -> dict[str, Any]:
        """The figures a table shows, keys prefixed (``fleetprof_wall_s``, ...)."""
        return {
            f"{prefix}_wall_s": self.wall_s,
            f"{prefix}_overhead_s": self.overhead_s,
            f"{prefix}_skew_ms": self.skew_ms,
            f"{prefix}_ok": self.ok_hosts,
            f"{prefix}_late": self.late_hosts,
            f"{prefix}_lead_s": self.lead_s,
            **{f"{prefix}_{stage}_s": seconds for stage, seconds in self.stages.items()},
        }


def run_fleetprof(
    campaign: Path,
    inventory: Path,
    out_root: Path,
    *,
    window_s: float,
    control: Path | None = None,
    timeout_s: float = 1800.0,
) -> FleetprofRun:
    """``fleetprof run CAMPAIGN -i INVENTORY -o OUT_ROOT`` (a fresh OUT_ROOT), timed;
    ``control``: the SSH control directory (ANSIBLE_SSH_CONTROL_PATH_DIR) it uses."""
    name = yaml.safe_load(campaign.read_text(encoding="utf-8"))["name"]
    argv = [python(), "-m", "orchestrator.cli", "run", str(campaign), "-i", str(inventory)]
    argv += ["-o", str(out_root)]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    if control is not None:
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(control)
    began_wall = time.time()
    began = time.monotonic()
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    wall = time.monotonic() - began
    ended_wall = began_wall + wall
    runs = sorted((out_root / name).glob("*/report.json")) if (out_root / name).is_dir() else []
    if done.returncode not in (0, 3) or len(runs) != 1:
        tail = (done.stdout + done.stderr)[-4000:]
        raise BenchmarkError(f"fleetprof run exited with {done.returncode}:\n{tail}")
    run_dir = runs[0].parent
    report = json.loads(runs[0].read_text(encoding="utf-8"))
    plans = {
        p.parent.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((run_dir / "hosts").glob("*/plan.json"))
    }
    marks = stage_marks(run_dir)
    stages, lead = stage_times(marks, began_wall, ended_wall, plans)
    return FleetprofRun(
        wall, window_s, done.returncode, run_dir, report, stages, lead, plans, marks
    )


def stage_marks(run_dir: Path) -> dict[str, tuple[float, float]]:
    """stage -> (start, end), wall clock, from ansible-runner's artifacts: it writes
    ``command`` as it launches a stage's playbook and ``status`` when the playbook ended."""
    artifacts = run_dir / "ansible" / "artifacts"
    marks: dict[str, tuple[float, float]] = {}
    for stage in STAGES:
        command, status = artifacts / stage / "command", artifacts / stage / "status"
        if command.is_file() and status.is_file():
            marks[stage] = (command.stat().st_mtime, status.stat().st_mtime)
    return marks


def stage_times(
    marks: Mapping[str, tuple[float, float]],
    began: float,
    ended: float,
    plans: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, float], float | None]:
    """Seconds per stage, the controller's own work between and around them (start-up,
    planning, parsing and rendering), and the lead: from the session play's launch to T0
    (controller clock)."""
    stamps = [(stage, start, end) for stage, (start, end) in marks.items()]
    times = {stage: end - start for stage, start, end in stamps}
    between = sum(b[1] - a[2] for a, b in itertools.pairwise(stamps))
    times["controller"] = (
        (stamps[0][1] - began) + between + (ended - stamps[-1][2]) if stamps else ended - began
    )
    lead = None
    session = next((s for s in stamps if s[0] == "session"), None)
    t0s = [float(p["t0_device"]) - float(p["clock_offset_s"]) for p in plans.values()]
    if session is not None and t0s:
        lead = min(t0s) - session[1]
    return times, lead


# --------------------------------------------------------------------------- results


def manifest_of(archive: Path) -> dict[str, Any] | None:
    """The manifest a session archive holds (it is the first member)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile("manifest.json")
            data = json.loads(member.read()) if member is not None else None
    except (OSError, KeyError, ValueError, tarfile.TarError):
        return None
    return data if isinstance(data, dict) else None


def start_figures(manifests: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Skew (max - min actual start, controller clock) and late starts of some sessions."""
    starts = [
        float(m["started_at_controller"])
        for m in manifests
        if m is not None and isinstance(m.get("started_at_controller"), int | float)
    ]
    late = [m.get("late_by_s") or 0.0 for m in manifests if m is not None]
    return {
        "skew_ms": round((max(starts) - min(starts)) * 1000.0, 1) if starts else None,
        "late": sum(1 for v in late if v > 0.05),
        "ok": sum(1 for m in manifests if m is not None and m.get("status") == "ok"),
    }


def spread(values: Sequence[float]) -> dict[str, float | None]:
    """Median, min and max (None for none)."""
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# --------------------------------------------------------------------------- device memory


def _hwm_kib(pid: int) -> int:
    """The process's resident high-water mark (VmHWM), KiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss_kib(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes that map them, so
    the sum over processes is what they take together (their RSS sum counts the shared
    interpreter once per process)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_role(argv: Sequence[str], device_python: str) -> str | None:
    """What a process of a host is to fleetprof, from its command line: the session runner,
    Ansible's async wrapper around it, py-spy, another Ansible module (a pipelined one is
    the bare interpreter reading the module on stdin), or None (sshd, shells, the target)."""
    text = " ".join(argv)
    if "async_wrapper" in text:
        return "async_wrapper"
    if "fleetprof_session" in text:
        return "runner"
    if argv and argv[0].endswith("/py-spy"):
        return "py-spy"
    if "AnsiballZ_" in text or tuple(argv) == (device_python,):
        return "ansible_module"
    return None


class DeviceMemory:
    """Samples, from the controller's /proc, the memory of fleetprof's processes on fleet
    hosts while a campaign runs: each role's peak resident set (its own VmHWM, which the
    kernel keeps, so a peak between two samples is not missed while the process lives)
    and the peak of their summed PSS at one instant. Used as a context manager."""

    def __init__(self, fleet: Fleet, hosts: Sequence[str], interval_s: float = 0.05) -> None:
        self.fleet = fleet
        self.hosts = list(hosts)
        self.interval_s = interval_s
        self.peak_kib: dict[str, dict[str, int]] = {h: {} for h in self.hosts}
        self.total_kib: dict[str, int] = dict.fromkeys(self.hosts, 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="device-memory", daemon=True)

    def __enter__(self) -> DeviceMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for host in self.hosts:
                self._sample(host)
            self.samples += 1
            self._stop.wait(self.interval_s)

    def _sample(self, host: str) -> None:
        try:
            processes = self.fleet.processes(host)
        except Exception:  # a process that ended while being listed: next round
            return
        total = 0
        for process in processes:
            role = process_role(process.argv, self.fleet.python)
            if role is None:
                continue
            peaks = self.peak_kib[host]
            peaks[role] = max(peaks.get(role, 0), _hwm_kib(process.host_pid))
            total += _pss_kib(process.host_pid)
        self.total_kib[host] = max(self.total_kib[host], total)


# --------------------------------------------------------------------------- plans


def baseline_plan(plan: Mapping[str, Any], suffix: str, t0: float | None = None) -> dict[str, Any]:
    """A fleetprof plan as another run's (run id + suffix, its own workdir and archive) and,
    given ``t0`` (controller clock), a new common start with the same window: the baselines
    run the very same session without touching fleetprof's files."""
    from orchestrator.models import SessionPlan
    from orchestrator.stages.plan import reschedule

    session = SessionPlan.from_dict(dict(plan))
    run_id = f"{session.run_id}-{suffix}"
    session = dataclasses.replace(
        session,
        run_id=run_id,
        workdir=str(Path(session.workdir).parent / run_id),
        archive=str(Path(session.archive).parent / f"{run_id}.tar.gz"),
    )
    return (session if t0 is None else reschedule(session, t0)).to_dict()
