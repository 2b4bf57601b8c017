"""The flow of one campaign (DESIGN.md): load -> preflight -> plan -> provision -> session
-> collect -> parse -> analyze -> render, each stage leaving its files in the run directory.

Errors are values on the way: a host that fails a stage gets its status and reason in
``hosts/<host>/status.json`` and drops out of the later stages; the others go on.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from orchestrator import profilers
from orchestrator.analysis.fleet import HostView, build_report
from orchestrator.campaign.model import Campaign
from orchestrator.check.judge import CHECK_FILE
from orchestrator.check.store import RUN_KINDS, HistoryStore, StoreError
from orchestrator.models import ClockOffset, HostFacts, HostProgress, HostStatus, SessionPlan
from orchestrator.profilers.base import ToolChoice
from orchestrator.report.exports import write_exports
from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown
from orchestrator.stages.ansible import (
    HostOutcome,
    ProgressFn,
    StageResult,
    close_masters,
    run_stage,
)
from orchestrator.stages.inventory import FACT_KEYS, Inventory, group_values, host_var_values
from orchestrator.stages.netpeer import NetPeer, device_peer_targets, start_peer
from orchestrator.stages.parse import ParsedHost, parse_host
from orchestrator.stages.plan import effective_lead, make_plan, provision_needed, reschedule
from orchestrator.stages.rundir import RunDir, read_json, write_json, write_text
from orchestrator.values import visible


class Ui(Protocol):
    """What the flow tells the person watching; the terminal edge implements it."""

    def stage(self, name: str, hosts: int) -> None: ...
    def host(self, stage: str, host: str, event: str) -> None: ...
    def window(self, t0: float, deadline: float) -> None: ...
    def note(self, text: str) -> None: ...


@dataclass(frozen=True)
class RunOutcome:
    run: RunDir
    report: dict[str, Any]
    interrupted: bool

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        summary = self.report["summary"]
        return 0 if summary["ok"] == summary["hosts"] and summary["hosts"] > 0 else 3


def clock_offset(device_time: float, started: float | None, finished: float) -> ClockOffset:
    """NTP-style: the device read its clock somewhere between the controller's two stamps."""
    if started is None or started > finished:
        return ClockOffset(offset_s=0.0, uncertainty_s=None)
    midpoint = (started + finished) / 2.0
    return ClockOffset(offset_s=device_time - midpoint, uncertainty_s=(finished - started) / 2.0)


def facts_from(
    host: str, outcome: HostOutcome, launched_at: float | None = None
) -> HostFacts | None:
    capture = outcome.captures.get("fleetprof_facts")
    if capture is None:
        return None
    raw = capture.res.get("facts")
    device_time = capture.res.get("device_time")
    if not isinstance(raw, dict) or not isinstance(device_time, int | float):
        return None
    clock = clock_offset(float(device_time), capture.started, capture.finished)
    tools = raw.get("tools")
    tools = dict(tools) if isinstance(tools, dict) else {}
    # Tools the module finds by itself (iotop, nvidia-smi, nsys, ...) come apart from the
    # paths that were asked for.
    found = raw.get("found_tools")
    for name, path in found.items() if isinstance(found, dict) else ():
        if isinstance(name, str) and isinstance(path, str) and path and name not in tools:
            tools[name] = path
    answered = capture.first_finished if capture.first_finished is not None else capture.finished
    ready = answered - launched_at if launched_at is not None else None
    return HostFacts.from_dict(
        {
            **raw,
            "fingerprint": _fingerprint(raw.get("fingerprint")),
            "tools": tools,
            "host": host,
            "clock": clock.__dict__,
            "ready_s": round(ready, 3) if ready is not None and ready >= 0 else None,
        }
    )


def _fingerprint(raw: Any) -> dict[str, str | float | None]:
    """The device's fingerprint facts, kept only as short strings and finite numbers."""
    kept: dict[str, str | float | None] = {}
    for key, value in raw.items() if isinstance(raw, dict) else ():
        if not isinstance(key, str) or len(key) > 64:
            continue
        if isinstance(value, str):
            kept[key] = value[:200]
        elif isinstance(value, int | float) and not isinstance(value, bool):
            kept[key] = float(value) if math.isfinite(value) else None
        else:
            kept[key] = None
    return kept


