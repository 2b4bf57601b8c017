"""Two runs side by side (before and after an optimisation): pure functions over their
``report.json`` dicts and their hosts' stacks.

- **Metrics** are one number per host and run, with no distribution behind them: their
  change (absolute and relative) is reported, never a significance claim.
- **Function self shares** rest on sample counts, so each function's share in A and in B
  gets a two-proportion test on the 2x2 table ``[[samples in f, other samples]]`` of the
  two runs: chi-square (Yates-corrected) where every expected count is at least 5, Fisher's
  exact test otherwise. The p-values of one table (one host, or the fleet) are corrected
  together for testing many functions at once (Benjamini-Hochberg); a change is
  significant when its corrected p-value (q) is below ``alpha``.

The tests take samples as independent draws. Consecutive py-spy samples of one process
are not quite that (a phase that lasts longer than the sampling interval is seen by
several samples in a row), so the p-values are somewhat optimistic: read a small but
"significant" shift of a fraction of a percentage point with care.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.analysis.stacks import StackProfile, merge_profiles

SCHEMA = "fleetprof.report/1"
COMPARE_SCHEMA = "fleetprof.compare/1"
DEFAULT_ALPHA = 0.05
METRIC_CHANGE_PCT = 5.0
# Below this expected count in any cell, chi-square's approximation is poor.
_MIN_EXPECTED = 5.0


class CompareError(ValueError):
    """The inputs cannot be compared (not a report, wrong schema, nonsense alpha)."""


@dataclass(frozen=True)
class FunctionChange:
    function: str
    file: str | None
    a_samples: int
    b_samples: int
    a_pct: float  # self share of the run's samples, in percent
    b_pct: float
    delta_pct: float  # b_pct - a_pct, percentage points
    test: str | None  # "chi2" | "fisher" | None (a run has no samples)
    p_value: float | None
    q_value: float | None  # Benjamini-Hochberg adjusted across the table's functions
    significant: bool

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProfileComparison:
    """Function shares of one host (or the merged fleet) in A against B."""

    a_samples: int
    b_samples: int
    functions: list[FunctionChange]  # by |delta| then name

    @property
    def significant(self) -> list[FunctionChange]:
        return [f for f in self.functions if f.significant]

    def to_dict(self) -> dict[str, Any]:
        return {
            "a_samples": self.a_samples,
            "b_samples": self.b_samples,
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
    fleet: ProfileComparison | None  # the common hosts' stacks merged, per run
    warnings: list[str]

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
            "hosts": [h.to_dict() for h in self.hosts],
            "fleet": self.fleet.to_dict() if self.fleet else None,
        }


# -- the statistics ----------------------------------------------------------------
def proportion_test(a_hits: int, a_total: int, b_hits: int, b_total: int) -> tuple[str, float]:
    """Two-sided test that ``a_hits/a_total`` and ``b_hits/b_total`` share one proportion."""
    table = [[a_hits, a_total - a_hits], [b_hits, b_total - b_hits]]
    hits, misses = a_hits + b_hits, (a_total - a_hits) + (b_total - b_hits)
    if hits == 0 or misses == 0:
        return "chi2", 1.0  # both shares are 0% or both 100%: nothing differs
    stats = _stats()
    grand = a_total + b_total
    smallest = min(hits, misses) * min(a_total, b_total) / grand
    if smallest < _MIN_EXPECTED:
        return "fisher", _clamp(stats.fisher_exact(table).pvalue)
    return "chi2", _clamp(stats.chi2_contingency(table, correction=True).pvalue)


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


def self_counts(profile: StackProfile) -> dict[tuple[str, str | None], int]:
    """Samples per function (``(function, file)``) where it was the leaf."""
    counts: dict[tuple[str, str | None], int] = {}
    for frames, count in profile.stacks.items():
        if frames:
            key = frames[-1].key
            counts[key] = counts.get(key, 0) + count
    return counts


def compare_profiles(
    a: StackProfile, b: StackProfile, alpha: float = DEFAULT_ALPHA
) -> ProfileComparison:
    """Every function seen as a leaf in either profile: its self share in A and B, tested,
    with the p-values corrected together."""
    a_counts, b_counts = self_counts(a), self_counts(b)
    a_total, b_total = a.total_samples, b.total_samples
    keys = sorted(set(a_counts) | set(b_counts), key=lambda k: (k[0], k[1] or ""))
    testable = a_total > 0 and b_total > 0
    tests: list[tuple[str, float] | None] = [
        proportion_test(a_counts.get(k, 0), a_total, b_counts.get(k, 0), b_total)
        if testable
        else None
        for k in keys
    ]
    q_values = iter(benjamini_hochberg([t[1] for t in tests if t is not None]))
    changes = []
    for key, result in zip(keys, tests, strict=True):
        a_hits, b_hits = a_counts.get(key, 0), b_counts.get(key, 0)
        a_pct, b_pct = _pct(a_hits, a_total), _pct(b_hits, b_total)
        q = next(q_values) if result is not None else None
        changes.append(
            FunctionChange(
                function=key[0],
                file=key[1],
                a_samples=a_hits,
                b_samples=b_hits,
                a_pct=round(a_pct, 3),
                b_pct=round(b_pct, 3),
                delta_pct=round(b_pct - a_pct, 3),
                test=result[0] if result else None,
                p_value=result[1] if result else None,
                q_value=q,
                significant=q is not None and q < alpha and a_pct != b_pct,
            )
        )
    changes.sort(key=lambda c: (-abs(c.delta_pct), c.function, c.file or ""))
    return ProfileComparison(a_samples=a_total, b_samples=b_total, functions=changes)


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
            )
        )
    return changes


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


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
    """A (before) against B (after), host by host where a host name is in both runs, and
    fleet-wide over those common hosts' merged stacks. ``profiles_*`` map host names to
    their stacks; a host missing there has no function comparison."""
    if not 0.0 < alpha < 1.0:
        raise CompareError(f"alpha must be between 0 and 1, not {alpha}")
    a, b = _check_report(report_a, "run A"), _check_report(report_b, "run B")
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
    common = sorted(set(hosts_a) & set(hosts_b))
    results = []
    for name in common:
        ha, hb = hosts_a[name], hosts_b[name]
        notes = []
        pa, pb = profiles_a.get(name), profiles_b.get(name)
        profile = None
        if pa is not None and pb is not None and pa.total_samples and pb.total_samples:
            profile = compare_profiles(pa, pb, alpha)
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
    fleet = None
    with_stacks = [h.host for h in results if h.profile is not None]
    if with_stacks:
        fleet = compare_profiles(
            merge_profiles(profiles_a[h] for h in with_stacks),
            merge_profiles(profiles_b[h] for h in with_stacks),
            alpha,
        )
    return Comparison(
        a=ref_a,
        b=ref_b,
        alpha=alpha,
        metric_threshold_pct=metric_threshold_pct,
        hosts=results,
        only_in_a=sorted(set(hosts_a) - set(hosts_b)),
        only_in_b=sorted(set(hosts_b) - set(hosts_a)),
        fleet=fleet,
        warnings=warnings,
    )


def top_changes(profile: ProfileComparison, limit: int) -> list[FunctionChange]:
    """The significant changes first (largest first), then the largest others, to ``limit``."""
    ranked: Iterable[FunctionChange] = sorted(
        profile.functions, key=lambda c: (not c.significant, -abs(c.delta_pct))
    )
    return list(ranked)[: max(limit, 0)]
