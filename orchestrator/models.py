"""Values that cross stage boundaries: what preflight learns, what plan decides.

They are written to and read from the run directory as JSON (see docs/run-directory.md),
so each has a lossless ``to_dict`` / ``from_dict`` pair.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from fleetprof_device.contract import PLAN_SCHEMA

REPORT_SCHEMA = "fleetprof.report/1"


class HostStatus(StrEnum):
    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"
    # Another fleetprof session held the device (or the target process): nothing was run.
    BUSY = "busy"


class HostProgress(StrEnum):
    """How far a host got while its run goes on (``status`` in ``hosts/<h>/status.json``
    until a stage ends it with a ``HostStatus``); the values are what run directories hold."""

    PENDING = "pending"  # loaded from the inventory, nothing run yet
    PREFLIGHTED = "preflighted"
    PLANNED = "planned"
    COLLECTED = "collected"  # its session came back and was unpacked


@dataclass(frozen=True)
class ClockOffset:
    """Device clock minus controller clock, measured NTP-style over one round trip."""

    offset_s: float
    uncertainty_s: float | None  # None: not measured (no controller-side timestamps)

    @property
    def round_trip_s(self) -> float | None:
        return None if self.uncertainty_s is None else 2.0 * self.uncertainty_s

    @property
    def correction_s(self) -> float:
        """The offset worth applying: one smaller than its own uncertainty is noise."""
        if self.uncertainty_s is None:
            return 0.0
        return self.offset_s if abs(self.offset_s) > self.uncertainty_s else 0.0


@dataclass(frozen=True)
class HostFacts:
    """One device as preflight saw it."""

    host: str
    arch: str
    hw_model: str
    hw_model_source: str  # hostvar | device-tree | dmi | cpu | unknown
    os: str
    kernel: str
    python: str
    cores: int
    memory_mb: int
    disk_free_mb: int
    home: str
    is_root: bool
    ptrace_scope: int | None  # None when the kernel has no Yama LSM
    can_attach: bool
    attach_reason: str | None
    clock: ClockOffset
    tools: dict[str, str] = field(default_factory=dict)  # tool name -> path on the device
    delayacct: bool | None = None  # kernel.task_delayacct (iotop's IO% and SWAPIN columns)
    # nvidia_driver, jetson, gpu_counters_admin_only (RmProfilingAdminOnly; None: unknown)
    gpu: dict[str, bool | None] = field(default_factory=dict)
    # Seconds from launching the preflight play until this device's answer came back: how
    # long a play takes to reach the device from this controller, under its current load.
    ready_s: float | None = None
    # firmware, cpu_governor, cpu_max_mhz, cpu_scaling_max_mhz, cpu_quota_cores (None:
    # unknown): what the nightly check shows when a host differs from its peers.
    fingerprint: dict[str, str | float | None] = field(default_factory=dict)
    # sha256 of the files preflight was asked to hash (the tools fleetprof would push), by
    # absolute path: provision runs only where a device lacks the exact copy.
    file_sha256: dict[str, str] = field(default_factory=dict)
    # Where this device's SSH connection came from (its SSH_CONNECTION): the controller's
    # address as the device reaches it, the network probe's peer. None without SSH.
    controller_address: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostFacts:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["clock"] = ClockOffset(**data["clock"])
        values["tools"] = dict(data.get("tools") or {})
        values["gpu"] = dict(data.get("gpu") or {})
        values["fingerprint"] = dict(data.get("fingerprint") or {})
        hashes = data.get("file_sha256")
        values["file_sha256"] = {
            str(path): str(digest).lower()
            for path, digest in (hashes.items() if isinstance(hashes, dict) else ())
        }
        return cls(**values)


# In a ProfilerPlan's target_wrap, and in a launcher's launch_argv before its "--" (a
# launcher starts in the program's directory, so it names its outputs by absolute path):
# the session's workdir on the device (stages/plan.py).
WORKDIR_ARG = "{workdir}"


@dataclass(frozen=True)
class TargetPlan:
    mode: str  # attach | launch | probe
    process: str | None = None
    pid: int | None = None
    pidfile: str | None = None
    command: list[str] | None = None
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    via_profiler: bool = False
    # A profiler inside the target (cProfile): SIGINT first, SIGTERM this many seconds later.
    interrupt_s: float | None = None
    # probe: the micro-benchmarks to run at T0, in order, and the seconds each may take.
    probe: list[str] = field(default_factory=list)
    probe_seconds: float | None = None
    probe_repeats: int | None = None
    # launch with target.launch.sweep: {"variable", "values", "slot_s"} (the runner starts
    # the sweep supervisor, which runs the command once per value).
    sweep: dict[str, Any] | None = None
    # network: the peer the device measures against ({"host", "port", "token"}, or
    # {"error": why there is none}); set just before the session (stages/netpeer.py).
    probe_peer: dict[str, Any] | None = None
    # network, on the campaign's target.network_peer: what it serves the others
    # ({"port", "tokens": {token: host}, "allowed": [addresses]}).
    serve_peer: dict[str, Any] | None = None


@dataclass(frozen=True)
class ProfilerPlan:
    name: str
    status: str  # planned | skipped
    reason: str | None
    argv: list[str]
    launch_argv: list[str]
    outputs: list[str]
    max_bytes: int
    # A sampler the device runner runs itself (e.g. "system") instead of an argv.
    builtin: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # Commands the runner runs after the profiler stopped, before packing (argv lists, cwd
    # = workdir), e.g. `nsys stats` turning a report into CSV on the device.
    post_argv: list[list[str]] = field(default_factory=list)
    # sha256 of argv[0] when it is a tool provision pushed (py-spy): the runner checks the
    # binary against it just before starting it, and does not run one that differs.
    tool_sha256: str | None = None
    # A profiler that runs inside the launched target (cProfile): no process of its own.
    # The target's command becomes ``target_wrap`` + the command without its first
    # ``options["replaces"]`` arguments (WORKDIR_ARG in target_wrap is the session's
    # workdir), and it is stopped with SIGINT first, ``options["interrupt_s"]`` before SIGTERM.
    in_target: bool = False
    target_wrap: list[str] = field(default_factory=list)

    @classmethod
    def skipped(
        cls, name: str, reason: str, outputs: list[str], max_bytes: int = 0, **extra: Any
    ) -> ProfilerPlan:
        """A profiler this host will not run, with the reason, decided at plan time."""
        return cls(name, "skipped", reason, [], [], outputs, max_bytes, **extra)

    @classmethod
    def planned(
        cls, name: str, argv: list[str], outputs: list[str], max_bytes: int, **extra: Any
    ) -> ProfilerPlan:
        """A profiler this host runs: ``argv`` started by the device runner."""
        return cls(name, "planned", None, argv, [], outputs, max_bytes, **extra)

    @classmethod
    def sampler(cls, name: str, output: str, max_bytes: int, interval_s: float) -> ProfilerPlan:
        """A sampler the device runner runs itself, every ``interval_s``."""
        return cls(
            name,
            "planned",
            None,
            [],
            [],
            [output],
            max_bytes,
            builtin=name,
            options={"interval_s": interval_s},
        )


@dataclass(frozen=True)
class SessionPlan:
    """Everything the device-side runner needs, and nothing it must ask for later."""

    campaign: str
    run_id: str
    host: str
    workdir: str
    archive: str
    t0_device: float
    deadline_device: float
    grace_s: float
    clock_offset_s: float
    target: TargetPlan
    profilers: list[ProfilerPlan]
    # What provision pushes first: tool name -> {"src": controller path, "sha256", "dest"}.
    tools: dict[str, dict[str, str]] = field(default_factory=dict)
    # The disk floor (campaign limits.min_free_mb): the runner does not start below this many
    # MiB free on the workdir's filesystem, and stops every profiler when it falls below it.
    # None (plans written before the floor existed): no floor.
    min_free_mb: float | None = None
    # The runner removes the workdir once its archive holds everything (the archive is a
    # second copy): collect then removes one file instead of two. False in plans written
    # before this field: the workdir stays for collect to remove.
    remove_packed_workdir: bool = False
    schema: str = PLAN_SCHEMA

    @property
    def runnable(self) -> bool:
        # A probe session runs its benchmarks with or without profilers.
        return self.target.mode == "probe" or any(p.status == "planned" for p in self.profilers)

    @property
    def skip_reason(self) -> str | None:
        if self.runnable:
            return None
        return "; ".join(f"{p.name}: {p.reason}" for p in self.profilers) or "nothing to run"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionPlan:
        values = dict(data)
        values["target"] = TargetPlan(**data["target"])
        values["profilers"] = [ProfilerPlan(**p) for p in data["profilers"]]
        return cls(**values)
