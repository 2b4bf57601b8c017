"""The profilers fleetprof can run, by name (see base.py for what each module provides).
Only this folder knows their names: the stages ask the registry below."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

from orchestrator.campaign.model import Campaign
from orchestrator.models import ProfilerPlan
from orchestrator.profilers import (
    cprofile,
    iotop,
    line_profiler,
    memory,
    memray,
    ncu,
    nsys,
    nvidia_smi,
    open_files,
    prometheus,
    pyspy,
    strace,
    system,
    tcpdump,
    tegrastats,
    tracemalloc,
)
from orchestrator.profilers.base import Profiler, ToolChoice, ToolSource

REGISTRY: dict[str, Profiler] = {
    module.NAME: cast(Profiler, module)
    for module in (
        pyspy,
        iotop,
        system,
        memory,
        nvidia_smi,
        tegrastats,
        nsys,
        ncu,
        cprofile,
        tracemalloc,
        memray,
        line_profiler,
        open_files,
        strace,
        prometheus,
        tcpdump,
    )
}


def settle(campaign: Campaign, plans: list[ProfilerPlan]) -> list[ProfilerPlan]:
    """One host's plans with the conflicts between profilers settled, which no profiler's
    own plan() can see: a process has one ptrace tracer (strace yields to a blocking py-spy)."""
    return strace.yield_to_pyspy(campaign, plans)


def get(name: str) -> Profiler | None:
    return REGISTRY.get(name)


def is_launcher(name: str) -> bool:
    """Whether the profiler ``name`` can start the command of a launch target."""
    profiler = REGISTRY.get(name)
    return profiler is not None and profiler.LAUNCHER


def launch_only(name: str) -> bool:
    """Whether the profiler ``name`` profiles only a command it starts (cannot attach)."""
    profiler = REGISTRY.get(name)
    return profiler is not None and profiler.LAUNCH_ONLY


def inside_target(name: str) -> bool:
    """Whether the profiler ``name`` runs inside the program the runner launches (cProfile:
    it changes the command, the runner still starts it), not as a process of its own."""
    return bool(getattr(REGISTRY.get(name), "IN_TARGET", False))


# The tools the controller's cache provides, by tool name, and the profiler that knows each.
TOOL_SOURCES: dict[str, ToolSource] = {
    profiler.TOOL: cast(ToolSource, profiler) for profiler in REGISTRY.values() if profiler.TOOL
}


def tool_homes(tools: Iterable[str]) -> list[str]:
    """Where provision would put each of ``tools`` on a device (under ``~/``)."""
    return [TOOL_SOURCES[tool].tool_home() for tool in sorted(tools) if tool in TOOL_SOURCES]


def choose_tools(
    tools: Iterable[str], arch: str, log: Callable[[str], None] | None
) -> dict[str, ToolChoice]:
    """The tool cache's answer for each of ``tools`` on ``arch`` (a binary, or why none)."""
    return {
        tool: TOOL_SOURCES[tool].choose_tool(arch, log)
        for tool in sorted(tools)
        if tool in TOOL_SOURCES
    }
