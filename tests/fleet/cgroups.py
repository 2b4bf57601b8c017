"""The cgroups of the test fleet: one per host, for a CPU quota, freezing and killing.

A slower hardware model is a CPU quota, a hung device a frozen cgroup, a dead device a
cgroup whose every process was killed. Both cgroup versions are supported:

- v1: the ``cpu`` hierarchy (``cpu.cfs_quota_us``), ``cpuacct`` for the CPU time used
  (optional) and ``freezer`` (``freezer.state``); a host's cgroup is one directory in each.
- v2: one directory in the unified hierarchy (``cpu.max``, ``cgroup.freeze``,
  ``cgroup.kill``, ``cpu.stat``).
"""

from __future__ import annotations

import contextlib
import copy
import errno
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
BASE_NAME = "fleetprof-fleets"
PRIORITY_BASE_NAME = "fleetprof-fleets-priority"  # cpu_priority fleets, weighted (below)
# A short CFS period: a slow board is slow all the time, not fast for 30 ms and then
# stopped for 70 ms, which is what a 100 ms period at cpu 0.3 would emulate (and which
# would delay a throttled host's wake-up at the common start by up to 70 ms).
CPU_PERIOD_US = 20_000
V1_ROLES = ("cpu", "cpuacct", "freezer")
# CPU weights in v1 units (cpu.shares; v2's cpu.weight is scaled, 1024 -> 100). A quota
# is a cap, not a guarantee: with the machine busy elsewhere (other test runs, what a
# test left behind) every host falls to the same crumbs and a 0.4-core board is no faster
# than a 0.1-core one. A fleet started with cpu_priority lives under its own base,
# weighted 16 to 1 against other work, so each host gets its quota; only hosts with a
# quota go there (an unlimited host would take the machine from the controller), and
# the ordinary base, with every other fleet, keeps the default weight.
DEFAULT_WEIGHT = 1024
PRIORITY_WEIGHT = 16 * 1024


class CgroupError(RuntimeError):
    """A cgroup could not be created, changed or removed."""


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror or exc}") from exc


def _read_pids(procs: Path) -> list[int]:
    try:
        text = procs.read_text()
    except FileNotFoundError:
        return []
    return sorted({int(line) for line in text.split()})


def cpu_quota_us(cpu: float | None, period_us: int = CPU_PERIOD_US) -> int | None:
    """The CFS quota per period for ``cpu`` (a fraction of one core); None: unlimited."""
    if cpu is None:
        return None
    if cpu <= 0:
        raise ValueError(f"cpu must be a positive fraction of one core, not {cpu}")
    # The kernel refuses quotas under 1 ms.
    return max(1000, round(cpu * period_us))


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


