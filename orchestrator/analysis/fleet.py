"""Stage 8: the per-host views -> the fleet's report.json (pure).

Hosts are grouped by the campaign's ``compare.group_by`` (the hardware model, the
architecture or any inventory variable); inside each group the analysis finds the hosts
that stand out (:mod:`orchestrator.analysis.outliers`), lays the hot functions out
host by host (``function_matrix``) and diffs the profiles (:mod:`orchestrator.analysis.diff`).
The py-spy profiles come in as :class:`StackProfile` values keyed by host name.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations, pairwise
from typing import Any

from orchestrator.analysis.breakdown import processes_by_command
from orchestrator.analysis.cprofile_groups import CPROFILE_TOTAL, with_group_cprofile
from orchestrator.analysis.diff import diff_tree
from orchestrator.analysis.directions import declared_directions
from orchestrator.analysis.lines import LineCounts, with_group_hot_lines
from orchestrator.analysis.outliers import (
    CPROFILE_SHARE_METRIC,
    SHARE_METRIC,
    Outlier,
    function_share_outliers,
    metric_outliers,
    severity,
)
from orchestrator.analysis.sites import SITE_MATRICES, site_matrix
from orchestrator.analysis.stacks import (
    LazyTree,
    StackProfile,
    flame_of_tree,
    gc_paused,
    merge_profiles,
)
from orchestrator.models import REPORT_SCHEMA, HostStatus

STATUSES = [s.value for s in HostStatus]
UNKNOWN_GROUP = "unknown"
DEFAULT_GROUP_BY = "hw_model"
DEFAULT_THRESHOLD = 3.5
MATRIX_FUNCTIONS = 30
MAX_HOST_DIFFS = 50
MAX_GROUP_DIFFS = 10
ALL_PAIRS_UP_TO = 5  # groups; beyond, only groups next to each other by name

FunctionKey = tuple[str, str | None]
# A host's cProfile functions (profilers/cprofile.py): the rows of its own-time matrix.
CPROFILE_TABLE = "cprofile.functions"
CPROFILE_EDGES = "cprofile.edges"  # and its caller -> callee edges


@dataclass
class HostView:
    """One host's entry in report.json (see DESIGN.md, Contracts)."""

    name: str
    hw_model: str
    arch: str
    status: str
    reason: str | None = None
    start_offset_ms: float | None = None
    profilers: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    top_functions: list[dict[str, Any]] = field(default_factory=list)
    flamegraph: dict[str, Any] | None = None
    data_quality: list[str] = field(default_factory=list)
    group: str | None = None  # the host's value of compare.group_by (hw_model by default)
    series: dict[str, list[float | None]] = field(default_factory=dict)  # see docs/report.md
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)  # repetitions per metric
    # Why the host's measurement window was not complete (orchestrator/stages/window.py); None
    # when it was, or when there was no measurement at all.
    incomplete: str | None = None
    # py-spy's hot lines: the hottest functions' lines (orchestrator/analysis/lines.py).
    hot_lines: list[dict[str, Any]] = field(default_factory=list)
    # The line counts they came from (ProfileResult.line_counts), for the group's hot lines
    # to sum; not in report.json. None: counted from the profile when the group needs them.
    line_counts: LineCounts | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hw_model": self.hw_model,
            "arch": self.arch,
            "status": str(self.status),
            "reason": self.reason,
            "incomplete": self.incomplete,
            "start_offset_ms": self.start_offset_ms,
            "profilers": self.profilers,
            "metrics": self.metrics,
            "top_functions": self.top_functions,
            "flamegraph": self.flamegraph,
            "hot_lines": self.hot_lines,
            "series": self.series,
            "tables": self.tables,
            "samples": self.samples,
            "data_quality": self.data_quality,
            "group": self.group if self.group is not None else self.hw_model,
        }


def group_key(host: HostView, group_by: str, values: Mapping[str, str] | None = None) -> str:
    """The host's group: its hardware model, its architecture, or its value of the
    inventory variable ``group_by`` (``unknown`` where the inventory does not set it)."""
    if group_by == "hw_model":
        return host.hw_model
    if group_by == "arch":
        return host.arch
    value = (values or {}).get(host.name)
    return value if value else UNKNOWN_GROUP


def _has_data(host: HostView) -> bool:
    return str(host.status) in (HostStatus.OK.value, HostStatus.PARTIAL.value)


