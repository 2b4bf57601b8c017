"""Which way is bad for each metric, and how much spread is only noise.

A host stands out from its group only on the side that hurts: a board with a higher
frame rate than its peers is not a problem, one with a lower rate is. The table maps
metric-name patterns (``fnmatch``, first match wins) to a :class:`Rule`:

- ``higher_is_better``: throughput and rates (``workload.fps``, probe results, the
  profiler's effective sampling rate, clocks a throttled board lowers);
- ``lower_is_better``: lateness, temperatures, lag, throttling time, swap;
- ``both``: counters that merely describe load (CPU %, RSS, I/O bytes): a host far from
  its peers on either side is worth a look;
- ``skip``: bookkeeping (sample counts, the rate that was asked for) says nothing about
  the host.

``floor`` is the smallest spread (in the metric's own unit) a metric is compared with:
below it, differences are measurement noise whatever the group's MAD says (a device
starting 100 ms later than its peers, one more "behind in sampling" warning, a sensor's
1 degree step). See :func:`orchestrator.analysis.outliers.spread_floor`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache

from orchestrator.analysis.workload import PREFIX, base_name

HIGHER = "higher_is_better"
LOWER = "lower_is_better"
BOTH = "both"
SKIP = "skip"


@dataclass(frozen=True)
class Rule:
    pattern: str
    direction: str
    floor: float | None = None  # absolute noise floor in the metric's unit


RULES: tuple[Rule, ...] = (
    # Bookkeeping: how much was measured, not how the host did.
    Rule("pyspy.samples", SKIP),
    Rule("pyspy.requested_rate_hz", SKIP),
    Rule("*.samples", SKIP),
    Rule("gpu.count", SKIP),
    Rule("tegra.ram_total_mb", SKIP),
    Rule("memory.rss_slope_r2", SKIP),
    Rule("system.sampler_cpu_pct", SKIP),
    Rule("*_cv", SKIP),
    Rule("cprofile.tottime_s", SKIP),
    Rule("cprofile.distinct_functions", SKIP),
    # How many processes the target's tree had: its shape, not how the host did.
    Rule("*.processes.max", SKIP),
    # Higher is better: work done per second, clocks kept up.
    Rule("workload.*.count", SKIP),
    Rule("workload.fps", HIGHER),
    Rule("workload.fps.*", HIGHER),
    Rule("probe.*.*_per_s", HIGHER),
    Rule("*_mb_per_s", HIGHER),
    Rule("pyspy.effective_rate_hz", HIGHER, floor=2.0),
    Rule("*.sm_clock_mhz.mean", HIGHER),
    Rule("*.sm_clock_ratio.min", HIGHER, floor=0.02),
    Rule("cpufreq.min_ratio", HIGHER, floor=0.02),
    Rule("tegra.*_freq_mhz.mean", HIGHER),
    Rule("system.mem.available_mb.min", HIGHER),
    # Lower is better: lateness, heat, lag, throttling, swapping.
    # A busy controller reaches devices tens of ms apart; half a second (5.2 x the floor
    # at the default threshold) later than the peers is the device, not the controller.
    Rule("session.late_by_ms", LOWER, floor=100.0),
    # A launched program that ended by itself: how long it took (a second more or less
    # than its peers is start-up noise on a loaded board).
    Rule("target.runtime_s", LOWER, floor=1.0),
    # cProfile's own time per Python call (its overhead included): a slower core.
    Rule("cprofile.us_per_call", LOWER, floor=0.05),
    # The network probe's median round trip: a LAN's jitter is a fraction of a millisecond.
    Rule("probe.network.rtt_ms", LOWER, floor=0.5),
    Rule("thermal.*", LOWER, floor=2.0),
    Rule("tegra.temp.*", LOWER, floor=2.0),
    Rule("*.temp_c.max", LOWER, floor=2.0),
    Rule("*.max_lag_s", LOWER, floor=0.5),
    Rule("pyspy.behind_warnings", LOWER, floor=5.0),
    Rule("cpufreq.reduced_time_pct", LOWER, floor=5.0),
    Rule("cpufreq.capped_time_pct", LOWER, floor=5.0),
    Rule("memory.rss_slope_mb_per_min", LOWER, floor=1.0),
    Rule("memory.leak_suspected", LOWER),
    # tracemalloc: the Python heap's growth over the window (a MB more or less than the
    # peers is one more cache filled); snapshots taken and the tracer's own memory are
    # bookkeeping.
    Rule("tracemalloc.growth_mb*", LOWER, floor=1.0),
    Rule("tracemalloc.snapshots", SKIP),
    Rule("tracemalloc.tracer_mb", SKIP),
    # The share of the program's time its snapshots held it: what profiling cost it.
    Rule("tracemalloc.snapshot_pct", LOWER, floor=2.0),
    # memray: memory never freed by the end of the window, and the peak.
    Rule("memray.leaked_mb", LOWER, floor=1.0),
    Rule("memray.leaked_allocations", LOWER, floor=100.0),
    Rule("memray.peak_mb", LOWER, floor=1.0),
    # strace: how long it was attached is bookkeeping; failed calls are worth a look when
    # a host has more than its peers; call rates and times describe the load (a hundred
    # calls a second, a few microseconds a call, are one window against the next).
    Rule("strace.traced_s", SKIP),
    Rule("strace.error_pct", LOWER, floor=2.0),
    Rule("strace.errors", LOWER, floor=100.0),
    Rule("strace.*calls_per_s", BOTH, floor=100.0),
    Rule("strace.*usecs_per_call", BOTH, floor=5.0),
    Rule("strace.time_s", BOTH, floor=0.1),
    # tcpdump: how long it ran and what it found are the capture's shape; packets the
    # kernel dropped are worth a look where a host drops more than its peers.
    Rule("tcpdump.captured_s", SKIP),
    Rule("tcpdump.talkers", SKIP),
    Rule("tcpdump.hosts", SKIP),
    Rule("tcpdump.dropped", LOWER, floor=10.0),
    Rule("tcpdump.packets_per_s", BOTH, floor=100.0),
    # open-files: descriptors that keep growing; a handful more or less than the peers is
    # one more log or connection.
    Rule("fds.growth_per_min", LOWER, floor=10.0),
    Rule("fds.leak", LOWER),
    Rule("fds.growth_r2", SKIP),
    Rule("fds.*", BOTH, floor=5.0),
    # What a profiler cost the device (% of one core): a board where it costs far more
    # than on its peers is one where profiling disturbs the workload.
    Rule("overhead.*.cpu_pct", LOWER, floor=2.0),
    Rule("*swap*", LOWER, floor=16.0),
    # Interface errors and drops within the window: a few are noise on any link.
    Rule("net.*errors", LOWER, floor=10.0),
    Rule("net.*drops", LOWER, floor=10.0),
    Rule("net.*packets_per_s", BOTH, floor=100.0),
    # I/O and scheduling counters: an idle target's few kB of reads or a handful of
    # context switches say nothing, and where every peer reads 0 the relative floor alone
    # would call any reading different. 5 MiB/s (5.2 x the floor) more or less than the
    # peers is a different workload.
    Rule("*bytes_per_s*", BOTH, floor=1024.0 * 1024.0),
    Rule("*char_per_s*", BOTH, floor=1024.0 * 1024.0),
    Rule("*ctx_switches_per_s*", BOTH, floor=100.0),
    # Load descriptions: either side is unusual. Percentages move by a point or two
    # from one window to the next.
    Rule("*_pct*", BOTH, floor=2.0),
)

DEFAULT_RULE = Rule("*", BOTH)


# The directions a campaign declares for its workload's own metrics (``target.launch.metrics``:
# name -> higher | lower), in force inside ``declared_directions``: the analysis of one run,
# the check of one report. A context variable, so the pure functions that ask ``rule_for``
# (outliers, regressions, compare) need no extra argument through every layer.
DECLARED = {"higher": HIGHER, "lower": LOWER}
_declared: ContextVar[Mapping[str, str] | None] = ContextVar("declared_directions", default=None)


@contextmanager
def declared_directions(directions: Mapping[str, str] | None) -> Iterator[None]:
    """``rule_for`` answers each declared workload name's direction inside the block."""
    token = _declared.set(dict(directions) if directions else None)
    try:
        yield
    finally:
        _declared.reset(token)


def rule_for(metric: str) -> Rule:
    """A declared workload metric's direction (its count is bookkeeping); else the first
    rule whose pattern matches ``metric``; ``both`` when none does. A sweep run's metric
    (``workload.<name>[<value>]``) has its name's direction."""
    if metric.endswith("]") and "[" in metric:  # a sweep run's: workload.fps[8]
        metric = metric[: metric.rindex("[")]
    declared = _declared.get()
    if declared and metric.startswith(PREFIX):
        name = base_name(metric)
        if name is not None and name in declared and metric != f"{PREFIX}{name}.count":
            return Rule(metric, DECLARED.get(declared[name], BOTH))
    return _static_rule(metric)


@lru_cache(maxsize=4096)
def _static_rule(metric: str) -> Rule:
    for rule in RULES:
        if fnmatchcase(metric, rule.pattern):
            return rule
    return DEFAULT_RULE


def direction(metric: str) -> str:
    return rule_for(metric).direction


def is_bad_side(metric: str, robust_z: float) -> bool:
    """Whether a deviation of this sign hurts (always for ``both``)."""
    kind = direction(metric)
    if kind == HIGHER:
        return robust_z < 0
    if kind == LOWER:
        return robust_z > 0
    return kind == BOTH
