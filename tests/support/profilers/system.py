"""Samples of the runner's system sampler, built by the test, and the system parser run on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.profilers import system
from orchestrator.profilers.base import ProfileResult


def campaign(**profilers: Any) -> Campaign:
    return Campaign.from_mapping(
        {
            "name": "sys",
            "hosts": "all",
            "duration": "10s",
            "target": {"attach": {"process": "app"}},
            "profilers": profilers or {"system": {"interval": "500ms"}},
        }
    )


def sample(t: float, **target: Any) -> dict[str, Any]:
    """One well-formed system.jsonl record at ``t``, its target fields overridden."""
    fields = {
        "pid": 42,
        "cpu_s": t * 0.5,
        "rss_kb": 10240 + t * 1024,
        "pss_kb": 8192 + t * 1024,
        "threads": 3,
        "read_bytes": t * 1000,
        "write_bytes": t * 2000,
        "rchar": t * 3000,
        "wchar": t * 4000,
        "ctx_voluntary": t * 10,
        "ctx_nonvoluntary": t * 5,
    }
    fields.update(target)
    return {
        "t": 1000.0 + t,
        "cpu_pct": 20.0 + t,
        "cpu_core_pct": {"cpu0": 10.0 + t, "cpu1": 30.0 + t},
        "load": [0.5 + t / 10, 0.4, 0.3],
        "mem_mb": {"total": 4000.0, "available": 3000.0 - t, "swap_total": 100, "swap_free": 90},
        "target": {k: v for k, v in fields.items() if v is not None},
    }


def parse(tmp_path: Path, lines: list[Any], entry: dict[str, Any] | None = None) -> ProfileResult:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (tmp_path / "system.jsonl").write_text(text)
    return system.parse(tmp_path, entry or {}, campaign())
