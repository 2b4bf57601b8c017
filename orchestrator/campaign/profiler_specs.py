"""Each profiler's settings in a campaign (``profilers:``), validated as the rest."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PlainValidator,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from fleetprof_device.contract import (
    OPEN_FILES_MAX_TOP_PATHS,
    OPEN_FILES_TOP_PATHS,
    PROM_MAX_ENDPOINTS,
    PROM_MAX_METRICS,
    PROM_MAX_RESPONSE_BYTES,
    PROM_MAX_SERIES,
    PROM_MAX_TIMEOUT_S,
    PROM_MIN_TIMEOUT_S,
    TRACEMALLOC_MAX_FRAMES,
    TRACEMALLOC_MAX_TOP,
)
from fleetprof_device.pcap_summary import MAX_TOP as PCAP_MAX_TOP
from fleetprof_device.scrape import url_problem
from orchestrator.campaign.validators import (
    DEFAULT_INTERVAL_S,
    DEFAULT_LEAK_MB_PER_MIN,
    DEFAULT_PYSPY_RATE,
    METRIC_RE,
    Interval,
    LeakRate,
    Rate,
    Spec,
    check_regex,
    describe,
    int_check,
    invalid,
    parse_duration,
    positive_number,
    yaml_keys,
)


class PySpySpec(Spec):
    rate: Rate = DEFAULT_PYSPY_RATE
    native: bool = False
    idle: bool = False
    gil: bool = False
    subprocesses: bool = False
    # py-spy pauses the target at each sample unless told not to; not pausing can tear stacks.
    nonblocking: bool = False
    # The device reads the hot lines' source text into the report; false keeps the code
    # itself off the controller (line numbers only).
    source_lines: bool = True


class _SamplerSpec(Spec):
    """A profiler that takes a sample every ``interval``."""

    interval_s: Interval = Field(
        default=DEFAULT_INTERVAL_S, validation_alias="interval", serialization_alias="interval"
    )


class SystemSpec(_SamplerSpec):
    """The runner's own sampler: CPU, memory, I/O of the system and the target, thermal."""


class IotopSpec(_SamplerSpec):
    """iotop in batch mode: per-process read/write rates."""


class MemorySpec(Spec):
    """The target's RSS/PSS over the window: peak, growth slope, likely leaks."""

    leak_mb_per_min: LeakRate = DEFAULT_LEAK_MB_PER_MIN


# A target whose open descriptors grow steadily faster than this (per minute) is flagged.
DEFAULT_FD_LEAK_PER_MIN = 10.0


class OpenFilesSpec(_SamplerSpec):
    """The target's open descriptors (lsof's view, from /proc): counts by kind, growth,
    likely descriptor leaks, the most-opened paths, TCP/UDP sockets by state."""

    top_paths: Annotated[
        int,
        int_check(1, OPEN_FILES_MAX_TOP_PATHS, f"an integer from 1 to {OPEN_FILES_MAX_TOP_PATHS}"),
    ] = OPEN_FILES_TOP_PATHS
    leak_per_min: Annotated[
        float, positive_number("a positive number of descriptors per minute")
    ] = DEFAULT_FD_LEAK_PER_MIN


class NvidiaSmiSpec(_SamplerSpec):
    """GPU utilization, memory, SM clock, temperature and power, from nvidia-smi."""


class TegrastatsSpec(_SamplerSpec):
    """Jetson boards' own sampler: RAM, CPU and GPU load and clocks, temperatures, power."""


# tracemalloc's snapshots cost the program a pass over every live allocation: every 2 s.
DEFAULT_TRACEMALLOC_INTERVAL_S = 2.0

NSYS_TRACES = ("cuda", "nvtx", "osrt", "cublas", "cudnn", "opengl", "vulkan")
NCU_SETS = ("basic", "detailed", "full")


def _check_traces(value: object) -> list[str]:
    allowed = ", ".join(NSYS_TRACES)
    if not isinstance(value, list) or not value:
        raise invalid(f"expected a non-empty list of traces ({allowed}), got {describe(value)}")
    for index, item in enumerate(value):
        if item not in NSYS_TRACES:
            raise invalid(f"expected one of {allowed}, got {describe(item)}", index)
    return list(dict.fromkeys(value))


