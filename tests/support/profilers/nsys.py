"""A Jetson host with the NVIDIA tools installed, as the nsys and ncu plan tests see it."""

from __future__ import annotations

from typing import Any

from orchestrator.models import HostFacts
from tests.support.factories import host_facts

NSYS = "/usr/local/cuda/bin/nsys"


def facts(**overrides: Any) -> HostFacts:
    gpu = {"nvidia_driver": True, "jetson": True, "gpu_counters_admin_only": False}
    defaults = {
        "host": "orin-1",
        "arch": "aarch64",
        "ptrace_scope": 1,
        "can_attach": False,
        "tools": {"nsys": NSYS, "ncu": "/usr/local/cuda/bin/ncu"},
        "gpu": gpu,
    }
    return host_facts(**{**defaults, **overrides})