class CampaignRun:
    def __init__(
        self,
        campaign: Campaign,
        inventory: Inventory,
        out_root: Path,
        *,
        forks: int | None,
        ui: Ui,
        cancel: threading.Event,
        tool_log: Callable[[str], None] | None = None,
        kind: str = "run",
        run: RunDir | None = None,
    ) -> None:
        self.kind = kind  # run | check | confirm (a check's re-measure): for the history
        self.campaign = campaign
        self.inventory = inventory
        self.forks = forks
        self.ui = ui
        self.cancel = cancel
        self.tool_log = tool_log
        self.run = run or RunDir.create(out_root, campaign.name)
        self.active: list[str] = list(inventory.hosts)
        self.facts: dict[str, HostFacts] = {}
        self.plans: dict[str, SessionPlan] = {}

    # -- helpers -------------------------------------------------------------------
    def _stage(
        self,
        name: str,
        extravars: dict[str, Any] | None = None,
        capture: tuple[str, ...] = (),
        *,
        hosts: list[str] | None = None,
        cancel: threading.Event | None = None,
    ) -> StageResult:
        """Run one stage's play on ``hosts`` (default: the active hosts, which the stage
        then narrows to those it left ok) and write every failed host's status."""
        targets = list(self.active) if hosts is None else hosts
        stop = self.cancel if cancel is None else cancel
        self.ui.stage(name, len(targets))
        progress: ProgressFn = self.ui.host
        result = run_stage(
            name,
            run_dir=self.run.path,
            inventory=self.inventory.source,
            hosts=targets,
            extravars=extravars,
            forks=self.forks,
            capture=capture,
            progress=progress,
            cancel=stop,
        )
        kept = []
        for host in targets:
            outcome = result.outcome(host)
            if outcome.unreachable:
                self.run.write_status(host, name, HostStatus.UNREACHABLE, outcome.message)
            elif not outcome.ok:
                self.run.write_status(host, name, HostStatus.FAILED, outcome.message)
            elif result.cancelled:
                self.run.write_status(host, name, HostStatus.FAILED, f"{name}: interrupted")
            else:
                kept.append(host)
        if hosts is None:
            self.active = kept
        result.kept = kept
        return result

    def _drop(self, host: str, stage: str, status: HostStatus, reason: str) -> None:
        self.run.write_status(host, stage, status, reason)
        self.active.remove(host)

    # -- stages --------------------------------------------------------------------
    def preflight(self) -> dict[str, HostFacts]:
        # The tools provision would push are hashed where they would land, so a device
        # that has them already is not provisioned again.
        hashed = profilers.tool_homes(self._tools_needed())
        result = self._stage(
            "preflight", {"fleetprof_hash_files": hashed}, capture=("fleetprof_facts",)
        )
        facts: dict[str, HostFacts] = {}
        for host in list(self.active):
            found = facts_from(host, result.outcome(host), result.launched_at)
            if found is None:
                self._drop(host, "preflight", HostStatus.FAILED, "preflight returned no facts")
                continue
            self.run.write_facts(found)
            self.run.write_status(host, "preflight", HostProgress.PREFLIGHTED, None)
            facts[host] = found
        return facts

    def _tools_needed(self) -> set[str]:
        return {
            p.TOOL
            for name in self.campaign.profilers.enabled
            if (p := profilers.REGISTRY[name]).TOOL
        }

    def tools(self, facts: dict[str, HostFacts]) -> dict[str, dict[str, ToolChoice]]:
        """The tool cache's answer per architecture, for the tools the campaign needs."""
        needed = self._tools_needed()
        choices: dict[str, dict[str, ToolChoice]] = {}
        for arch in sorted({f.arch for f in facts.values()}):
            choices[arch] = profilers.choose_tools(needed, arch, self.tool_log)
        return choices

    def plan(self, facts: dict[str, HostFacts], tools: dict[str, dict[str, ToolChoice]]) -> None:
        t0 = time.time() + self.campaign.start.lead_s
        for host in list(self.active):
            plan = make_plan(
                self.campaign, facts[host], self.run.run_id, tools[facts[host].arch], t0
            )
            self.run.write_plan(plan)
            self.plans[host] = plan
            if not plan.runnable:
                self._drop(host, "plan", HostStatus.SKIPPED, plan.skip_reason or "nothing to run")
            else:
                self.run.write_status(host, "plan", HostProgress.PLANNED, None)

    def provision(self) -> None:
        """The provision play, on the hosts that lack a tool or a package; the others have
        the exact copies already (preflight hashed them) and skip a play's round trips."""
        needed = [
            host
            for host in self.active
            if host not in self.plans or provision_needed(self.plans[host], self.facts[host])
        ]
        if not needed:
            self.ui.note("provision: every host has its tools already")
            return
        result = self._stage("provision", hosts=needed)
        dropped = set(needed) - set(result.kept)
        self.active = [host for host in self.active if host not in dropped]

    def network_peer(self) -> tuple[NetPeer | None, dict[str, dict[str, Any]]]:
        """The network probe's peer on this controller, listening until the session play
        ends, and each host's target fields for it (probe_peer, and serve_peer for the
        campaign's network_peer host); (None, {}) unless the probe has ``network``."""
        if "network" not in (self.campaign.target.probe or []):
            return None, {}
        addresses = host_var_values(self.inventory.source, self.active, "ansible_host")
        address_of = {host: addresses.get(host, host) for host in self.active}
        device_peer = self.campaign.target.network_peer
        # The controller peers for every host, or only for the device peer itself.
        to_controller = [h for h in self.active if device_peer is None or h == device_peer]
        peer, peers = start_peer(
            {host: self.facts[host].controller_address for host in to_controller},
            list(address_of.values()),
        )
        targets = {host: {"probe_peer": plan} for host, plan in peers.items()}
        if device_peer is not None:
            for host, fields in device_peer_targets(device_peer, address_of).items():
                targets.setdefault(host, {}).update(fields)
        return peer, targets

    def schedule(self, targets: dict[str, dict[str, Any]] | None = None) -> tuple[float, float]:
        """A fresh common start for every remaining host, just before the session."""
        requested = self.campaign.start.lead_s
        lead = effective_lead(requested, [self.facts[h] for h in self.active])
        if lead > requested:
            self.ui.note(
                f"start lead lengthened from {requested:g}s to {lead:.1f}s: the slowest "
                "device needs that long to be ready for the common start"
            )
        t0 = time.time() + lead
        for host in self.active:
            plan = self.run.read_plan(host)
            assert plan is not None
            if targets and host in targets:  # the network probe's peer fields
                plan = replace(plan, target=replace(plan.target, **targets[host]))
            self.run.write_plan(reschedule(plan, t0))
        return t0, t0 + self.campaign.duration_s

    def collect(
        self, hosts: list[str] | None = None, cancel: threading.Event | None = None
    ) -> None:
        result = self._stage("collect", hosts=hosts, cancel=cancel)
        for host in result.kept:
            self.run.unpack_collected(host)

    def stop_sessions(self, hosts: list[str]) -> None:
        """After an interrupt during the session: the cleanup play tells every device's
        runner to stop now (it packs what it measured), then collect fetches that. Not
        cancellable by the first interrupt; a second one exits the controller at once."""
        if not hosts:
            return
        self.ui.note(
            "interrupted: stopping the device sessions and collecting what they measured "
            "(Ctrl-C again to quit at once)"
        )
        calm = threading.Event()
        stopped = self._stage("cleanup", hosts=hosts, cancel=calm)
        self.collect(stopped.kept, cancel=calm)
        self.active = []

    def begin(self) -> None:
        """campaign.yml, run.json and every host's first status: what a run directory
        holds before any stage runs (`fleetprof run`, `fleetprof stages prepare`)."""
        write_text(self.run.path / "campaign.yml", self.campaign.source.read_bytes())
        write_json(
            self.run.path / "run.json",
            {
                "campaign": self.campaign.name,
                "run_id": self.run.run_id,
                "kind": self.kind,
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "duration_s": self.campaign.duration_s,
                "mode": self.campaign.target.mode,
                "inventory": self.inventory.source,
                "hosts": self.inventory.hosts,
                "hw_models": self.inventory.hw_models,
                # compare.group_by's inventory values, so `fleetprof report` regroups
                # from the run directory alone.
                "group_by": self.campaign.compare.group_by,
                "group_values": group_values(self.inventory, self.campaign.compare.group_by),
            },
        )
        for host in self.inventory.hosts:
            self.run.write_status(host, "load", HostProgress.PENDING, None)

    def execute(self) -> RunOutcome:
        self.begin()

        def do_preflight() -> None:
            self.facts.update(self.preflight())

        def do_plan() -> None:
            self.plan(self.facts, self.tools(self.facts))

        def do_provision() -> None:
            self.provision()

        def do_session() -> None:
            peer, targets = self.network_peer()
            try:
                t0, deadline = self.schedule(targets)
                self.ui.window(t0, deadline)
                running = list(self.active)
                # The session play fetches each host's files as soon as its runner is done
                # (the session role's collect tasks): no collect play of its own.
                result = self._stage("session", {"fleetprof_collect_in_session": True})
            finally:
                if peer is not None:
                    peer.close()
                    if peer.turned_away:
                        self.ui.note(f"network probe peer: turned away {dict(peer.turned_away)}")
            if self.cancel.is_set():
                self.stop_sessions(running)
                return
            for host in result.kept:
                self.run.unpack_collected(host)

        steps = [do_preflight, do_plan, do_provision, do_session]
        try:
            for step in steps:
                if self.cancel.is_set() or not self.active:
                    break
                step()
        finally:
            close_masters(self.run.path)
        interrupted = self.cancel.is_set()
        if interrupted:
            for host in self.active:
                self.run.write_status(
                    host, "interrupted", HostStatus.FAILED, "interrupted by the operator"
                )
        report = build_outputs(self.run, self.campaign)
        problem = record_history(self.run, report)
        if problem:
            self.ui.note(problem)
        return RunOutcome(run=self.run, report=report, interrupted=interrupted)