def _group_of(host: HostView) -> str:
    return host.group if host.group is not None else host.hw_model


def _by_group(hosts: Sequence[HostView]) -> dict[str, list[HostView]]:
    groups: dict[str, list[HostView]] = defaultdict(list)
    for host in sorted(hosts, key=lambda h: (_group_of(h), h.name)):
        groups[_group_of(host)].append(host)
    return dict(sorted(groups.items()))


def group_trees(
    hosts: Sequence[HostView], profiles: Mapping[str, StackProfile]
) -> dict[str, LazyTree]:
    """Per group, the call tree of its hosts' profiles merged (groups with samples only).

    Made once from the group's distinct stacks (hosts of one model mostly share their
    stacks), for the group's flame graph and every diff that involves the group, and only
    as far as those read it."""
    trees: dict[str, LazyTree] = {}
    for key, members in _by_group(hosts).items():
        merged = [profiles[h.name] for h in members if h.name in profiles]
        if merged:
            profile = merge_profiles(merged)
            if profile.total_samples > 0:
                trees[key] = LazyTree.of(profile)
    return trees


def group_stats(
    hosts: Sequence[HostView],
    profiles: Mapping[str, StackProfile] | None = None,
    trees: Mapping[str, LazyTree] | None = None,
) -> list[dict[str, Any]]:
    """Per group (``host.group``, else the hardware model): median, MAD and n of every
    metric over the hosts that produced data, and the group's merged py-spy profile
    (``trees``: the groups' call trees when already built, see :func:`group_trees`)."""
    if trees is None:
        trees = group_trees(hosts, profiles or {})
    groups = []
    for key, members in _by_group(hosts).items():
        values: dict[str, list[float]] = defaultdict(list)
        for host in members:
            if _has_data(host):
                for name, value in host.metrics.items():
                    values[name].append(value)
        metrics = {}
        for name in sorted(values):
            series = values[name]
            median = statistics.median(series)
            mad = statistics.median(abs(v - median) for v in series)
            metrics[name] = {"median": round(median, 4), "mad": round(mad, 4), "n": len(series)}
        tree = trees.get(key)
        groups.append(
            {
                "hw_model": key,
                "hosts": [h.name for h in members],
                "metrics": metrics,
                "flamegraph": flame_of_tree(tree) if tree is not None else None,
            }
        )
    return groups


def self_counts(profile: StackProfile) -> dict[FunctionKey, int]:
    """Samples per function as the leaf (its self time)."""
    return profile.self_counts


def _shares(counts: Mapping[FunctionKey, int], total: int) -> dict[FunctionKey, float]:
    return {key: 100.0 * n / total for key, n in counts.items()} if total > 0 else {}


def find_outliers(
    hosts: Sequence[HostView],
    shares: Mapping[str, Mapping[FunctionKey, float]],
    threshold: float,
    cprofile: Mapping[str, Mapping[FunctionKey, float]] | None = None,
) -> list[Outlier]:
    """Metric and function-share outliers of every group, worst first (hosts with a
    complete window only: ``incomplete`` unset); ``cprofile``: each host's cProfile own
    time % by function, compared the same way as py-spy's self % (``shares``)."""
    found: list[Outlier] = []
    for key, members in _by_group(hosts).items():
        # A host whose measurement window was incomplete (started late, cut short) is
        # neither flagged nor part of its peers' median.
        with_data = [h for h in members if _has_data(h) and not h.incomplete]
        found.extend(
            metric_outliers(
                key,
                {h.name: h.metrics for h in with_data},
                threshold,
                {h.name: h.samples for h in with_data},
            )
        )
        group_shares = {h.name: shares[h.name] for h in with_data if h.name in shares}
        found.extend(function_share_outliers(key, group_shares, threshold))
        own = {h.name: (cprofile or {})[h.name] for h in with_data if h.name in (cprofile or {})}
        found.extend(function_share_outliers(key, own, threshold, CPROFILE_SHARE_METRIC))
    found.sort(key=lambda o: (-abs(o.robust_z), o.host, o.metric, o.function or ""))
    return found


