"""``fleetprof inspect``: one raw profiler artifact -> the normalized data a report holds.

For an operator debugging a run: the same parser the report uses, on one file, with the
profiler's default settings, or the settings of the campaign given (``--campaign``). A
setting a campaign must give (no default) is filled where the profiler says its parse does
not read it (its ``INSPECT_SETTINGS``); one the parse needs is asked of the user (exit 2,
the key named). The file is read as untrusted device output, as always.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

from orchestrator import profilers
from orchestrator.campaign.messages import CampaignError
from orchestrator.campaign.model import Campaign


class InspectError(Exception):
    """Bad input: unknown profiler, unreadable file, or settings the parse needs and only
    a campaign gives; the message says which."""


def inspect_file(
    profiler_name: str, path: Path, campaign: Campaign | None = None
) -> dict[str, Any]:
    """What ``path`` (a raw ``profiler_name`` artifact) holds, parsed with ``campaign``'s
    settings for that profiler (None: its defaults)."""
    profiler = profilers.get(profiler_name)
    if profiler is None:
        known = ", ".join(sorted(profilers.REGISTRY))
        raise InspectError(f"{profiler_name}: unknown profiler (known: {known})")
    if not path.is_file():
        raise InspectError(f"{path}: not a readable file")
    if campaign is None:
        campaign = _default_campaign(profiler_name, path)
    elif profiler_name not in campaign.profilers.enabled:
        raise InspectError(
            f"{campaign.source}: profilers.{profiler_name}: absent, so that campaign did not "
            f"run {profiler_name}: give the campaign of the run that wrote {path}"
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


def _default_campaign(profiler_name: str, path: Path) -> Campaign:
    """A campaign that runs only ``profiler_name``, with its defaults and the stand-ins its
    module gives for the settings that have none and that its parse does not read."""
    settings = dict(getattr(profilers.get(profiler_name), "INSPECT_SETTINGS", {}))
    shown = f"profilers.{profiler_name}"
    try:
        return Campaign.from_mapping(
            {
                "name": "inspect",
                "duration": "1s",
                "target": {"attach": {"pid": 1}},
                "profilers": {profiler_name: settings},
            },
            source=shown,
        )
    except CampaignError as err:
        problems = "; ".join(problem.removeprefix(f"{shown}: ") for problem in err.problems)
        raise InspectError(
            f"{path}: {profiler_name} cannot parse it without the run's settings ({problems}):"
            " pass the run's campaign, --campaign RUN_DIR/campaign.yml"
        ) from None
