"""`fleetprof check`: a finished run judged against its peers, its own baseline, and for
completeness (docs/check.md). Pure functions over report.json dicts and what the history
store returned; the command (cli.py) runs the campaigns and writes the files.

The judgement's result is ``check.json`` in the run directory (``check{}``,
``regressions[]``, ``history{}``), which :func:`orchestrator.flow.build_outputs` merges
into report.json, so `fleetprof report RUN_DIR` rebuilds a check's report too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.analysis.directions import SKIP, is_bad_side, rule_for
from orchestrator.analysis.outliers import robust_z, spread_floor
from orchestrator.analysis.regressions import (
    Regression,
    confirm,
    fingerprint_diff,
    host_fingerprint,
    judge,
    run_tests,
)
from orchestrator.campaign import CheckSpec

CHECK_FILE = "check.json"
PASS, FINDINGS, INCOMPLETE = "pass", "findings", "incomplete"
EXIT_CODES = {PASS: 0, FINDINGS: 1, INCOMPLETE: 3}
JUDGED_STATUSES = ("ok", "partial")  # hosts that brought data back
NOT_FAILED = ("ok", "skipped")


@dataclass(frozen=True)
class Baseline:
    run_id: str | None
    source: str  # pinned | last | dir | none
    path: str | None = None
    samples: Mapping[str, Mapping[str, Sequence[float]]] = field(default_factory=dict)
    statuses: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "source": self.source, "path": self.path}


@dataclass(frozen=True)
class Finding:
    kind: str  # outlier | regression | failed | missing
    host: str
    metric: str | None
    message: str
    confirmed: bool | None = None  # None: not confirmable (failed, missing) or not tried

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "host": self.host,
            "metric": self.metric,
            "message": self.message,
            "confirmed": self.confirmed,
        }


@dataclass(frozen=True)
class Judgement:
    findings: list[Finding]
    regressions: list[Regression]  # flagged only
    tests: int
    outliers: list[dict[str, Any]]  # report.json outliers behind the outlier findings

    @property
    def flagged_hosts(self) -> list[str]:
        """Hosts a re-measure can confirm (outliers, regressions)."""
        return sorted({f.host for f in self.findings if f.kind in ("outlier", "regression")})


def host_samples(report: Mapping[str, Any]) -> dict[str, dict[str, list[float]]]:
    """host -> metric -> repetitions, for the hosts that brought data back."""
    found: dict[str, dict[str, list[float]]] = {}
    for host in report.get("hosts") or []:
        samples = host.get("samples")
        if host.get("status") in JUDGED_STATUSES and isinstance(samples, dict):
            found[str(host["name"])] = {str(k): list(v) for k, v in samples.items()}
    return found


def judged_metrics(report: Mapping[str, Any], spec: CheckSpec) -> list[str]:
    """The campaign's check.metrics, or every metric with repetitions behind it."""
    if spec.metrics is not None:
        return list(spec.metrics)
    names = {m for samples in host_samples(report).values() for m in samples}
    return sorted(m for m in names if rule_for(m).direction != SKIP)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.4g}"


def _status_findings(report: Mapping[str, Any], baseline: Baseline) -> list[Finding]:
    findings = []
    present = set()
    for host in report.get("hosts") or []:
        name = str(host.get("name"))
        present.add(name)
        status = str(host.get("status"))
        if status not in NOT_FAILED:
            reason = host.get("reason") or "no reason given"
            findings.append(Finding("failed", name, None, f"{status}: {reason}"))
    for name in sorted(set(baseline.statuses) - present):
        findings.append(
            Finding(
                "missing", name, None, f"in the baseline run {baseline.run_id}, not in this run"
            )
        )
    return findings


def _regression_message(r: Regression) -> str:
    change = "n/a" if r.change_pct is None else f"{r.change_pct:+.1f}%"
    return (
        f"{r.metric} {_fmt(r.value)} against its baseline {_fmt(r.baseline)} ({change}; "
        f"Welch p={r.p_value:.2g}, q={r.q_value:.2g}, n={r.n}/{r.baseline_n})"
    )


def _outlier_message(outlier: Mapping[str, Any]) -> str:
    return (
        f"{outlier.get('metric')} {_fmt(outlier.get('value'))} against its group median "
        f"{_fmt(outlier.get('group_median'))} (robust z {outlier.get('robust_z')})"
    )


def judge_run(report: Mapping[str, Any], baseline: Baseline, spec: CheckSpec) -> Judgement:
    """Outliers on the judged metrics, regressions against the baseline, failed and
    missing hosts: before any confirmation."""
    metrics = judged_metrics(report, spec)
    groups = {str(h["name"]): str(h.get("group") or h.get("hw_model")) for h in report["hosts"]}
    tested = run_tests(host_samples(report), baseline.samples, groups, metrics)
    judged = judge(
        tested, alpha=spec.alpha, regression_pct=spec.regression_pct, baseline_run=baseline.run_id
    )
    flagged = [r for r in judged if r.flagged]
    outliers = [
        o
        for o in report.get("outliers") or []
        if o.get("kind", "metric") == "metric" and o.get("metric") in metrics
    ]
    findings = _status_findings(report, baseline)
    findings += [
        Finding("outlier", str(o["host"]), o["metric"], _outlier_message(o)) for o in outliers
    ]
    findings += [Finding("regression", r.host, r.metric, _regression_message(r)) for r in flagged]
    return Judgement(findings=findings, regressions=flagged, tests=len(tested), outliers=outliers)


