"""Probe result documents (probe.json) as a host's runner would write them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.stages.probe import PROBE_FILE, PROBE_SCHEMA


def probe_doc(**results: Any) -> dict[str, Any]:
    return {"schema": PROBE_SCHEMA, "nominal_s": 2.0, "results": results}


def write(tmp_path: Path, data: Any) -> Path:
    text = data if isinstance(data, str) else json.dumps(data)
    (tmp_path / PROBE_FILE).write_text(text)
    return tmp_path