# Where a host's status says its session may have run and not been collected yet.
RESUMABLE_STAGES = ("plan", "session", "cleanup", "collect", "interrupted")


def uncollected(run: RunDir) -> list[str]:
    """Hosts that got a runnable plan, may have run their session, and have no collected
    session yet: what `fleetprof collect` fetches after a controller was lost."""
    found = []
    for host in run.hosts():
        plan = run.read_plan(host)
        status = run.read_status(host)
        if plan is None or not plan.runnable or run.read_manifest(host) is not None:
            continue
        if status.get("stage") in RESUMABLE_STAGES:
            found.append(host)
    return found


def sessions_end(run: RunDir, hosts: list[str]) -> float:
    """When the last of these hosts' sessions is over at the latest (controller clock)."""
    ends = [0.0]
    for host in hosts:
        plan = run.read_plan(host)
        if plan is not None:
            ends.append(plan.deadline_device - plan.clock_offset_s + plan.grace_s)
    return max(ends)


def resume_collect(flow: CampaignRun) -> RunOutcome:
    """Collect what the devices finished for a run whose controller was lost, then build
    every output: the hosts already collected keep what they had."""
    hosts = uncollected(flow.run)
    wait = sessions_end(flow.run, hosts) - time.time()
    if hosts and wait > 0 and not flow.cancel.is_set():
        flow.ui.note(f"the sessions may run {wait:.0f} s more; waiting for their deadline")
        flow.cancel.wait(wait)
    interrupted = flow.cancel.is_set()
    if hosts and not interrupted:
        try:
            flow.collect(hosts)
        finally:
            close_masters(flow.run.path)
    report = build_outputs(flow.run, flow.campaign)
    problem = record_history(flow.run, report)
    if problem:
        flow.ui.note(problem)
    return RunOutcome(run=flow.run, report=report, interrupted=interrupted)


