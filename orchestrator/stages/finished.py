"""A finished run read back from its directory: its report.json and its hosts' stacks,
for the commands that work on runs already made (``fleetprof compare``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.analysis.stacks import StackProfile
from orchestrator.report.exports import host_profile
from orchestrator.stages.rundir import RunDir, read_json


class RunLoadError(Exception):
    """``path`` is not a finished run that can be read; the message names it."""


def load_run(path: Path, label: str) -> tuple[dict[str, Any], dict[str, StackProfile]]:
    """A run's report.json and its hosts' stacks. ``label`` names the argument (RUN_A)
    in the message of the RunLoadError raised for bad input."""
    report_path = path / "report.json"
    if not (path / "run.json").is_file() or not report_path.is_file():
        raise RunLoadError(
            f"{label} {path}: not a fleetprof run directory (no run.json or report.json)"
        )
    try:
        report = read_json(report_path)
    except (OSError, ValueError) as err:
        raise RunLoadError(f"{label} {path}: cannot read report.json: {err}") from None
    run = RunDir(path)
    profiles: dict[str, StackProfile] = {}
    hosts = report.get("hosts") if isinstance(report, dict) else None
    for entry in hosts if isinstance(hosts, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        try:
            found = host_profile(run, name)
        except ValueError:  # a name that cannot be a directory has no stacks here
            found = None
        if found is not None:
            profiles[name] = found
    return report, profiles
