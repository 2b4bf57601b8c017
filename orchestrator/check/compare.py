"""Two runs side by side (before and after an optimisation): pure functions over their
``report.json`` dicts and their hosts' stacks.

- **Metrics** are one number per host and run: their change (absolute and relative) is
  reported, never a significance claim.
- **Function self shares** are tested on what is independent. The stack samples of one
  window are not independent draws: a phase longer than the sampling interval is seen by
  many samples in a row, and the next run's phases fall differently, so a share moves
  between identical re-runs by far more than the sample count suggests (6.3% -> 16.0%,
  "q < 1e-4" under a test on the samples). One window per run and host is one
  observation, so:

  - **fleet-wide**, where at least ``MIN_HOSTS`` hosts have stacks in both runs, each
    function's per-host self share in A and in B is compared across those hosts with a
    paired t-test (scipy's ``ttest_rel``, two-sided): the hosts are the independent
    units. The p-values of the table's functions are corrected together
    (Benjamini-Hochberg) and a change is significant when its q-value is below ``alpha``.
    The table's shares are the hosts' mean self shares.
  - **per host**, the change of each function is shown without a test (``test`` null):
    one window against one window has nothing to tell run-to-run variation apart from a
    real change.

Hosts whose measurement window was incomplete in either run (report.json
``hosts[].incomplete``) are left out of both, and listed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from orchestrator.analysis.directions import HIGHER, LOWER, declared_directions, direction
from orchestrator.analysis.stacks import StackProfile
from orchestrator.check.judge import incomplete_reason
from orchestrator.values import mapping
from orchestrator.values import number as _finite

SCHEMA = "fleetprof.report/1"
COMPARE_SCHEMA = "fleetprof.compare/1"
DEFAULT_ALPHA = 0.05
METRIC_CHANGE_PCT = 5.0
# Hosts with stacks in both runs needed for the fleet-wide test across hosts.
MIN_HOSTS = 3
PAIRED_T = "paired-t"


class CompareError(ValueError):
    """The inputs cannot be compared (not a report, wrong schema, nonsense alpha)."""


@dataclass(frozen=True)
class FunctionChange:
    function: str
    file: str | None
    a_samples: int
    b_samples: int
    a_pct: float  # self share of the run's samples (fleet: the hosts' mean), in percent
    b_pct: float
    delta_pct: float  # b_pct - a_pct, percentage points
    test: str | None  # "paired-t" (fleet, across hosts) | None (not tested)
    p_value: float | None
    q_value: float | None  # Benjamini-Hochberg adjusted across the table's functions
    significant: bool
    hosts: int | None = None  # the hosts (independent units) behind the test

    @property
    def direction(self) -> str:
        return "up" if self.delta_pct > 0 else "down" if self.delta_pct < 0 else "same"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "direction": self.direction}


@dataclass(frozen=True)
class MetricChange:
    metric: str
    a: float
    b: float
    delta: float
    delta_pct: float | None  # None where A is 0
    changed: bool  # moved by more than the threshold (or off zero)
    # "better" | "worse" by the metric's direction (analysis/directions.py: lower growth,
    # higher fps); None where either side may be (both), it is bookkeeping, or it held.
    verdict: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProfileComparison:
    """Function shares of one host (or the fleet) in A against B."""

    a_samples: int
    b_samples: int
    functions: list[FunctionChange]  # by |delta| then name
    tested: str | None = None  # how: "across N hosts", or None (not tested)

    @property
    def significant(self) -> list[FunctionChange]:
        return [f for f in self.functions if f.significant]

    def to_dict(self) -> dict[str, Any]:
        return {
            "a_samples": self.a_samples,
            "b_samples": self.b_samples,
            "tested": self.tested,
            "functions": [f.to_dict() for f in self.functions],
        }


@dataclass(frozen=True)
class HostComparison:
    host: str
    a_status: str
    b_status: str
    metrics: list[MetricChange]
    profile: ProfileComparison | None  # None where a run has no stacks for the host
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "a_status": self.a_status,
            "b_status": self.b_status,
            "metrics": [m.to_dict() for m in self.metrics],
            "profile": self.profile.to_dict() if self.profile else None,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class RunRef:
    campaign: str
    run_id: str
    started_at: str | None


@dataclass(frozen=True)
class Comparison:
    a: RunRef
    b: RunRef
    alpha: float
    metric_threshold_pct: float
    hosts: list[HostComparison]
    only_in_a: list[str]
    only_in_b: list[str]
    fleet: ProfileComparison | None  # the common hosts' shares, tested across hosts
    warnings: list[str]
    incomplete: list[dict[str, str]] = field(default_factory=list)  # {host, run, reason}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": COMPARE_SCHEMA,
            "a": asdict(self.a),
            "b": asdict(self.b),
            "alpha": self.alpha,
            "correction": "benjamini-hochberg",
            "metric_threshold_pct": self.metric_threshold_pct,
            "warnings": list(self.warnings),
            "only_in_a": list(self.only_in_a),
            "only_in_b": list(self.only_in_b),
            "incomplete": [dict(entry) for entry in self.incomplete],
            "hosts": [h.to_dict() for h in self.hosts],
            "fleet": self.fleet.to_dict() if self.fleet else None,
        }


# -- the statistics ----------------------------------------------------------------
def paired_p(a_values: list[float], b_values: list[float]) -> float:
    """Two-sided paired t-test p-value that the per-host differences ``b - a`` are 0."""
    diffs = [y - x for x, y in zip(a_values, b_values, strict=True)]
    if max(diffs) == min(diffs):
        # No spread in the differences: no change at all, or the same change everywhere.
        return 1.0 if diffs[0] == 0 else 0.0
    return _clamp(_stats().ttest_rel(b_values, a_values).pvalue)


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    if not p_values:
        return []
    return [_clamp(q) for q in _stats().false_discovery_control(p_values, method="bh")]


def _stats() -> Any:
    # Imported on first use: scipy takes a noticeable part of a second to load, and no
    # other command needs it.
    from scipy import stats  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return stats


def _clamp(value: Any) -> float:
    number = float(value)
    return 1.0 if math.isnan(number) else min(max(number, 0.0), 1.0)


def _pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


FunctionKey = tuple[str, str | None]


def self_counts(profile: StackProfile) -> dict[FunctionKey, int]:
    """Samples per function (``(function, file)``) where it was the leaf."""
    counts: dict[FunctionKey, int] = {}
    for frames, count in profile.stacks.items():
        if frames:
            key = frames[-1].key
            counts[key] = counts.get(key, 0) + count
    return counts


def _ordered(keys: Iterable[FunctionKey]) -> list[FunctionKey]:
    return sorted(set(keys), key=lambda k: (k[0], k[1] or ""))


def compare_profiles(a: StackProfile, b: StackProfile) -> ProfileComparison:
    """One host's window in A against its window in B: every function seen as a leaf in
    either, its self share in each and the change, not tested (see the module's
    docstring)."""
    a_counts, b_counts = self_counts(a), self_counts(b)
    a_total, b_total = a.total_samples, b.total_samples
    changes = []
    for key in _ordered([*a_counts, *b_counts]):
        a_hits, b_hits = a_counts.get(key, 0), b_counts.get(key, 0)
        a_pct, b_pct = _pct(a_hits, a_total), _pct(b_hits, b_total)
        changes.append(_change(key, (a_hits, b_hits), a_pct, b_pct, None, None, None))
    return _table(a_total, b_total, changes, None)


def compare_across_hosts(
    pairs: Mapping[str, tuple[StackProfile, StackProfile]], alpha: float = DEFAULT_ALPHA
) -> ProfileComparison:
    """The hosts' windows in A against theirs in B (``pairs``: host -> (A, B), each with
    samples): each function's per-host self shares tested with a paired t-test across
    the hosts (at least MIN_HOSTS, else untested), corrected together (BH)."""
    counts = {h: (self_counts(a), self_counts(b)) for h, (a, b) in pairs.items()}
    totals = {h: (a.total_samples, b.total_samples) for h, (a, b) in pairs.items()}
    hosts = sorted(pairs)
    keys = _ordered(k for ca, cb in counts.values() for k in (*ca, *cb))
    shares = {
        key: (
            [_pct(counts[h][0].get(key, 0), totals[h][0]) for h in hosts],
            [_pct(counts[h][1].get(key, 0), totals[h][1]) for h in hosts],
        )
        for key in keys
    }
    testable = len(hosts) >= MIN_HOSTS
    p_values = [paired_p(*shares[key]) for key in keys] if testable else []
    q_values = benjamini_hochberg(p_values)
    changes = []
    for i, key in enumerate(keys):
        a_shares, b_shares = shares[key]
        hits = (
            sum(counts[h][0].get(key, 0) for h in hosts),
            sum(counts[h][1].get(key, 0) for h in hosts),
        )
        a_pct, b_pct = _mean(a_shares), _mean(b_shares)
        if testable:
            change = _change(key, hits, a_pct, b_pct, p_values[i], q_values[i], alpha)
            changes.append(replace(change, hosts=len(hosts)))
        else:
            changes.append(_change(key, hits, a_pct, b_pct, None, None, None))
    how = f"paired t-test across {len(hosts)} hosts" if testable else None
    a_total = sum(t[0] for t in totals.values())
    b_total = sum(t[1] for t in totals.values())
    return _table(a_total, b_total, changes, how)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _change(
    key: FunctionKey,
    hits: tuple[int, int],
    a_pct: float,
    b_pct: float,
    p: float | None,
    q: float | None,
    alpha: float | None,
) -> FunctionChange:
    delta = round(b_pct - a_pct, 3)
    return FunctionChange(
        function=key[0],
        file=key[1],
        a_samples=hits[0],
        b_samples=hits[1],
        a_pct=round(a_pct, 3),
        b_pct=round(b_pct, 3),
        delta_pct=delta,
        test=PAIRED_T if p is not None else None,
        p_value=p,
        q_value=q,
        significant=q is not None and alpha is not None and q < alpha and delta != 0,
    )


def _table(
    a_total: int, b_total: int, changes: list[FunctionChange], how: str | None
) -> ProfileComparison:
    changes.sort(key=lambda c: (-abs(c.delta_pct), c.function, c.file or ""))
    return ProfileComparison(a_samples=a_total, b_samples=b_total, functions=changes, tested=how)


def compare_metrics(
    a: Mapping[str, Any], b: Mapping[str, Any], threshold_pct: float = METRIC_CHANGE_PCT
) -> list[MetricChange]:
    """Each metric both runs have as a finite number: its change. No significance: a
    metric is one number per run, not a sample."""
    changes = []
    for name in sorted(set(a) & set(b)):
        va, vb = _finite(a[name]), _finite(b[name])
        if va is None or vb is None:
            continue
        delta = vb - va
        pct = 100.0 * delta / abs(va) if va != 0 else None
        changed = abs(pct) > threshold_pct if pct is not None else vb != 0
        changes.append(
            MetricChange(
                metric=name,
                a=va,
                b=vb,
                delta=delta,
                delta_pct=round(pct, 3) if pct is not None else None,
                changed=changed,
                verdict=verdict(name, delta),
            )
        )
    return changes


def verdict(metric: str, delta: float) -> str | None:
    """Whether B's value is better or worse than A's, by the metric's direction."""
    kind = direction(metric)
    if delta == 0 or kind not in (HIGHER, LOWER):
        return None
    return "better" if (delta > 0) == (kind == HIGHER) else "worse"