@dataclass(frozen=True)
class Cgroup:
    """One host's cgroup: its directory in every hierarchy used (v1) or the unified one."""

    version: int
    paths: Mapping[str, Path]
    dirs: tuple[Path, ...] = field(init=False)

    def __post_init__(self) -> None:
        # Co-mounted v1 controllers (cpu,cpuacct) share one directory.
        object.__setattr__(self, "dirs", tuple(dict.fromkeys(self.paths.values())))

    @property
    def _main(self) -> Path:
        return self.paths["freezer"] if self.version == 1 else self.paths["unified"]

    def to_json(self) -> dict[str, object]:
        return {"version": self.version, "paths": {k: str(v) for k, v in self.paths.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Cgroup:
        paths = data["paths"]
        assert isinstance(paths, dict)
        version = data["version"]
        assert isinstance(version, int)
        return cls(version, {str(k): Path(str(v)) for k, v in paths.items()})

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes its pid to, to join this cgroup."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def attach_self(self) -> None:
        """Move the calling process here (meant for ``preexec_fn``, so only os calls)."""
        pid = str(os.getpid()).encode()
        for procs in self.procs_files():
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs)

    def pids(self) -> list[int]:
        """Every process in the cgroup, as the controller numbers them."""
        pids: set[int] = set()
        for d in self.dirs:
            pids.update(_read_pids(d / "cgroup.procs"))
        return sorted(pids)

    def set_cpu(self, cpu: float | None) -> None:
        quota = cpu_quota_us(cpu)
        if self.version == 1:
            cpu_dir = self.paths["cpu"]
            _write(cpu_dir / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu_dir / "cpu.cfs_quota_us", str(-1 if quota is None else quota))
        else:
            cpu_max = self.paths["unified"] / "cpu.max"
            if not cpu_max.exists():
                if quota is None:
                    return
                raise CgroupError(f"{cpu_max} is missing: the cpu controller is not enabled")
            _write(cpu_max, f"{'max' if quota is None else quota} {CPU_PERIOD_US}")

    def set_weight(self, weight: int) -> None:
        """The cgroup's CPU weight against its siblings (v1 ``cpu.shares`` units)."""
        if self.version == 1:
            _write(self.paths["cpu"] / "cpu.shares", str(weight))
            return
        cpu_weight = self.paths["unified"] / "cpu.weight"
        if not cpu_weight.exists():
            raise CgroupError(f"{cpu_weight} is missing: the cpu controller is not enabled")
        _write(cpu_weight, str(max(1, min(10_000, round(weight * 100 / DEFAULT_WEIGHT)))))

    def cpu_usage_s(self) -> float | None:
        """CPU time used by everything that ran in the cgroup, in seconds (None: unknown)."""
        if self.version == 1:
            usage = self.paths.get("cpuacct")
            if usage is None:
                return None
            return int((usage / "cpuacct.usage").read_text()) / 1e9
        for line in (self.paths["unified"] / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        return None

    def frozen(self) -> bool:
        if self.version == 1:
            return (self._main / "freezer.state").read_text().strip() != "THAWED"
        return (self._main / "cgroup.freeze").read_text().strip() == "1"

    def _fully_frozen(self) -> bool:
        if self.version == 1:
            return (self._main / "freezer.state").read_text().strip() == "FROZEN"
        events = (self._main / "cgroup.events").read_text().split()
        return "frozen" in events and events[events.index("frozen") + 1] == "1"

    def freeze(self, timeout: float = 10.0) -> None:
        """Stop every process in the cgroup, as a hung device; returns once all are stopped."""
        if self.version == 1:
            _write(self._main / "freezer.state", "FROZEN")
        else:
            _write(self._main / "cgroup.freeze", "1")
        if not wait_until(self._fully_frozen, timeout):
            raise CgroupError(f"{self._main} did not freeze within {timeout:g} s")

    def thaw(self) -> None:
        if self.version == 1:
            _write(self._main / "freezer.state", "THAWED")
        else:
            _write(self._main / "cgroup.freeze", "0")

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL every process in the cgroup, frozen or not; returns once it is empty."""
        if not self.exists():
            return
        kill_file = self._main / "cgroup.kill"
        if not self._main.is_dir():  # only partly created: no freezer to help
            pass
        elif self.version == 2 and kill_file.exists():
            _write(kill_file, "1")
        else:
            # Frozen, nothing can fork between reading the list and the kills; a frozen
            # process dies from SIGKILL only once thawed.
            with contextlib.suppress(CgroupError):
                self.freeze(timeout=min(timeout, 5.0))
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self._main.is_dir() and self.frozen():
            self.thaw()
        if not wait_until(lambda: not self._kill_remaining(), timeout):
            raise CgroupError(
                f"processes {self.pids()} in {self._main} survived SIGKILL for {timeout:g} s"
            )

    def _kill_remaining(self) -> list[int]:
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def remove(self) -> None:
        """Remove the (empty) cgroup directories; absent ones are fine."""
        for d in self.dirs:
            _rmdir(d)


def _rmdir(path: Path, *, only_if_empty: bool = False) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if only_if_empty and exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return
        raise CgroupError(f"cannot remove cgroup {path}: {exc.strerror or exc}") from exc


class CgroupTree:
    """Where the fleet's cgroups are made: ``<hierarchy>/<base>/<fleet>/<host>``, the base
    ``fleetprof-fleets`` (``fleetprof-fleets-priority`` for cpu_priority fleets)."""

    version: int
    base: str = BASE_NAME

    def with_base(self, base: str) -> CgroupTree:
        """The same hierarchies with the fleets' cgroups under ``base``."""
        tree = copy.copy(self)
        tree.base = base
        return tree

    def problem(self, need_cpu: bool = True) -> str | None:
        """Why this tree cannot serve the fleet; None when it can."""
        raise NotImplementedError

    def _hierarchies(self) -> dict[str, Path]:
        raise NotImplementedError

    def _prepare(self, parent: Path) -> None:
        """Make ``parent``'s children able to use the controllers (v2 only)."""

    def create(self, parts: Iterable[str], cpu: float | None = None) -> Cgroup:
        """Make (or reuse) the cgroup at ``parts`` below the base, with its CPU quota."""
        parts = list(parts)
        paths: dict[str, Path] = {}
        for role, mount in self._hierarchies().items():
            current = mount
            for part in [self.base, *parts]:
                self._prepare(current)
                current = current / part
                try:
                    current.mkdir(exist_ok=True)
                except OSError as exc:
                    raise CgroupError(f"cannot create cgroup {current}: {exc}") from exc
            paths[role] = current
        cgroup = Cgroup(self.version, paths)
        cgroup.set_cpu(cpu)
        return cgroup

    def group(self, parts: Iterable[str]) -> Cgroup:
        parts = list(parts)
        return Cgroup(
            self.version,
            {
                role: mount.joinpath(self.base, *parts)
                for role, mount in self._hierarchies().items()
            },
        )

    def remove_empty(self, parts: Iterable[str]) -> None:
        """Remove ``parts`` and then the base, each only if nothing else is left in it."""
        parts = list(parts)
        for depth in range(len(parts), -1, -1):
            for d in self.group(parts[:depth]).dirs:
                _rmdir(d, only_if_empty=True)

    def to_json(self) -> dict[str, object]:
        raise NotImplementedError


class CgroupV1(CgroupTree):
    """cgroup v1: separate ``cpu``, ``cpuacct`` and ``freezer`` hierarchies (or co-mounted)."""

    version = 1

    def __init__(self, mounts: Mapping[str, Path]) -> None:
        self.mounts = dict(mounts)

    def _hierarchies(self) -> dict[str, Path]:
        return {r: self.mounts[r] for r in V1_ROLES if r in self.mounts}

    def problem(self, need_cpu: bool = True) -> str | None:
        if "freezer" not in self.mounts:
            return "cgroup v1 without a freezer hierarchy (needed to emulate a hung device)"
        if need_cpu:
            cpu = self.mounts.get("cpu")
            if cpu is None or not (cpu / "cpu.cfs_quota_us").exists():
                return "cgroup v1 without the cpu controller's CFS quota (cpu.cfs_quota_us)"
        for mount in self._hierarchies().values():
            if not os.access(mount, os.W_OK):
                return f"cgroup hierarchy {mount} is not writable"
        return None

    def to_json(self) -> dict[str, object]:
        mounts = {k: str(v) for k, v in self.mounts.items()}
        return {"version": 1, "mounts": mounts, "base": self.base}


class CgroupV2(CgroupTree):
    """cgroup v2: one unified hierarchy (at ``root``), the cpu controller enabled down to us."""

    version = 2

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = root

    def _hierarchies(self) -> dict[str, Path]:
        return {"unified": self.root}

    def _enable_cpu(self, parent: Path) -> None:
        controllers = (parent / "cgroup.controllers").read_text().split()
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        if "cpu" in controllers and "cpu" not in enabled:
            _write(parent / "cgroup.subtree_control", "+cpu")

    def _prepare(self, parent: Path) -> None:
        # Where the cpu controller cannot be enabled (a container's cgroup that holds
        # processes), hosts still freeze and die; set_cpu then says cpu.max is missing.
        with contextlib.suppress(CgroupError, OSError):
            self._enable_cpu(parent)

    def problem(self, need_cpu: bool = True) -> str | None:
        if not (self.root / "cgroup.freeze").exists() and not (self.root / "cgroup.procs").exists():
            return f"{self.root} is not a cgroup v2 hierarchy"
        if not os.access(self.root, os.W_OK):
            return f"cgroup hierarchy {self.root} is not writable"
        if need_cpu:
            if "cpu" not in (self.root / "cgroup.controllers").read_text().split():
                return f"the cpu controller is not available in {self.root}/cgroup.controllers"
            try:
                self._enable_cpu(self.root)
            except CgroupError as exc:
                return f"cannot enable the cpu controller for child cgroups: {exc}"
        return None

    def to_json(self) -> dict[str, object]:
        return {"version": 2, "root": str(self.root), "base": self.base}


def tree_from_json(data: Mapping[str, object]) -> CgroupTree:
    tree: CgroupTree
    if data["version"] == 1:
        mounts = data["mounts"]
        assert isinstance(mounts, dict)
        tree = CgroupV1({str(k): Path(str(v)) for k, v in mounts.items()})
    else:
        tree = CgroupV2(Path(str(data["root"])))
    return tree.with_base(str(data.get("base") or BASE_NAME))


def v1_mounts(mountinfo: str) -> dict[str, Path]:
    """The mount point of each cgroup v1 controller we use, from /proc/self/mountinfo."""
    mounts: dict[str, Path] = {}
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] != "cgroup":
            continue
        options = set(tail[2].split(","))
        for role in V1_ROLES:
            if role in options:
                mounts.setdefault(role, Path(fields[4]))
    return mounts


def detect(root: Path = CGROUP_ROOT) -> CgroupTree | None:
    """The cgroup tree of this machine: v2 when it is unified, else the v1 hierarchies."""
    if (root / "cgroup.controllers").exists():
        return CgroupV2(root)
    try:
        mounts = v1_mounts(Path("/proc/self/mountinfo").read_text())
    except OSError:
        return None
    return CgroupV1(mounts) if mounts else None
