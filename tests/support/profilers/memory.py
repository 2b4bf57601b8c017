"""Samples of the runner's memory sampler, built by the test, and the memory parser run on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.profilers import memory
from orchestrator.profilers.base import ProfileResult


def campaign(leak: float | None = None) -> Campaign:
    spec = {} if leak is None else {"leak_mb_per_min": leak}
    return Campaign.from_mapping(
        {
            "name": "mem",
            "hosts": "all",
            "duration": "1m",
            "target": {"attach": {"process": "app"}},
            "profilers": {"memory": spec},
        }
    )


def parse(tmp_path: Path, lines: list[Any], leak: float | None = None) -> ProfileResult:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (tmp_path / "memory.jsonl").write_text(text)
    return memory.parse(tmp_path, {}, campaign(leak))


def series(rss_mb: list[float], step_s: float = 1.0) -> list[dict[str, Any]]:
    return [
        {"t": 1000.0 + i * step_s, "target": {"pid": 7, "rss_kb": mb * 1024, "pss_kb": mb * 512}}
        for i, mb in enumerate(rss_mb)
    ]
