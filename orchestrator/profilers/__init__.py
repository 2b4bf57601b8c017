"""The profilers fleetprof can run, by name (see base.py for what each module provides)."""

from __future__ import annotations

from typing import cast

from orchestrator.profilers import iotop, memory, ncu, nsys, nvidia_smi, pyspy, system, tegrastats
from orchestrator.profilers.base import Profiler

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
    )
}


def get(name: str) -> Profiler | None:
    return REGISTRY.get(name)