def build_outputs(run: RunDir, campaign: Campaign) -> dict[str, Any]:
    """Stages 7-9 from the run directory alone: report.json first, then what renders it.
    A check's judgement (check.json) joins the report."""
    meta = read_json(run.path / "run.json")
    models = meta.get("hw_models") or {}
    parsed = [
        _parse_guarded(run, host, campaign, models.get(host))
        for host in meta.get("hosts") or run.hosts()
    ]
    group_by = campaign.compare.group_by
    report = build_report(
        meta,
        [p.view for p in parsed],
        {p.view.name: p.profile for p in parsed if p.profile is not None},
        group_by=group_by,
        threshold=campaign.compare.threshold,
        group_values=_recorded_group_values(meta, group_by, [p.view.name for p in parsed]),
        directions=campaign.workload_directions,
        sweep=campaign.sweep_values,
    )
    judgement = run.path / CHECK_FILE
    if judgement.is_file():
        report.update(read_json(judgement))
    # Compact: a fleet's flame graphs nest 40 levels deep, and indented it is 6.6 times
    # the size and 14 times slower to write (docs/performance.md, report scale).
    write_json(run.path / "report.json", report, compact=True)
    # Device text (function and file names, reasons) may carry ESC/BEL: made visible, so
    # `cat report.html` cannot drive a terminal (report.json escapes them as JSON does).
    write_text(run.path / "report.html", visible(render_html(report)))
    write_text(run.path / "summary.md", visible(render_markdown(report)))
    write_exports(run, {p.view.name: p.profile for p in parsed})
    return report