def function_matrix(
    hosts: Sequence[HostView],
    shares: Mapping[str, Mapping[FunctionKey, float]],
    outliers: Sequence[Outlier] = (),
    limit: int = MATRIX_FUNCTIONS,
) -> dict[str, Any]:
    """The hot functions (the ``limit`` largest by their highest self % on any host) x
    the hosts with a profile, ordered by group then name. A cell is the function's self %
    on that host, null where it took no self samples there."""
    columns = [h.name for members in _by_group(hosts).values() for h in members if h.name in shares]
    peak: dict[FunctionKey, float] = {}
    for name in columns:
        for key, pct in shares[name].items():
            peak[key] = max(peak.get(key, 0.0), pct)
    rows = sorted(peak, key=lambda k: (-peak[k], k[0], k[1] or ""))[: max(limit, 0)]
    deviant = {(o.host, o.function, o.file) for o in outliers if o.kind == "function_share"}
    cells = []
    flags = []
    for key in rows:
        row = []
        for name in columns:
            cell = shares[name].get(key)
            row.append(round(cell, 2) if cell is not None else None)
        cells.append(row)
        flags.append([(name, key[0], key[1]) in deviant for name in columns])
    return {
        "functions": [{"function": f, "file": file} for f, file in rows],
        "hosts": columns,
        "cells": cells,
        "deviant": flags,
    }


def table_shares(
    hosts: Sequence[HostView], table: str, share: str
) -> dict[str, dict[FunctionKey, float]]:
    """Each host's share per function from one of its tables (rows with ``function``,
    ``file`` and ``share``): what :func:`function_matrix` lays out, for hosts with data."""
    found: dict[str, dict[FunctionKey, float]] = {}
    for host in hosts:
        rows = host.tables.get(table) if _has_data(host) else None
        if rows:
            found[host.name] = {
                (str(r["function"]), r.get("file")): float(r[share])
                for r in rows
                if isinstance(r.get(share), (int, float))
            }
    return found


def _group_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    ordered = sorted(names)
    if len(ordered) <= ALL_PAIRS_UP_TO:
        return list(combinations(ordered, 2))
    return list(pairwise(ordered))[:MAX_GROUP_DIFFS]


def fleet_diffs(
    hosts: Sequence[HostView],
    profiles: Mapping[str, StackProfile],
    outliers: Sequence[Outlier] = (),
    max_hosts: int = MAX_HOST_DIFFS,
    trees: Mapping[str, LazyTree] | None = None,
) -> dict[str, Any]:
    """Differential trees: each host against the rest of its group, each pair of groups.

    Host diffs are kept for at most ``max_hosts`` hosts (every eligible host when there
    are no more): the outliers first (worst robust z first), then the hosts whose
    self-time distribution is furthest from the rest of their group's (total variation
    distance), so a 500-host fleet's report stays small and shows what differs.
    ``trees``: the groups' call trees when already built (:func:`group_trees`); a host's
    own tree is built only when it gets a diff.
    """
    usable = {name: p for name, p in profiles.items() if p.total_samples > 0}
    if trees is None:
        trees = group_trees(hosts, usable)
    counts = {name: self_counts(p) for name, p in usable.items()}
    group_counts: dict[str, dict[FunctionKey, int]] = {}
    group_totals: dict[str, int] = {}
    candidates: list[tuple[str, str]] = []
    for key, members in _by_group(hosts).items():
        names = [h.name for h in members if h.name in usable]
        if not names:
            continue
        summed: dict[FunctionKey, int] = defaultdict(int)
        for n in names:
            for fkey, c in counts[n].items():
                summed[fkey] += c
        group_counts[key] = summed
        group_totals[key] = sum(usable[n].total_samples for n in names)
        if len(names) >= 2:
            candidates.extend((n, key) for n in names)

    worst = severity(outliers)

    def distance(host: str, key: str) -> float:
        own, group = counts[host], group_counts[key]
        own_total = usable[host].total_samples
        rest_total = group_totals[key] - own_total
        if own_total <= 0 or rest_total <= 0:
            return 0.0
        return 0.5 * sum(
            abs(own.get(f, 0) / own_total - (group[f] - own.get(f, 0)) / rest_total) for f in group
        )

    if len(candidates) > max_hosts:
        ranked = sorted(candidates, key=lambda c: (-worst.get(c[0], 0.0), -distance(*c), c[0]))
        chosen = set(ranked[: max(max_hosts, 0)])
        candidates = [c for c in candidates if c in chosen]
    host_vs_group = {}
    for host, key in candidates:
        own = LazyTree.of(usable[host])
        host_vs_group[host] = diff_tree(own, trees[key], subtract=own)
    group_vs_group = [
        {"a": a, "b": b, "tree": diff_tree(trees[a], trees[b])}
        for a, b in _group_pairs(list(trees))
    ]
    return {"host_vs_group": host_vs_group, "group_vs_group": group_vs_group}


