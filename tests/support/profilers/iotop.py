"""Recorded ``iotop -b -o -t -k -P`` output, an iotop campaign and host, and the parser run
on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.models import HostFacts
from orchestrator.profilers import iotop
from tests.support.factories import host_facts
from tests.support.paths import FIXTURES as _FIXTURES

FIXTURES = _FIXTURES / "iotop"


WITH_DELAYACCT = FIXTURES / "iotop-b-o-t-k-P.txt"


NO_DELAYACCT = FIXTURES / "iotop-b-o-t-k-P.no-delayacct.txt"


BUSY = FIXTURES / "iotop-b-o-t-k-P.busy-n3.txt"


K = 1024.0


def campaign(duration: str = "30s", interval: str = "1s") -> Campaign:
    data: dict[str, Any] = {
        "name": "unit",
        "duration": duration,
        "target": {"attach": {"process": "iow"}},
        "profilers": {"iotop": {"interval": interval}},
    }
    return Campaign.from_mapping(data, source=Path("unit.yml"))


def facts(**overrides: Any) -> HostFacts:
    defaults = {"home": "/root", "is_root": True, "tools": {"iotop": "/usr/sbin/iotop"}}
    return host_facts(**{**defaults, "delayacct": False, **overrides})


def session(
    tmp_path: Path,
    text: str | bytes,
    pid: int | None = None,
    cmdline: list[str] | None = None,
    **entry: Any,
) -> tuple[Path, dict[str, Any]]:
    """A session directory as collect leaves it: iotop's output and the manifest."""
    out = tmp_path / "iotop.stdout"
    out.write_bytes(text.encode() if isinstance(text, str) else text)
    target: dict[str, Any] = {"mode": "attach", "pid": pid, "cmdline": cmdline}
    profiler_entry = {
        "status": "ok",
        "exit_code": 0,
        "outputs": {"iotop.stdout": {"bytes": out.stat().st_size, "truncated": False}},
        **entry,
    }
    manifest = {"target": target, "profilers": {"iotop": profiler_entry}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path, profiler_entry


def parse(tmp_path: Path, text: str | bytes, **kwargs: Any) -> iotop.ProfileResult:
    session_dir, entry = session(tmp_path, text, **kwargs)
    return iotop.parse(session_dir, entry, campaign())