# -- two runs --------------------------------------------------------------------
def _check_report(report: Any, label: str) -> dict[str, Any]:
    if not isinstance(report, dict):
        raise CompareError(f"{label}: report.json is not a JSON object")
    if report.get("schema") != SCHEMA:
        raise CompareError(f"{label}: report.json schema is {report.get('schema')!r}, not {SCHEMA}")
    if not isinstance(report.get("hosts"), list):
        raise CompareError(f"{label}: report.json has no hosts list")
    return report


def _hosts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    hosts: dict[str, dict[str, Any]] = {}
    for entry in report["hosts"]:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            hosts.setdefault(entry["name"], entry)
    return hosts


def _ref(report: dict[str, Any]) -> RunRef:
    started = report.get("started_at")
    return RunRef(
        campaign=str(report.get("campaign")),
        run_id=str(report.get("run_id")),
        started_at=str(started) if started is not None else None,
    )


def compare_runs(
    report_a: Any,
    report_b: Any,
    profiles_a: Mapping[str, StackProfile],
    profiles_b: Mapping[str, StackProfile],
    alpha: float = DEFAULT_ALPHA,
    metric_threshold_pct: float = METRIC_CHANGE_PCT,
) -> Comparison:
    """A (before) against B (after), host by host where a host name is in both runs and
    its window was complete in both, and fleet-wide across those hosts (tested where at
    least MIN_HOSTS of them have stacks in both runs). ``profiles_*`` map host names to
    their stacks; a host missing there has no function comparison."""
    if not 0.0 < alpha < 1.0:
        raise CompareError(f"alpha must be between 0 and 1, not {alpha}")
    a, b = _check_report(report_a, "run A"), _check_report(report_b, "run B")
    # The workload metrics' directions the newer run's campaign declared.
    declared = {
        str(k): str(v) for k, v in mapping(mapping(b.get("compare")).get("directions")).items()
    }
    with declared_directions(declared):
        return _compare(a, b, profiles_a, profiles_b, alpha, metric_threshold_pct)