def _group_stats(report: Mapping[str, Any]) -> dict[tuple[str, str], tuple[float, float]]:
    found = {}
    for group in report.get("groups") or []:
        for metric, values in (group.get("metrics") or {}).items():
            if isinstance(values, dict) and "median" in values and "mad" in values:
                found[(str(group.get("hw_model")), metric)] = (values["median"], values["mad"])
    return found


def _host_metric(report: Mapping[str, Any], host: str, metric: str) -> float | None:
    for entry in report.get("hosts") or []:
        if entry.get("name") == host and entry.get("status") in JUDGED_STATUSES:
            value = (entry.get("metrics") or {}).get(metric)
            return float(value) if isinstance(value, int | float) else None
    return None


def confirm_findings(
    judgement: Judgement,
    report: Mapping[str, Any],
    remeasure: Mapping[str, Any] | None,
    baseline: Baseline,
    spec: CheckSpec,
    threshold: float,
) -> Judgement:
    """Each outlier and regression reproduced by the re-measure (``remeasure`` is its
    report; None when confirmation is off: the findings stand, confirmed None)."""
    if remeasure is None:
        return judgement
    run_id = str(remeasure.get("run_id"))
    samples = host_samples(remeasure)
    regressions = []
    for r in judgement.regressions:
        result = confirm(
            r,
            samples.get(r.host, {}).get(r.metric, []),
            baseline.samples.get(r.host, {}).get(r.metric, []),
            alpha=spec.alpha,
            regression_pct=spec.regression_pct,
            run_id=run_id,
        )
        regressions.append(replace(r, confirmed=bool(result["confirmed"]), confirm=result))
    confirmed = {(r.host, r.metric): bool(r.confirmed) for r in regressions}
    stats = _group_stats(report)
    groups = {str(h["name"]): str(h.get("group") or h.get("hw_model")) for h in report["hosts"]}
    findings = []
    for f in judgement.findings:
        if f.kind == "regression":
            key = (f.host, f.metric or "")
            findings.append(replace(f, confirmed=confirmed.get(key, False)))
        elif f.kind == "outlier" and f.metric is not None:
            value = _host_metric(remeasure, f.host, f.metric)
            median_mad = stats.get((groups.get(f.host, ""), f.metric))
            still = False
            if value is not None and median_mad is not None:
                median, mad = median_mad
                z = robust_z(value, median, mad, spread_floor(median, rule_for(f.metric).floor))
                still = abs(z) >= threshold and is_bad_side(f.metric, z)
            findings.append(replace(f, confirmed=still))
        else:
            findings.append(f)
    return replace(judgement, findings=findings, regressions=regressions)


def describe(
    judgement: Judgement,
    report: Mapping[str, Any],
    facts: Mapping[str, Mapping[str, Any] | None],
) -> Judgement:
    """Each regression with what differs on its host from the peers of its group."""
    prints = {
        str(h["name"]): host_fingerprint(facts.get(str(h["name"])), h.get("metrics") or {})
        for h in report.get("hosts") or []
        if h.get("status") in JUDGED_STATUSES
    }
    groups = {str(h["name"]): str(h.get("group") or h.get("hw_model")) for h in report["hosts"]}
    described = []
    for r in judgement.regressions:
        peers = [
            prints[name]
            for name, group in groups.items()
            if group == groups.get(r.host) and name != r.host and name in prints
        ]
        mine = prints.get(r.host, {})
        described.append(replace(r, fingerprint=fingerprint_diff(mine, peers)))
    return replace(judgement, regressions=described)


def verdict(judgement: Judgement) -> str:
    counted = [f for f in judgement.findings if f.confirmed is not False]
    if any(f.kind in ("outlier", "regression") for f in counted):
        return FINDINGS
    if any(f.kind in ("failed", "missing") for f in counted):
        return INCOMPLETE
    return PASS


def check_document(
    judgement: Judgement,
    report: Mapping[str, Any],
    baseline: Baseline,
    spec: CheckSpec,
    *,
    confirm_run: str | None,
    stability: tuple[int, Mapping[tuple[str, str], int]],
    history: Mapping[str, Any],
) -> dict[str, Any]:
    """check.json: the check{}, regressions[] and history{} sections of report.json.
    ``stability``: how many checks the look-back window holds, this one included, and per
    (host, metric or kind) in how many of the others something was flagged."""
    window, counts = stability
    result = verdict(judgement)
    regressions = []
    for r in judgement.regressions:
        flagged = counts.get((r.host, r.metric), 0) + 1
        checks = max(window, flagged)
        regressions.append(replace(r, stability={"flagged": flagged, "checks": checks}))
    confirmed = [f for f in judgement.findings if f.confirmed is not False]
    unconfirmed = [f for f in judgement.findings if f.confirmed is False]
    per_host = {f.host: 0 for f in confirmed}
    for f in confirmed:
        per_host[f.host] += 1
    hosts = [
        {
            "name": h["name"],
            "hw_model": h.get("hw_model"),
            "group": h.get("group") or h.get("hw_model"),
            "status": h.get("status"),
            "findings": per_host.get(str(h["name"]), 0),
        }
        for h in report.get("hosts") or []
    ]
    return {
        "check": {
            "verdict": result,
            "exit_code": EXIT_CODES[result],
            "baseline": baseline.to_dict(),
            "alpha": spec.alpha,
            "regression_pct": spec.regression_pct,
            "tests": judgement.tests,
            "confirm": {
                "enabled": spec.confirm.enabled,
                "run_id": confirm_run,
                "hosts": judgement.flagged_hosts if confirm_run else [],
            },
            "findings": [f.to_dict() for f in confirmed],
            "unconfirmed": [f.to_dict() for f in unconfirmed],
            "hosts": hosts,
        },
        "regressions": [r.to_dict() for r in regressions],
        "history": dict(history),
    }
