"""The nightly check's flow (docs/check.md): run the campaign, pick the baseline, judge,
re-measure the flagged hosts alone, write check.json and rebuild the report, pin the
first baseline, write the exports. The judging itself is pure (orchestrator.check.judge)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.analysis.directions import declared_directions
from orchestrator.campaign.model import Campaign
from orchestrator.check.judge import (
    CHECK_FILE,
    PASS,
    Baseline,
    check_document,
    confirm_findings,
    describe,
    host_samples,
    judge_run,
    judged_metrics,
)
from orchestrator.check.store import HistoryStore, StoreError
from orchestrator.report.junit import write_junit
from orchestrator.report.markdown import check_markdown
from orchestrator.report.prometheus import write_prometheus
from orchestrator.stages.flow import RunOutcome, build_outputs, record_history
from orchestrator.stages.rundir import RunDir, read_json, write_json, write_text

# (campaign, limit: an Ansible pattern or None, kind: check | confirm) -> the finished run
Execute = Callable[[Campaign, str | None, str], RunOutcome]


class BaselineError(ValueError):
    """--baseline names something that is not a usable run of this campaign."""


@dataclass(frozen=True)
class Exports:
    junit: Path | None = None
    prometheus: Path | None = None
    markdown: Path | None = None


@dataclass
class CheckOutcome:
    run: RunOutcome
    report: dict[str, Any]
    exit_code: int
    notes: list[str] = field(default_factory=list)


def _recorded_samples(store: HistoryStore, run_id: str) -> Baseline:
    """The baseline run's repetitions, but none of a host whose window was incomplete."""
    statuses = store.host_statuses(run_id)
    incomplete = store.incomplete_hosts(run_id)
    samples: dict[str, dict[str, list[float]]] = {}
    for host in statuses:
        if host in incomplete:
            continue
        for metric in store.host_metrics(run_id, host):
            values = store.samples(run_id, host, metric)
            if values:
                samples.setdefault(host, {})[metric] = values
    return Baseline(run_id, "none", None, samples, statuses, incomplete)


def _from_dir(
    store: HistoryStore, campaign: str, run_dir: Path, label: str = "--baseline "
) -> tuple[str, str]:
    report_file = run_dir / "report.json"
    if not report_file.is_file():
        raise BaselineError(f"{label}{run_dir}: no report.json there (not a run directory)")
    try:
        report = read_json(report_file)
        meta = read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
    except (OSError, ValueError) as err:
        raise BaselineError(f"{label}{run_dir}: cannot read its report: {err}") from None
    if not isinstance(report, dict) or report.get("campaign") != campaign:
        found = report.get("campaign") if isinstance(report, dict) else None
        raise BaselineError(f"{label}{run_dir}: a run of campaign {found!r}, not of {campaign!r}")
    kind = meta.get("kind") if meta.get("kind") in ("run", "check") else "run"
    store.record_run(report, run_dir, kind=str(kind))
    return str(report["run_id"]), str(run_dir)


def pin_baseline(store: HistoryStore, run_dir: Path) -> tuple[str, str]:
    """`fleetprof baseline set RUN_DIR`: record the run (if it is not yet) and pin it."""
    try:
        campaign = read_json(run_dir / "report.json").get("campaign")
    except (OSError, ValueError, AttributeError):
        raise BaselineError(f"{run_dir}: not a run directory with a readable report.json") from None
    if not isinstance(campaign, str):
        raise BaselineError(f"{run_dir}/report.json: no campaign name in it")
    run_id, _ = _from_dir(store, campaign, run_dir, label="")
    store.set_baseline(campaign, run_id)
    return campaign, run_id


def choose_baseline(
    store: HistoryStore, campaign: str, requested: str | None, current: str
) -> Baseline:
    """The pinned baseline (else the last run) by default; ``last``; or a run directory."""
    path: str | None
    if requested not in (None, "last"):
        run_id, path = _from_dir(store, campaign, Path(str(requested)))
        source = "dir"
    else:
        record = store.baseline(campaign) if requested is None else None
        source = "pinned"
        if record is None or record.run_id == current:
            record = store.last_run(campaign, before_run_id=current)
            source = "last"
        if record is None:
            return Baseline(None, "none")
        run_id, path = record.run_id, str(record.path) if record.path else None
    found = _recorded_samples(store, run_id)
    return Baseline(run_id, source, path, found.samples, found.statuses, found.incomplete)


