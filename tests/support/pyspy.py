"""Recorded py-spy output of programs whose truth is known, and py-spy's parser run on them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from fleetprof_device import pyspy_output
from orchestrator.campaign.model import Campaign
from orchestrator.profilers import pyspy
from orchestrator.profilers.base import ProfileResult
from tests.support.paths import FIXTURES as _FIXTURES


def truth(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / f"{name}.truth.json").read_text()))


def parse(tmp_path: Path, name: str, ran_s: float | None = None, **spec: Any) -> ProfileResult:
    """pyspy.parse on a recording, as the controller parses a host's session directory
    (``ran_s``: another time py-spy ran than the recording's)."""
    recording = dict(RECORDINGS[name])
    if ran_s is not None:
        recording["ran_s"] = ran_s
    flags = recording["flags"]
    settings = {
        "rate": int(flags[flags.index("--rate") + 1]),
        "native": "--native" in flags,
        "idle": "--idle" in flags,
        "subprocesses": "--subprocesses" in flags,
        "nonblocking": "--nonblocking" in flags,
        **spec,
    }
    campaign = Campaign.from_mapping(
        {
            "name": "truth",
            "duration": recording["duration"],
            "target": {"attach": {"pid": 1}},
            "profilers": {"py-spy": settings},
        }
    )
    session = tmp_path / name
    session.mkdir()
    shutil.copy(FIXTURES / f"{name}.folded.txt", session / pyspy.OUTPUT)
    # The manifest entry the device runner writes: its argv, when py-spy ran, and what
    # py-spy said on stdout as the runner reads it.
    argv = ["py-spy", "record", "--pid", "1", "--duration", str(recording["duration"]), *flags]
    stdout = FIXTURES / f"{name}.stdout.txt"
    entry = {
        "status": "ok",
        "argv": argv,
        "started_at_device": 1000.0,
        "stopped_at_device": 1000.0 + recording["ran_s"],
        "data_quality": runner().sampling_quality([str(stdout)], argv, recording["ran_s"]),
    }
    return pyspy.parse(session, entry, campaign)


FIXTURES = _FIXTURES / "py-spy"


RECORDINGS = json.loads((FIXTURES / "recordings.json").read_text())


def runner() -> Any:
    """The device side's reading of py-spy's output (stdlib only)."""
    return pyspy_output
