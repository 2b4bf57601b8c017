"""Values the tests build often: one device as preflight would describe it, a campaign, a
resolved py-spy tool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.models import ClockOffset, HostFacts
from orchestrator.profilers.base import ToolChoice


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


TOOL = {"py-spy": ToolChoice(version="0.4.3", src="/cache/py-spy", sha256="ab" * 32, problem=None)}


def campaign(**overrides: Any) -> Campaign:
    data: dict[str, Any] = {
        "name": "unit",
        "duration": "30s",
        "target": {"attach": {"process": "video_pipeline"}},
        "profilers": {"py-spy": {"rate": 97}},
    }
    data.update(overrides)
    return Campaign.from_mapping(data, source=Path("unit.yml"))