def _facts(run: RunDir, report: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    found: dict[str, dict[str, Any] | None] = {}
    for host in report.get("hosts") or []:
        facts = run.read_facts(str(host["name"]))
        found[str(host["name"])] = facts.to_dict() if facts else None
    return found


def unmeasured(report: dict[str, Any], hosts: list[str]) -> list[str]:
    """The hosts a run brought no repetitions back from (failed, late, unreachable)."""
    measured = host_samples(report)
    return [host for host in hosts if not measured.get(host)]


def remeasure(
    campaign: Campaign, hosts: list[str], execute: Execute, note: Callable[[str], None]
) -> RunOutcome:
    """The flagged hosts measured again, alone, in the confirm window. When that run
    brings nothing back from some of them (on a busy controller their session started
    after its window had closed), it runs once more with twice the lead: a finding is
    then judged on a re-measure, not cleared by one that never measured."""
    spec = campaign.check.confirm
    short = campaign.model_copy(update={"duration_s": spec.duration_s or campaign.duration_s})
    again = execute(short, ",".join(hosts), "confirm")
    missing = [] if again.interrupted else unmeasured(again.report, hosts)
    if not missing:
        return again
    lead = short.start.lead_s * 2
    note(
        f"the re-measure brought nothing back from {', '.join(missing)}: "
        f"once more, with a {lead:g}s lead"
    )
    longer = short.model_copy(update={"start": short.start.model_copy(update={"lead_s": lead})})
    retry = execute(longer, ",".join(hosts), "confirm")
    if retry.interrupted or len(unmeasured(retry.report, hosts)) < len(missing):
        return retry
    return again


def run_check(
    campaign: Campaign,
    out_root: Path,
    execute: Execute,
    *,
    baseline: str | None,
    exports: Exports,
    note: Callable[[str], None],
) -> CheckOutcome:
    """Raises BaselineError (bad --baseline) and StoreError (unusable history store)."""
    if baseline not in (None, "last") and not (Path(baseline) / "report.json").is_file():
        raise BaselineError(f"--baseline {baseline}: no report.json there (not a run directory)")
    outcome = execute(campaign, None, "check")
    if outcome.interrupted:
        return CheckOutcome(outcome, outcome.report, 130)
    spec = campaign.check
    with HistoryStore.open(out_root) as store, declared_directions(campaign.workload_directions):
        chosen = choose_baseline(store, campaign.name, baseline, outcome.run.run_id)
        if chosen.run_id is None:
            note("no baseline yet: nothing to compare against; this run becomes the baseline")
        judgement = judge_run(outcome.report, chosen, spec)
        confirm_run = None
        if spec.confirm.enabled and judgement.flagged_hosts:
            flagged = judgement.flagged_hosts
            note(f"re-measuring the flagged host(s) alone to confirm: {', '.join(flagged)}")
            again = remeasure(campaign, flagged, execute, note)
            if again.interrupted:
                return CheckOutcome(outcome, outcome.report, 130)
            confirm_run = again.run.run_id
            judgement = confirm_findings(
                judgement, outcome.report, again.report, chosen, spec, campaign.compare.threshold
            )
        judgement = describe(judgement, outcome.report, _facts(outcome.run, outcome.report))
        document = check_document(
            judgement,
            outcome.report,
            chosen,
            spec,
            confirm_run=confirm_run,
            stability=store.flag_counts(
                campaign.name, checks=spec.history, before_run_id=outcome.run.run_id
            ),
            history=store.trend(
                campaign.name, judged_metrics(outcome.report, spec), limit_runs=spec.history
            ),
        )
    write_json(outcome.run.path / CHECK_FILE, document)
    report = build_outputs(outcome.run, campaign)
    problem = record_history(outcome.run, report)
    notes = [problem] if problem else []
    verdict = document["check"]["verdict"]
    if chosen.run_id is None:
        if verdict == PASS:
            with HistoryStore.open(out_root) as store:
                store.set_baseline(campaign.name, outcome.run.run_id)
            notes.append(f"baseline set: {outcome.run.run_id}")
        else:
            notes.append("no baseline set: this first check did not pass")
    _write_exports(report, exports)
    return CheckOutcome(outcome, report, int(document["check"]["exit_code"]), notes)


def _write_exports(report: dict[str, Any], exports: Exports) -> None:
    if exports.junit is not None:
        write_junit(report, exports.junit)
    if exports.prometheus is not None:
        write_prometheus(report, exports.prometheus)
    if exports.markdown is not None:
        write_text(exports.markdown, check_markdown(report))


__all__ = ["BaselineError", "CheckOutcome", "Exports", "StoreError", "run_check"]
