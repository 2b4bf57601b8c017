"""Values the unit tests build often: one device as preflight would describe it."""

from __future__ import annotations

from typing import Any

from orchestrator.models import ClockOffset, HostFacts


def host_facts(**overrides: Any) -> HostFacts:
    """An ordinary x86 box seen by a non-root user with ptrace allowed; override freely."""
    values: dict[str, Any] = {
        "host": "edge-1",
        "arch": "x86_64",
        "hw_model": "box",
        "hw_model_source": "hostvar",
        "os": "Debian",
        "kernel": "6.1",
        "python": "3.11.2",
        "cores": 4,
        "memory_mb": 4096,
        "disk_free_mb": 10000,
        "home": "/home/ops",
        "is_root": False,
        "ptrace_scope": 0,
        "can_attach": True,
        "attach_reason": None,
        "clock": ClockOffset(offset_s=0.0, uncertainty_s=0.05),
    }
    values.update(overrides)
    return HostFacts(**values)