def _compare(
    a: dict[str, Any],
    b: dict[str, Any],
    profiles_a: Mapping[str, StackProfile],
    profiles_b: Mapping[str, StackProfile],
    alpha: float,
    metric_threshold_pct: float,
) -> Comparison:
    ref_a, ref_b = _ref(a), _ref(b)
    warnings = []
    if ref_a.campaign != ref_b.campaign:
        warnings.append(
            f"the runs come from different campaigns ({ref_a.campaign!r} and "
            f"{ref_b.campaign!r}): make sure they profiled the same thing"
        )
    if ref_a.run_id == ref_b.run_id and ref_a.campaign == ref_b.campaign:
        warnings.append("both sides are the same run")
    hosts_a, hosts_b = _hosts(a), _hosts(b)
    incomplete = _incomplete(hosts_a, hosts_b)
    left_out = {entry["host"] for entry in incomplete}
    warnings += [
        f"host {e['host']} left out: its window in run {e['run']} was incomplete ({e['reason']})"
        for e in incomplete
    ]
    common = sorted((set(hosts_a) & set(hosts_b)) - left_out)
    results = []
    pairs: dict[str, tuple[StackProfile, StackProfile]] = {}
    for name in common:
        ha, hb = hosts_a[name], hosts_b[name]
        notes = []
        pa, pb = profiles_a.get(name), profiles_b.get(name)
        profile = None
        if pa is not None and pb is not None and pa.total_samples and pb.total_samples:
            profile = compare_profiles(pa, pb)
            pairs[name] = (pa, pb)
        else:
            missing = [label for label, p in (("A", pa), ("B", pb)) if not p or not p.total_samples]
            notes.append(f"no stacks in run {' and '.join(missing)}: functions not compared")
        if ha.get("hw_model") != hb.get("hw_model"):
            notes.append(f"hardware model changed: {ha.get('hw_model')} -> {hb.get('hw_model')}")
        ma, mb = ha.get("metrics"), hb.get("metrics")
        results.append(
            HostComparison(
                host=name,
                a_status=str(ha.get("status")),
                b_status=str(hb.get("status")),
                metrics=compare_metrics(
                    ma if isinstance(ma, dict) else {},
                    mb if isinstance(mb, dict) else {},
                    metric_threshold_pct,
                ),
                profile=profile,
                notes=notes,
            )
        )
    fleet = compare_across_hosts(pairs, alpha) if pairs else None
    if pairs:
        untested = (
            "function shares of one window per run are not tested on a host (its samples "
            "are not independent draws)"
        )
        where = (
            "; the fleet table tests them across hosts"
            if fleet is not None and fleet.tested
            else f"; a test across hosts needs at least {MIN_HOSTS} hosts with stacks"
        )
        for result in results:
            if result.profile is not None:
                result.notes.append(untested + where)
    return Comparison(
        a=ref_a,
        b=ref_b,
        alpha=alpha,
        metric_threshold_pct=metric_threshold_pct,
        hosts=results,
        only_in_a=sorted(set(hosts_a) - set(hosts_b) - left_out),
        only_in_b=sorted(set(hosts_b) - set(hosts_a) - left_out),
        fleet=fleet,
        warnings=warnings,
        incomplete=incomplete,
    )


def _incomplete(
    hosts_a: Mapping[str, Mapping[str, Any]], hosts_b: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, str]]:
    """Hosts whose window was incomplete in run A or B (``hosts[].incomplete``)."""
    found = []
    for label, hosts in (("A", hosts_a), ("B", hosts_b)):
        for name in sorted(hosts):
            reason = incomplete_reason(hosts[name])
            if reason is not None:
                found.append({"host": name, "run": label, "reason": reason})
    return found


def top_changes(profile: ProfileComparison, limit: int) -> list[FunctionChange]:
    """The significant changes first (largest first), then the largest others, to ``limit``."""
    ranked: Iterable[FunctionChange] = sorted(
        profile.functions, key=lambda c: (not c.significant, -abs(c.delta_pct))
    )
    return list(ranked)[: max(limit, 0)]
