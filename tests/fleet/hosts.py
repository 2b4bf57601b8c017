"""What a fleet is made of: model specs, hosts, command results, processes."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fleet.cgroups import Cgroup

USER = "root"


@dataclass(frozen=True)
class ModelSpec:
    """How many hosts of one hardware model, and how fast: ``cpu`` cores (None: unlimited)."""

    count: int = 1
    cpu: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"count must be a positive integer, not {self.count!r}")
        if self.cpu is not None and not self.cpu > 0:
            raise ValueError(f"cpu must be a positive fraction of one core, not {self.cpu!r}")

    @classmethod
    def of(cls, value: ModelSpec | Mapping[str, Any] | int) -> ModelSpec:
        if isinstance(value, ModelSpec):
            return value
        if isinstance(value, int):
            return cls(count=value)
        unknown = set(value) - {"count", "cpu"}
        if unknown:
            raise ValueError(f"unknown model spec keys {sorted(unknown)}; expected count, cpu")
        cpu = value.get("cpu")
        return cls(count=int(value.get("count", 1)), cpu=None if cpu is None else float(cpu))

    @classmethod
    def parse(cls, text: str) -> tuple[str, ModelSpec]:
        """``NAME=COUNT[:CPU]`` (the command line's ``--model``) -> (name, spec)."""
        name, sep, rest = text.partition("=")
        count, _, cpu = rest.partition(":")
        if not sep or not name:
            raise ValueError(f"expected NAME=COUNT[:CPU], e.g. model-b=3:0.3, not {text!r}")
        try:
            return name, cls(count=int(count), cpu=float(cpu) if cpu else None)
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from None


@dataclass(frozen=True)
class RunResult:
    """A command's outcome on a host."""

    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclass(frozen=True)
class Process:
    """A process of one host: its pid there, its pid on the controller, its command line."""

    pid: int
    host_pid: int
    argv: tuple[str, ...]

    @property
    def args(self) -> str:
        return " ".join(self.argv)


@dataclass
class FleetHost:
    """One emulated device."""

    name: str
    model: str
    address: str
    port: int
    cpu: float | None
    directory: Path
    cgroup: Cgroup
    private_dirs: dict[str, Path]
    #: The namespace's PID 1 (the host's sshd) as the controller numbers it; None when dead.
    pid: int | None = None
    #: The ``unshare`` process outside the namespace that waits for that PID 1.
    launcher_pid: int | None = None
    state: str = "starting"
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def log(self) -> Path:
        return self.directory / "sshd.log"

    @property
    def sshd_config(self) -> Path:
        return self.directory / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def cgroup_paths(self) -> dict[str, Path]:
        return dict(self.cgroup.paths)

    def private_path(self, path: str | Path) -> Path:
        """Where the host's ``path`` (e.g. ``/tmp/x`` on the host) lies on the controller."""
        path = Path(path)
        for target, source in sorted(self.private_dirs.items(), key=lambda i: -len(i[0])):
            if path == Path(target) or Path(target) in path.parents:
                return source / path.relative_to(target)
        raise ValueError(f"{path} is not in one of {self.name}'s private directories")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "address": self.address,
            "port": self.port,
            "cpu": self.cpu,
            "dir": str(self.directory),
            "log": str(self.log),
            "cgroup": self.cgroup.to_json(),
            "private_dirs": {k: str(v) for k, v in self.private_dirs.items()},
            "pid": self.pid,
            "launcher_pid": self.launcher_pid,
            "state": self.state,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FleetHost:
        return cls(
            name=data["name"],
            model=data["model"],
            address=data["address"],
            port=int(data["port"]),
            cpu=data["cpu"],
            directory=Path(data["dir"]),
            cgroup=Cgroup.from_json(data["cgroup"]),
            private_dirs={k: Path(v) for k, v in data["private_dirs"].items()},
            pid=data.get("pid"),
            launcher_pid=data.get("launcher_pid"),
            state=data.get("state", "unknown"),
        )


def _home() -> str:
    return pwd.getpwnam(USER).pw_dir


def private_targets() -> list[str]:
    """The directories every host has its own of (those that exist here)."""
    targets = ["/tmp", "/var/tmp", "/opt", "/run", _home()]
    return [t for t in dict.fromkeys(targets) if os.path.isdir(t) and not os.path.islink(t)]


def proc_status(pid: int, key: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return value.split()
    return None


def pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def proc_argv(pid: int) -> tuple[str, ...]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ()
    if raw:
        return tuple(part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0"))
    try:
        return (f"[{Path(f'/proc/{pid}/comm').read_text().strip()}]",)
    except OSError:
        return ()


def find_init(cgroup: Cgroup) -> int | None:
    """The pid (as the controller numbers it) of the PID 1 of a namespace in ``cgroup``."""
    for pid in cgroup.pids():
        nspid = proc_status(pid, "NSpid")
        if nspid and len(nspid) > 1 and nspid[-1] == "1":
            return pid
    return None


def namespace_processes(cgroup: Cgroup, init: int | None) -> list[Process]:
    """The processes of ``cgroup`` in the PID namespace of ``init``, as ``ps -e`` there."""
    namespace = pid_namespace(init) if init is not None else None
    if namespace is None:
        return []
    found: list[Process] = []
    for pid in cgroup.pids():
        nspid = proc_status(pid, "NSpid")
        if nspid is None or pid_namespace(pid) != namespace:
            continue
        found.append(Process(int(nspid[-1]), pid, proc_argv(pid)))
    return sorted(found, key=lambda p: p.pid)
