"""`fleetprof check`: a finished run judged against its peers, its own baseline, and for
completeness (docs/check.md). Pure functions over report.json dicts and what the history
store returned; check/run.py runs the campaigns and writes the files.

The judgement's result is ``check.json`` in the run directory (``check{}``,
``regressions[]``, ``history{}``), which :func:`orchestrator.stages.flow.build_outputs` merges
into report.json, so `fleetprof report RUN_DIR` rebuilds a check's report too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.analysis.directions import SKIP, rule_for
from orchestrator.analysis.outliers import noise_floor, score
from orchestrator.campaign.model import CheckSpec
from orchestrator.check.regressions import (
    Regression,
    confirm,
    fingerprint_diff,
    host_fingerprint,
    judge,
    run_tests,
)

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
    # Hosts whose window was incomplete in the baseline run: their samples are not used.
    incomplete: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "source": self.source,
            "path": self.path,
            "incomplete_hosts": sorted(self.incomplete),
        }


@dataclass(frozen=True)
class Finding:
    kind: str  # outlier | regression | failed | missing | incomplete
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


def incomplete_reason(host: Mapping[str, Any]) -> str | None:
    """Why a host's measurement window was incomplete (report.json ``hosts[].incomplete``:
    a reason string, null when complete; a report without the key was complete)."""
    value = host.get("incomplete")
    if value is None or value is False:
        return None
    text = str(value).strip() if not isinstance(value, bool) else ""
    return text or "incomplete measurement window"


def can_judge(host: Mapping[str, Any]) -> bool:
    """A host whose numbers can be judged: it brought data back from a complete window."""
    return host.get("status") in JUDGED_STATUSES and incomplete_reason(host) is None


def host_samples(report: Mapping[str, Any]) -> dict[str, dict[str, list[float]]]:
    """host -> metric -> repetitions, for the hosts that brought data back from a
    complete window."""
    found: dict[str, dict[str, list[float]]] = {}
    for host in report.get("hosts") or []:
        samples = host.get("samples")
        if can_judge(host) and isinstance(samples, dict):
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
        reason = incomplete_reason(host)
        if reason is not None and status in (*JUDGED_STATUSES, "skipped"):
            message = f"incomplete window ({reason}): not judged, not used as a baseline"
            findings.append(Finding("incomplete", name, None, message))
        elif status not in NOT_FAILED:
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
    what = str(outlier.get("metric"))
    if outlier.get("function") is not None:
        what = f"{what} of {outlier.get('function')} ({outlier.get('file') or '?'})"
    text = (
        f"{what} {_fmt(outlier.get('value'))} against its group median "
        f"{_fmt(outlier.get('group_median'))} (robust z {outlier.get('robust_z')}"
    )
    if outlier.get("rule") == "relative_loss":
        peers = outlier.get("peers_median")
        share = _share(outlier.get("value"), peers)
        text += f"; {share} of its peers' median {_fmt(peers)}: relative loss"
    return text + ")"


def _share(value: Any, whole: Any) -> str:
    if isinstance(value, int | float) and isinstance(whole, int | float) and whole:
        return f"{100.0 * value / whole:.0f}%"
    return "n/a"


def judge_run(report: Mapping[str, Any], baseline: Baseline, spec: CheckSpec) -> Judgement:
    """Outliers on the judged metrics, regressions against the baseline, failed and
    missing hosts: before any confirmation."""
    metrics = judged_metrics(report, spec)
    groups = {str(h["name"]): str(h.get("group") or h.get("hw_model")) for h in report["hosts"]}
    usable = {h: s for h, s in baseline.samples.items() if h not in baseline.incomplete}
    tested = run_tests(host_samples(report), usable, groups, metrics)
    judged = judge(
        tested, alpha=spec.alpha, regression_pct=spec.regression_pct, baseline_run=baseline.run_id
    )
    flagged = [r for r in judged if r.flagged]
    complete = {str(h.get("name")) for h in report.get("hosts") or [] if can_judge(h)}
    outliers = [
        o
        for o in report.get("outliers") or []
        if o.get("kind", "metric") == "metric"
        and o.get("metric") in metrics
        and str(o.get("host")) in complete
    ]
    findings = _status_findings(report, baseline)
    findings += [
        Finding("outlier", str(o["host"]), o["metric"], _outlier_message(o)) for o in outliers
    ]
    findings += [Finding("regression", r.host, r.metric, _regression_message(r)) for r in flagged]
    return Judgement(findings=findings, regressions=flagged, tests=len(tested), outliers=outliers)


def _group_values(report: Mapping[str, Any], metric: str) -> dict[str, dict[str, float]]:
    """group -> host -> the metric's value, over the hosts that can be judged."""
    found: dict[str, dict[str, float]] = {}
    for host in report.get("hosts") or []:
        value = (host.get("metrics") or {}).get(metric)
        if can_judge(host) and isinstance(value, int | float) and not isinstance(value, bool):
            group = str(host.get("group") or host.get("hw_model"))
            found.setdefault(group, {})[str(host["name"])] = float(value)
    return found


def _host_metric(report: Mapping[str, Any], host: str, metric: str) -> float | None:
    for entry in report.get("hosts") or []:
        if entry.get("name") == host and can_judge(entry):
            value = (entry.get("metrics") or {}).get(metric)
            return float(value) if isinstance(value, int | float) else None
    return None


def _still_outlier(
    report: Mapping[str, Any], remeasure: Mapping[str, Any], host: str, metric: str, t: float
) -> bool | None:
    """The re-measured value against the first run's group (its other hosts as peers),
    by the same rules that flagged it; None when the re-measure brought no value back
    (the finding then stands unconfirmed instead of being cleared)."""
    value = _host_metric(remeasure, host, metric)
    groups = {str(h["name"]): str(h.get("group") or h.get("hw_model")) for h in report["hosts"]}
    members = _group_values(report, metric).get(groups.get(host, ""), {})
    if value is None or host not in members:
        return None
    peers = [v for name, v in members.items() if name != host]
    samples = host_samples(report)
    noise = noise_floor(samples.get(name, {}).get(metric, ()) for name in members)
    return score(metric, value, list(members.values()), peers, t, noise).rule is not None


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
        decided = result["confirmed"]
        regressions.append(
            replace(r, confirmed=None if decided is None else bool(decided), confirm=result)
        )
    confirmed = {(r.host, r.metric): r.confirmed for r in regressions}
    findings = []
    for f in judgement.findings:
        if f.kind == "regression":
            key = (f.host, f.metric or "")
            findings.append(replace(f, confirmed=confirmed.get(key)))
        elif f.kind == "outlier" and f.metric is not None:
            still = _still_outlier(report, remeasure, f.host, f.metric, threshold)
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
        if can_judge(h)
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
    if any(f.kind in ("failed", "missing", "incomplete") for f in counted):
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
            "incomplete": incomplete_reason(h),
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
