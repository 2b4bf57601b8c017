"""``fleetprof inspect``: one raw profiler artifact -> the normalized data a report holds.

For an operator debugging a run: the same parser the report uses, on one file, with the
profiler's default settings. The file is read as untrusted device output, as always.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

from orchestrator import profilers
from orchestrator.campaign.model import Campaign


class InspectError(Exception):
    """Bad input: unknown profiler or unreadable file; the message says which."""


def inspect_file(profiler_name: str, path: Path) -> dict[str, Any]:
    profiler = profilers.get(profiler_name)
    if profiler is None:
        known = ", ".join(sorted(profilers.REGISTRY))
        raise InspectError(f"{profiler_name}: unknown profiler (known: {known})")
    if not path.is_file():
        raise InspectError(f"{path}: not a readable file")
    campaign = Campaign.from_mapping(
        {
            "name": "inspect",
            "duration": "1s",
            "target": {"attach": {"pid": 1}},
            "profilers": {profiler_name: {}},
        }
    )
    with tempfile.TemporaryDirectory(prefix="fleetprof-inspect-") as tmp:
        session = Path(tmp)
        try:
            shutil.copyfile(path, session / profiler.OUTPUT)
        except OSError as err:
            raise InspectError(f"{path}: {err.strerror or err}") from None
        result = profiler.parse(session, {}, campaign)
    # Everything but the raw stacks and their line counts, which top_functions, flamegraph
    # and hot_lines summarize.
    raw = {"stacks", "line_counts"}
    data = {f.name: getattr(result, f.name) for f in fields(result) if f.name not in raw}
    data["profiler"] = profiler_name
    data["file"] = str(path)
    return data