def check_metric_names(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise invalid(f"expected a non-empty list of metric names, got {describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not METRIC_RE.fullmatch(item):
            raise invalid(
                "expected a metric name (letters, digits, _ and .), such as "
                f"sm__throughput.avg.pct_of_peak_sustained_elapsed, got {describe(item)}",
                index,
            )
    return list(value)


class NsysSpec(Spec):
    """Nsight Systems (launch mode only: it starts the program; it cannot attach)."""

    trace: Annotated[list[str], PlainValidator(_check_traces)] = Field(
        default_factory=lambda: ["cuda", "nvtx", "osrt"]
    )
    # Also bring back the .nsys-rep report (within the size cap) for the Nsight GUI.
    keep_report: bool = False
    # PyTorch's own NVTX ranges (`nsys profile --pytorch=MODE`: nsys turns on
    # torch.autograd.profiler.emit_nvtx when the program imports torch), where the device's
    # nsys knows the option; "autograd-shapes-nvtx" adds each operator's input shapes.
    pytorch: Literal["autograd-nvtx", "autograd-shapes-nvtx", "none"] = "none"


class NcuSpec(Spec):
    """Nsight Compute (launch mode only): per-kernel metrics for the kernels it matches."""

    kernel: Annotated[str, PlainValidator(check_regex)] | None = None
    metrics: Annotated[list[str], PlainValidator(check_metric_names)] | None = None
    set: Literal["basic", "detailed", "full"] | None = None
    launch_count: Annotated[int, int_check(1, 10_000, "an integer from 1 to 10000")] = 20


class CprofileSpec(Spec):
    """cProfile inside a launched Python command (``python -m cProfile``): exact calls."""

    # Functions kept per host, the first by own time (and as many by cumulative time).
    top: Annotated[int, int_check(1, 500, "an integer from 1 to 500")] = 30
    # Callers and callees kept for each of those functions (the largest by cumulative time).
    edges: Annotated[int, int_check(0, 50, "an integer from 0 to 50")] = 5


class TracemallocSpec(_SamplerSpec):
    """The standard library's allocation tracer inside a launched Python program: top
    allocation sites by size and count, growth by site, peak traced memory."""

    interval_s: Interval = Field(
        default=DEFAULT_TRACEMALLOC_INTERVAL_S,
        validation_alias="interval",
        serialization_alias="interval",
    )
    # One frame (the allocating line) by default: each frame more costs every allocation
    # (docs/performance.md: 5 frames ran the demo pipeline 8x slower than 1 on Python 3.11).
    frames: Annotated[
        int, int_check(1, TRACEMALLOC_MAX_FRAMES, f"an integer from 1 to {TRACEMALLOC_MAX_FRAMES}")
    ] = 1
    top: Annotated[
        int, int_check(1, TRACEMALLOC_MAX_TOP, f"an integer from 1 to {TRACEMALLOC_MAX_TOP}")
    ] = 20


class MemraySpec(Spec):
    """memray inside a launched Python command (``python -m memray run``), where memray is
    installed in the program's own environment: allocations, peak, leaks by site."""

    # Native (C/C++) frames in the capture: a larger file, stacks through extensions.
    native: bool = False
    # Also trace the children the program forks (each writes a capture of its own).
    follow_fork: bool = False
    # Every Python object allocation, not only what reaches malloc: slower, exact counts.
    trace_python_allocators: bool = False
    # An aggregated capture: far smaller for long windows, but no totals over the run.
    aggregate: bool = False
    # Sites kept per table per host.
    top: Annotated[int, int_check(1, 100, "an integer from 1 to 100")] = 20


LINE_PROFILER_TARGET_MAX = 200  # characters of one name given to kernprof -p


def _check_prof_targets(value: object) -> list[str]:
    what = "a non-empty list of functions, classes or modules to profile (pkg.mod.func)"
    if not isinstance(value, list) or not value or len(value) > 50:
        raise invalid(f"expected {what}, at most 50, got {describe(value)}")
    for index, item in enumerate(value):
        if (
            not isinstance(item, str)
            or not 0 < len(item) <= LINE_PROFILER_TARGET_MAX
            or any(ch.isspace() or ch == "," or not ch.isprintable() for ch in item)
        ):
            raise invalid(
                "expected a dotted name (pkg.mod.func, pkg.mod.Class, pkg.mod) or the "
                f"script's path, without spaces or commas, got {describe(item)}",
                index,
            )
    return list(dict.fromkeys(value))


class LineProfilerSpec(Spec):
    """line_profiler's kernprof inside a launched Python command, where line_profiler is
    installed in the program's own environment: time by line of the named functions."""

    # kernprof -p: functions, classes or modules (profiled whole), or the script's path.
    functions: Annotated[list[str], PlainValidator(_check_prof_targets)]
    # Functions kept per host, the most time first.
    top: Annotated[int, int_check(1, 100, "an integer from 1 to 100")] = 20


class StraceSpec(Spec):
    """strace -c -f attached to the target: its system calls over the window."""

    # wall: the time from each call's entry to its exit (-w: where the threads wait);
    # system: the kernel CPU time strace -c estimates without -w.
    time: Literal["wall", "system"] = "wall"


def _check_endpoints(value: object) -> list[str]:
    what = f"a list of 1 to {PROM_MAX_ENDPOINTS} URLs such as http://127.0.0.1:9100/metrics"
    if not isinstance(value, list) or not 1 <= len(value) <= PROM_MAX_ENDPOINTS:
        raise invalid(f"expected {what}, got {describe(value)}")
    for index, url in enumerate(value):
        problem = url_problem(url)
        if problem is not None:
            shown = repr(url) if isinstance(url, str) else describe(url)
            raise invalid(f"{problem}: {shown} (endpoints on the device itself only)", index)
    return list(dict.fromkeys(value))


def _check_name_regexes(value: object) -> list[str]:
    what = "a regular expression matched against whole family names"
    if not isinstance(value, list) or not value:
        raise invalid(f"expected a non-empty list of regular expressions, got {describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise invalid(f"expected {what}, got {describe(item)}", index)
        try:
            re.compile(item)
        except (re.error, OverflowError, RecursionError) as err:
            reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
            raise invalid(f"expected {what}, got {item!r}: {reason}", index) from None
    return list(value)


def _check_timeout(value: object) -> float:
    expected = f"a timeout from {PROM_MIN_TIMEOUT_S:g}s to {PROM_MAX_TIMEOUT_S:g}s, like 2s"
    try:
        seconds = parse_duration(value)  # type: ignore[arg-type]  # checked inside
    except ValueError:
        raise invalid(f"expected {expected}, got {describe(value)}") from None
    if not PROM_MIN_TIMEOUT_S <= seconds <= PROM_MAX_TIMEOUT_S:
        raise invalid(f"expected {expected}, got {value}")
    return seconds


PROM_MAX_RESPONSE_KB = PROM_MAX_RESPONSE_BYTES // 1024


def _one_to(high: int) -> PlainValidator:
    return int_check(1, high, f"an integer from 1 to {high}")


NameRegexes = Annotated[list[str], PlainValidator(_check_name_regexes)]


class PrometheusSpec(_SamplerSpec):
    """Prometheus endpoints on the device itself, scraped by the runner during the window:
    counters as rates, gauges mean/max, histograms p50/p95 (docs/metrics.md, prometheus)."""

    endpoints: Annotated[list[str], PlainValidator(_check_endpoints)]
    interval_s: Interval = Field(
        default=5.0, validation_alias="interval", serialization_alias="interval"
    )
    # Regular expressions, each matched against whole family names; absent: every family,
    # the first max_metrics of each scrape.
    metrics: NameRegexes | None = None
    # Families (regexes, whole names) whose label sets are kept apart in the host's table.
    labels: NameRegexes | None = None
    timeout_s: Annotated[float, PlainValidator(_check_timeout)] = Field(
        default=2.0, validation_alias="timeout", serialization_alias="timeout"
    )
    max_response_kb: Annotated[int, _one_to(PROM_MAX_RESPONSE_KB)] = 4096
    max_metrics: Annotated[int, _one_to(PROM_MAX_METRICS)] = 100
    max_series: Annotated[int, _one_to(PROM_MAX_SERIES)] = 100


# tcpdump (profilers.tcpdump): an interface name as the kernel spells it (IFNAMSIZ: 15
# characters), and a capture filter (BPF) of a conservative alphabet: the filter is one argv
# element after `--` (never a shell string), and quotes, backslashes, `$`, `;` or newlines
# have no place in a filter fleetprof passes on.
TCPDUMP_INTERFACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}")
TCPDUMP_FILTER_RE = re.compile(r"[A-Za-z0-9 ._:/()!<>=&|\[\]+*-]{1,256}")
TCPDUMP_MAX_PACKETS = 1_000_000
TCPDUMP_MAX_MB = 200
TCPDUMP_MIN_SNAPLEN = 64
TCPDUMP_MAX_SNAPLEN = 65535


def _check_interface(value: object) -> str:
    expected = "a network interface name (letters, digits, '_', '.', ':', '-'; up to 15) or any"
    if not isinstance(value, str) or not TCPDUMP_INTERFACE_RE.fullmatch(value):
        raise invalid(f"expected {expected}, got {describe(value)}")
    return value


def _check_filter(value: object) -> str:
    expected = (
        "a capture filter (tcpdump's BPF expression, like `udp port 53 or tcp port 443`) "
        "of 1 to 256 letters, digits, spaces and . _ : / ( ) ! < > = & | [ ] + * -"
    )
    if not isinstance(value, str) or not TCPDUMP_FILTER_RE.fullmatch(value) or not value.strip():
        raise invalid(f"expected {expected}, got {describe(value)}")
    return " ".join(value.split())


class TcpdumpSpec(Spec):
    """tcpdump on one interface over the window: a bounded pcap and its top talkers."""

    interface: Annotated[str, PlainValidator(_check_interface)] = "any"
    filter: Annotated[str, PlainValidator(_check_filter)] | None = None
    max_packets: Annotated[int, _one_to(TCPDUMP_MAX_PACKETS)] = 10000
    max_mb: Annotated[int, _one_to(TCPDUMP_MAX_MB)] = 20
    # Bytes kept of each packet: 96 holds the link, IP and TCP/UDP headers, not payloads.
    snaplen: Annotated[
        int,
        int_check(
            TCPDUMP_MIN_SNAPLEN,
            TCPDUMP_MAX_SNAPLEN,
            f"an integer from {TCPDUMP_MIN_SNAPLEN} to {TCPDUMP_MAX_SNAPLEN}",
        ),
    ] = 96
    # Conversations and addresses kept per host, the most bytes first.
    top: Annotated[int, _one_to(PCAP_MAX_TOP)] = 20


class ProfilersSpec(Spec):
    """Which profilers run and how; a profiler that is absent (None) does not run."""

    py_spy: PySpySpec | None = Field(
        default=None, validation_alias="py-spy", serialization_alias="py-spy"
    )
    system: SystemSpec | None = None
    iotop: IotopSpec | None = None
    memory: MemorySpec | None = None
    nvidia_smi: NvidiaSmiSpec | None = Field(
        default=None, validation_alias="nvidia-smi", serialization_alias="nvidia-smi"
    )
    tegrastats: TegrastatsSpec | None = None
    nsys: NsysSpec | None = None
    ncu: NcuSpec | None = None
    cprofile: CprofileSpec | None = None
    tracemalloc: TracemallocSpec | None = None
    memray: MemraySpec | None = None
    line_profiler: LineProfilerSpec | None = Field(
        default=None, validation_alias="line-profiler", serialization_alias="line-profiler"
    )
    open_files: OpenFilesSpec | None = Field(
        default=None, validation_alias="open-files", serialization_alias="open-files"
    )
    strace: StraceSpec | None = None
    prometheus: PrometheusSpec | None = None
    tcpdump: TcpdumpSpec | None = None

    @model_serializer(mode="wrap")
    def _only_enabled(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A profiler that does not run is left out: in a campaign file `py-spy: null`
        # means "py-spy with its defaults", so a dump must not say null for "off".
        dumped: dict[str, Any] = handler(self)
        return {key: value for key, value in dumped.items() if value is not None}

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        available = ", ".join(yaml_keys(cls))
        if data is None or (isinstance(data, dict) and not data):
            raise invalid(f"enable at least one profiler (available: {available})")
        if isinstance(data, dict):
            # `py-spy:` with nothing under it means "py-spy with its defaults".
            data = {k: ({} if v is None else v) for k, v in data.items()}
        return data

    @property
    def enabled(self) -> dict[str, BaseModel]:
        """YAML name -> settings of every profiler that runs, in declaration order."""
        specs = ((key, getattr(self, name)) for key, name in yaml_keys(type(self)).items())
        return {key: spec for key, spec in specs if spec is not None}


def default_profilers() -> ProfilersSpec:
    return ProfilersSpec.model_validate({"py-spy": {}})