def _parse_guarded(run: RunDir, host: str, campaign: Campaign, model: str | None) -> ParsedHost:
    """One host's entry; a device file no parser foresaw fails that host, with the reason,
    and never the report of the others (every reader of device data is bounded, this is
    the last line behind them)."""
    try:
        return _with_visible_text(parse_host(run, host, campaign, model))
    except Exception as err:  # untrusted device data: that host fails, not the run
        view = HostView(
            name=host,
            hw_model=model or "unknown",
            arch="unknown",
            status=HostStatus.FAILED,
            reason=f"its results could not be read: {type(err).__name__}: {str(err)[:300]}",
        )
        return ParsedHost(view, None)


def _with_visible_text(parsed: ParsedHost) -> ParsedHost:
    """The host's reasons and notes, which carry device text, with control characters made
    visible (the page-level pass in build_outputs covers names inside the renderers)."""
    view = parsed.view
    view.reason = visible(view.reason) if view.reason else view.reason
    view.data_quality = [visible(note) for note in view.data_quality]
    for entry in view.profilers.values():
        if isinstance(entry.get("reason"), str):
            entry["reason"] = visible(entry["reason"])
    return parsed


def record_history(run: RunDir, report: dict[str, Any]) -> str | None:
    """The history store (``OUT/history.sqlite``, two levels above the run) gets the run;
    a store that cannot take it costs the history, not the report: the reason is returned."""
    try:
        meta = read_json(run.path / "run.json")
        kind = meta.get("kind") if meta.get("kind") in RUN_KINDS else "run"
        with HistoryStore.open(run.path.parent.parent) as store:
            store.record_run(report, run.path, kind=str(kind))
    except (StoreError, OSError, ValueError) as err:
        return f"the run was not recorded in the history: {err}"
    return None


def _recorded_group_values(meta: dict[str, Any], group_by: str, hosts: list[str]) -> dict[str, str]:
    """The hosts' values of ``group_by`` as run.json recorded them; when the run's
    campaign.yml was edited to group by another variable since, read from the inventory
    the run used (where it can still be read)."""
    if group_by in FACT_KEYS:
        return {}
    recorded = meta.get("group_values")
    if meta.get("group_by") == group_by and isinstance(recorded, dict):
        return {str(k): str(v) for k, v in recorded.items() if isinstance(v, str)}
    source = meta.get("inventory")
    return host_var_values(source, hosts, group_by) if isinstance(source, str) else {}
