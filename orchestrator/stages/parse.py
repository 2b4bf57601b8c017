"""Stage 7: one host's raw files -> its normalized entry for the report.

Reads what the controller recorded (status.json, facts.json, plan.json) and what the
device brought back (manifest.json and the profiler outputs), all as untrusted data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator import profilers
from orchestrator.analysis.fleet import HostView
from orchestrator.analysis.stacks import StackProfile, gc_paused
from orchestrator.analysis.workload import TABLE as WORKLOAD_TABLE
from orchestrator.campaign.model import Campaign
from orchestrator.models import HostProgress, HostStatus
from orchestrator.stages.probe import load_probe, probe_result
from orchestrator.stages.rundir import RunDir
from orchestrator.stages.sweep import TABLE as SWEEP_TABLE
from orchestrator.stages.sweep import read_sweep
from orchestrator.stages.window import incomplete_reason
from orchestrator.stages.workload import read_workload
from orchestrator.values import mapping
from orchestrator.values import number as _number

LATE_WARNING_S = 0.05


def _controller_status(status: dict[str, Any]) -> tuple[str | None, str | None]:
    value = status.get("status")
    return (str(value) if value else None), (
        str(status["reason"]) if status.get("reason") else None
    )


@dataclass(frozen=True)
class ParsedHost:
    """A host's report entry, and its py-spy profile for the fleet analysis (group flame
    graphs, function shares, diffs), which needs the stacks, not just the top functions."""

    view: HostView
    profile: StackProfile | None


def parse_host(
    run: RunDir, host: str, campaign: Campaign, inventory_model: str | None = None
) -> ParsedHost:
    # One pause for the whole host, so the call trees its summaries need die unscanned.
    with gc_paused():
        return _parse_host(run, host, campaign, inventory_model)


def _parse_host(
    run: RunDir, host: str, campaign: Campaign, inventory_model: str | None
) -> ParsedHost:
    facts = run.read_facts(host)
    plan = run.read_plan(host)
    ctl_status, ctl_reason = _controller_status(run.read_status(host))
    view = HostView(
        name=host,
        hw_model=facts.hw_model if facts else inventory_model or "unknown",
        arch=facts.arch if facts else "unknown",
        status=ctl_status or HostStatus.FAILED,
        reason=ctl_reason,
    )
    if plan is not None:
        view.profilers = {p.name: {"status": p.status, "reason": p.reason} for p in plan.profilers}
    manifest, unreadable = run.load_manifest(host)
    if manifest is None:
        if ctl_status in (None, HostProgress.COLLECTED):
            view.status = HostStatus.FAILED
            view.reason = unreadable or ctl_reason or "no manifest came back"
        return ParsedHost(view, None)

    session_dir = run.session_dir(host)
    view.status = _manifest_status(manifest.get("status"))
    view.reason = str(manifest["reason"])[:1000] if manifest.get("reason") else None
    if ctl_status == HostProgress.COLLECTED and ctl_reason:
        # What the safe unpacker skipped (links, unsafe names): said, not silently lost.
        view.data_quality.append(f"session archive: {ctl_reason}")
    late = _number(manifest.get("late_by_s"))
    if late is not None:
        view.metrics["session.late_by_ms"] = round(late * 1000.0, 1)
        if late > LATE_WARNING_S:
            view.data_quality.append(
                f"the device started {late * 1000:.0f} ms after the common start: "
                "a longer start.lead keeps the window common"
            )
    if plan is not None:
        started = _number(manifest.get("started_at_controller"))
        t0 = plan.t0_device - plan.clock_offset_s
        if started is not None:
            view.start_offset_ms = round((started - t0) * 1000.0, 1)
    entries = manifest.get("profilers")
    entries = entries if isinstance(entries, dict) else {}
    stacks: StackProfile | None = None
    for name in campaign.profilers.enabled:
        entry = entries.get(name)
        profiler = profilers.get(name)
        if profiler is None or not isinstance(entry, dict):
            continue
        view.profilers[name] = {
            "status": str(entry.get("status") or "failed"),
            "reason": str(entry["reason"])[:1000] if entry.get("reason") else None,
        }
        result = profiler.parse(session_dir, entry, campaign)
        view.metrics.update(result.metrics)
        view.metrics.update(profiler_cost(name, entry))
        view.top_functions = view.top_functions or result.top_functions
        view.flamegraph = view.flamegraph or result.flamegraph
        view.hot_lines = view.hot_lines or result.hot_lines
        if view.line_counts is None:
            view.line_counts = result.line_counts
        view.series.update(result.series)
        for table, rows in result.tables.items():  # memory and system: one process split
            view.tables.setdefault(table, rows)
        view.data_quality.extend(result.data_quality)
        stacks = stacks or result.stacks
    workload = read_workload(session_dir, manifest)
    view.metrics.update(workload.metrics)
    view.series.update(workload.series)
    view.samples.update(workload.samples)
    if workload.rows:
        view.tables[WORKLOAD_TABLE] = workload.rows
    view.data_quality.extend(workload.data_quality)
    launch = campaign.target.launch
    if launch is not None and launch.sweep is not None:
        swept = read_sweep(session_dir, manifest, launch.sweep.variable)
        view.metrics.update(swept.metrics)
        view.samples.update(swept.samples)
        view.tables[SWEEP_TABLE] = swept.rows
        view.data_quality.extend(swept.data_quality)
    probe_data = None
    if campaign.target.probe is not None:
        probe_data, problem = load_probe(session_dir)
        probed = probe_result(probe_data, problem, list(campaign.target.probe))
        view.metrics.update(probed.metrics)
        view.samples.update(probed.samples)
        view.data_quality.extend(probed.data_quality)
    _launched_end(manifest, view)
    _judge_window(view, manifest, probe_data, campaign.limits.max_window_loss_pct)
    return ParsedHost(view, stacks)


def _judge_window(
    view: HostView,
    manifest: dict[str, Any],
    probe: dict[str, Any] | None,
    max_loss_pct: float,
) -> None:
    """A host that measured less than its window (late, cut short, short probe
    repetitions) is ``incomplete``: partial, with the reason, and not judged by check."""
    if view.status not in (HostStatus.OK, HostStatus.PARTIAL):
        return
    view.incomplete = incomplete_reason(manifest, probe, max_loss_pct)
    if view.incomplete is None:
        return
    view.status = HostStatus.PARTIAL
    note = f"incomplete: {view.incomplete}"
    view.reason = f"{view.reason}; {note}" if view.reason else note


def _launched_end(manifest: dict[str, Any], view: HostView) -> None:
    """A launched program that ended by itself: how long it ran (``target.runtime_s``, from
    its start at T0), and a note when the runner could not know its exit code."""
    target = mapping(manifest.get("target"))
    if target.get("mode") != "launch" or target.get("ended_by_itself") is not True:
        return
    ended = _number(target.get("exited_at_device"))
    started = _number(target.get("started_at_device"))
    if started is None:  # a profiler started it, at T0
        started = _number(manifest.get("t0_device"))
    if ended is not None and started is not None and ended >= started:
        view.metrics["target.runtime_s"] = round(ended - started, 3)
    if target.get("exit_code_known") is False:
        view.data_quality.append(
            "the launched program ended by itself; its exit code is unknown (a profiler "
            "started it, so the runner was not its parent)"
        )


def profiler_cost(name: str, entry: dict[str, Any]) -> dict[str, float]:
    """What a profiler cost the device, from the runner's manifest: its own CPU time
    (``cpu_s``: utime + stime of its process, or of the runner's sampler thread) as a share
    of one core over the time it ran, ``overhead.<profiler>.cpu_pct``."""
    cpu_s = _number(entry.get("cpu_s"))
    started = _number(entry.get("started_at_device"))
    stopped = _number(entry.get("stopped_at_device"))
    if cpu_s is None or started is None or stopped is None or stopped - started <= 0.5:
        return {}
    key = name.replace("-", "_")
    return {f"overhead.{key}.cpu_pct": round(100.0 * cpu_s / (stopped - started), 2)}


def _manifest_status(value: Any) -> str:
    allowed = {
        s.value for s in (HostStatus.OK, HostStatus.PARTIAL, HostStatus.FAILED, HostStatus.BUSY)
    }
    return str(value) if value in allowed else HostStatus.FAILED.value
