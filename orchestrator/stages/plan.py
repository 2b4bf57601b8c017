"""Campaign x HostFacts -> SessionPlan: pure, so every decision is testable without a fleet.

A plan is made twice: once after preflight (which profilers each host can run, what to
push), and once more just before the session with a fresh common start T0, so the time
spent provisioning never eats into the lead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from fleetprof_device.contract import TRACEMALLOC
from orchestrator import profilers
from orchestrator.campaign.model import Campaign
from orchestrator.models import WORKDIR_ARG, HostFacts, ProfilerPlan, SessionPlan, TargetPlan
from orchestrator.profilers.base import ToolChoice
from orchestrator.stages.probe import seconds_per_kind

# Starting the session takes one play launch plus the async start, which Ansible cannot
# pipeline: a temporary directory, the module and its wrapper put, modes set, the wrapper
# run: about five remote operations where preflight's pipelined module took one round
# trip, on a controller and devices that may be busier than at preflight. A loaded test
# fleet needed 3.7 round trips. So: room for five round trips, or twice as long as the
# preflight play took to reach the device, plus a margin.
LEAD_ROUND_TRIPS = 5.0
LEAD_READY_FACTOR = 2.0
LEAD_MARGIN_S = 1.0


def _target(
    campaign: Campaign,
    facts: HostFacts,
    launcher_planned: bool,
    inside: ProfilerPlan | None = None,
    workdir: str = "",
) -> TargetPlan:
    attach, launch, probe = campaign.target.attach, campaign.target.launch, campaign.target.probe
    if probe is not None:
        return TargetPlan(
            mode="probe",
            probe=list(probe),
            probe_seconds=seconds_per_kind(campaign.duration_s, list(probe)),
            probe_repeats=campaign.target.probe_repeats,
        )
    if attach is not None:
        return TargetPlan(
            mode="attach", process=attach.process, pid=attach.pid, pidfile=attach.pidfile
        )
    assert launch is not None
    command = list(launch.command)
    interrupt_s = None
    if inside is not None:
        # A profiler inside the target (cProfile): its wrap in place of the interpreter
        # and its options (``replaces`` arguments), then the script or module and the rest.
        wrap = [arg.replace(WORKDIR_ARG, workdir) for arg in inside.target_wrap]
        command = wrap + command[int(inside.options.get("replaces", 1)) :]
        interrupt_s = float(inside.options.get("interrupt_s", 0.0))
    sweep = None
    if launch.sweep is not None:
        values = list(launch.sweep.values)
        slot = launch.sweep.each_s or campaign.duration_s / len(values)
        sweep = {"variable": launch.sweep.variable, "values": values, "slot_s": slot}
        launcher_planned = False  # a sweep's profilers never start it (make_plan skips them)
    return TargetPlan(
        mode="launch",
        command=command,
        interrupt_s=interrupt_s,
        cwd=launch.cwd,
        env=dict(launch.env),
        sweep=sweep,
        # Where the kernel lets a process trace only its descendants, py-spy must be the
        # one that starts the command; nsys and ncu always start it themselves. cProfile
        # runs inside the command, which the runner starts (it is planned only where no
        # profiler has to start the command).
        via_profiler=sweep is None
        and (launcher_planned or (not facts.can_attach and inside is None)),
    )


def make_plan(
    campaign: Campaign,
    facts: HostFacts,
    run_id: str,
    tools: Mapping[str, ToolChoice],
    t0: float,
    grace_s: float | None = None,
) -> SessionPlan:
    """One host's session: where its files go, when it starts, what it runs.

    ``tools``: the tool cache's answer for this host's architecture, by tool name.
    """
    base = f"{facts.home.rstrip('/')}/.fleetprof/runs/{campaign.name}"
    workdir = f"{base}/{run_id}"
    plans = []
    pushes: dict[str, dict[str, str]] = {}
    for name in campaign.profilers.enabled:
        profiler = profilers.get(name)
        if profiler is None:
            plans.append(_unavailable(name))
            continue
        tool = tools.get(profiler.TOOL) if profiler.TOOL else None
        planned = profiler.plan(campaign, facts, tool)
        push = profiler.tool_push(facts, tool) if planned.status == "planned" else None
        if profiler.TOOL and push:
            pushes[profiler.TOOL] = push
            planned = _pin_tool(planned, push)
        plans.append(_in_workdir(planned, workdir))
    if campaign.target.launch is not None and campaign.target.launch.sweep is not None:
        plans = [_in_sweep(p, facts.can_attach) for p in plans]
    plans = profilers.settle(campaign, plans)
    # A launcher of its own process (nsys, ncu); one inside the target (cProfile) is not.
    launcher_planned = any(
        p.status == "planned" and profilers.launch_only(p.name) and not p.in_target for p in plans
    )
    inside = next((p for p in plans if p.status == "planned" and p.in_target), None)
    t0_device = t0 + facts.clock.correction_s
    return SessionPlan(
        campaign=campaign.name,
        run_id=run_id,
        host=facts.host,
        workdir=workdir,
        archive=f"{base}/{run_id}.tar.gz",
        t0_device=t0_device,
        deadline_device=t0_device + campaign.duration_s,
        grace_s=campaign.limits.grace_s if grace_s is None else grace_s,
        clock_offset_s=facts.clock.correction_s,
        target=_target(campaign, facts, launcher_planned, inside, workdir),
        profilers=plans,
        tools=pushes,
        min_free_mb=campaign.limits.min_free_mb,
        remove_packed_workdir=True,
    )


SWEEP_SKIP = (
    "a sweep runs the command once per value under fleetprof's sweep supervisor; {name} {how}, "
    "so it cannot follow the runs: profile one value in a campaign without sweep"
)


def _in_sweep(planned: ProfilerPlan, can_attach: bool) -> ProfilerPlan:
    """A sweep's target is its supervisor, which the runner starts: a profiler that must
    start the command itself (nsys, ncu; py-spy where the device lets it trace only its own
    children) or lives inside it (cProfile, memray, line-profiler, tracemalloc) is skipped
    with the reason; the samplers and an attaching py-spy follow the runs as children."""
    if planned.status != "planned":
        return planned
    how = None
    if planned.in_target or planned.target_wrap or planned.builtin == TRACEMALLOC:
        how = "runs inside one program"
    elif profilers.launch_only(planned.name) or (planned.launch_argv and not planned.argv):
        how = "must start the program itself"
    elif planned.launch_argv and not can_attach:
        how = "must start the program itself on this device (it may not attach: ptrace_scope)"
    if how is None:
        return planned
    reason = SWEEP_SKIP.format(name=planned.name, how=how)
    return ProfilerPlan.skipped(planned.name, reason, planned.outputs, planned.max_bytes)


def _in_workdir(planned: ProfilerPlan, workdir: str) -> ProfilerPlan:
    """A launcher starts in the program's directory (target.launch.cwd), so its outputs are
    named by absolute path: WORKDIR_ARG in its own options (before ``--``; the command
    after it is the campaign's, passed as written) becomes the session's workdir."""
    argv = planned.launch_argv
    own = argv.index("--") if "--" in argv else len(argv)
    if not any(WORKDIR_ARG in arg for arg in argv[:own]):
        return planned
    options = [arg.replace(WORKDIR_ARG, workdir) for arg in argv[:own]]
    return dataclasses.replace(planned, launch_argv=options + argv[own:])


def _pin_tool(planned: ProfilerPlan, push: Mapping[str, str]) -> ProfilerPlan:
    """The pushed tool's sha256 on the profiler that runs it, for the runner to check the
    binary before it starts it (provision checked it once; a binary can change after)."""
    dest, digest = push.get("dest"), push.get("sha256")
    programs = [argv[0] for argv in (planned.argv, planned.launch_argv) if argv]
    if dest and digest and dest in programs:
        return dataclasses.replace(planned, tool_sha256=digest.lower())
    return planned


def provision_needed(plan: SessionPlan, facts: HostFacts) -> bool:
    """Whether provision has work on this host: a tool whose exact copy (same sha256 at the
    same path, as preflight hashed it) the device lacks, or a package to install. A host
    with nothing to do skips the play (the runner still checks each tool before use)."""
    for push in plan.tools.values():
        digest = str(push.get("sha256") or "").lower()
        if not digest or facts.file_sha256.get(str(push.get("dest"))) != digest:
            return True
    return any("install_package" in p.options for p in plan.profilers)


def _unavailable(name: str) -> ProfilerPlan:
    return ProfilerPlan.skipped(name, f"this fleetprof has no {name} profiler yet", [])


def reschedule(plan: SessionPlan, t0: float) -> SessionPlan:
    """The same plan with a new common start (controller clock) and the same window."""
    duration = plan.deadline_device - plan.t0_device
    t0_device = t0 + plan.clock_offset_s
    return dataclasses.replace(plan, t0_device=t0_device, deadline_device=t0_device + duration)


def effective_lead(requested_s: float, facts: list[HostFacts]) -> float:
    """The campaign's lead, lengthened where the slowest device could not be ready by T0.

    A runner that starts after T0 starts late and the window is no longer common. The
    preflight play measured both what the session play repeats: its own launch on the
    controller (``ready_s``, from launch to the device's answer) and one module round trip.
    """
    needs = [
        max(
            LEAD_ROUND_TRIPS * (f.clock.round_trip_s or 0.0),
            LEAD_READY_FACTOR * (f.ready_s or 0.0),
        )
        for f in facts
        if f.clock.round_trip_s is not None or f.ready_s is not None
    ]
    if not needs:
        return requested_s
    return max(requested_s, max(needs) + LEAD_MARGIN_S)