def build_report(
    meta: dict[str, Any],
    hosts: list[HostView],
    profiles: Mapping[str, StackProfile] | None = None,
    *,
    group_by: str = DEFAULT_GROUP_BY,
    threshold: float = DEFAULT_THRESHOLD,
    group_values: Mapping[str, str] | None = None,
    directions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``meta``: campaign, run_id, started_at, duration_s, mode (from run.json);
    ``profiles``: each host's py-spy profile; ``group_values``: each host's value of the
    inventory variable ``group_by`` (unused for hw_model and arch); ``directions``: the
    campaign's workload metrics and which way is better (``target.launch.metrics``)."""
    with gc_paused(), declared_directions(directions):
        report = _build_report(meta, hosts, profiles or {}, group_by, threshold, group_values)
    if directions:
        report["compare"]["directions"] = dict(directions)
    return report


def _build_report(
    meta: dict[str, Any],
    hosts: list[HostView],
    profiles: Mapping[str, StackProfile],
    group_by: str,
    threshold: float,
    group_values: Mapping[str, str] | None,
) -> dict[str, Any]:
    for host in hosts:
        host.group = group_key(host, group_by, group_values)
    with_data = {h.name for h in hosts if _has_data(h)}
    usable = {
        name: profile
        for name, profile in profiles.items()
        if profile.total_samples > 0 and name in with_data
    }
    shares = {name: _shares(self_counts(p), p.total_samples) for name, p in usable.items()}
    cprofile = table_shares(hosts, CPROFILE_TABLE, "tottime_pct")
    outliers = find_outliers(hosts, shares, threshold, cprofile)
    by_share = {
        metric: [o for o in outliers if o.metric == metric]
        for metric in (SHARE_METRIC, CPROFILE_SHARE_METRIC)
    }
    trees = group_trees(hosts, usable)
    counts = dict.fromkeys(STATUSES, 0)
    for host in hosts:
        counts[str(host.status)] = counts.get(str(host.status), 0) + 1
    offsets = [h.start_offset_ms for h in hosts if h.start_offset_ms is not None]
    report = {
        "schema": REPORT_SCHEMA,
        "campaign": meta["campaign"],
        "run_id": meta["run_id"],
        "started_at": meta["started_at"],
        "duration_s": meta["duration_s"],
        "mode": meta.get("mode"),
        "summary": {"hosts": len(hosts), **counts},
        "start_skew_ms": round(max(offsets) - min(offsets), 1) if offsets else None,
        "compare": {"group_by": group_by, "threshold": threshold},
        "hosts": [h.to_dict() for h in sorted(hosts, key=lambda h: (_group_of(h), h.name))],
        "groups": with_group_cprofile(
            with_group_hot_lines(
                group_stats(hosts, usable, trees),
                {h.name: h.hot_lines for h in hosts},
                usable,
                {h.name: h.line_counts for h in hosts if h.line_counts is not None},
            ),
            {h.name: h.tables[CPROFILE_TABLE] for h in hosts if h.name in cprofile},
            {h.name: h.metrics.get(CPROFILE_TOTAL) for h in hosts},
        ),
        "outliers": [o.to_dict() for o in outliers],
        "function_matrix": function_matrix(hosts, shares, by_share[SHARE_METRIC]),
        "diffs": fleet_diffs(hosts, usable, outliers, trees=trees),
        # py-spy's processes (subprocesses: true) merged by command line across hosts.
        "processes": processes_by_command(usable),
    }
    if cprofile:
        # cProfile's own time (tottime %) by function and host: exact where py-spy samples.
        report["cprofile_function_matrix"] = function_matrix(
            hosts, cprofile, by_share[CPROFILE_SHARE_METRIC]
        )
    # Allocation sites by host (tracemalloc's growth, memray's peak): only where some host has them.
    ordered = [h.name for members in _by_group(hosts).values() for h in members if _has_data(h)]
    for key, (table, value) in SITE_MATRICES.items():
        matrix = site_matrix(ordered, {h.name: h.tables.get(table) or [] for h in hosts}, value)
        if matrix is not None:
            report[key] = matrix
    return report
