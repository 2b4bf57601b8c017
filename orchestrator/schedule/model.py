"""What a schedule is: the spec of one nightly ``fleetprof check``, what install did, what
was found installed, the command it runs, and the marker that makes a unit or line ours."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from orchestrator.campaign.loader import load_campaign
from orchestrator.campaign.messages import CampaignError
from orchestrator.paths import REPO_ROOT

Kind = Literal["systemd", "cron"]

MARKER = "# fleetprof schedule: "
# Unit names are at most 255 characters including ".service".
MAX_NAME = 200

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_AT_RE = re.compile(r"(\d{1,2}):(\d{2})")


class ScheduleError(Exception):
    """A schedule that cannot be written, read back or removed; the text says why and where."""


@dataclass(frozen=True, kw_only=True)
class ScheduleSpec:
    """What to run when: one nightly ``fleetprof check``.

    Paths are made absolute against the current directory on construction (the timer runs
    elsewhere); ``name`` left empty becomes ``fleetprof-<campaign name>``, read from the
    campaign file (which is validated on the way).
    """

    campaign: Path
    at: str
    inventory: str | None = None
    out_root: Path = Path("reports")
    user: bool = False
    extra: tuple[str, ...] = ()
    workdir: Path = REPO_ROOT
    name: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "campaign", absolute(self.campaign))
        set_(self, "out_root", absolute(self.out_root))
        set_(self, "workdir", absolute(self.workdir))
        if self.inventory is not None and Path(self.inventory).exists():
            set_(self, "inventory", str(absolute(Path(self.inventory))))
        set_(self, "extra", tuple(self.extra))
        set_(self, "at", _parse_at(self.at))
        if not self.name:
            set_(self, "name", f"fleetprof-{_campaign_name(self.campaign)}")
        _check_name(self.name)


@dataclass(frozen=True)
class InstallResult:
    """What ``install`` did: the files written, whether the timer was started, what is left."""

    kind: Kind
    paths: list[Path]
    activated: bool
    hints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Installed:
    """One schedule found on this machine, read back from its unit files or crontab line."""

    name: str
    kind: Kind
    at: str
    command: list[str]
    paths: list[Path]
    workdir: Path | None = None


def check_argv(spec: ScheduleSpec, fleetprof: Path) -> list[str]:
    """The ``fleetprof check`` command line the schedule runs; ``fleetprof`` is absolute."""
    if not fleetprof.is_absolute():
        raise ScheduleError(f"the fleetprof executable must be an absolute path, got {fleetprof}")
    argv = [str(fleetprof), "check", str(spec.campaign)]
    if spec.inventory is not None:
        argv += ["-i", spec.inventory]
    return [*argv, "-o", str(spec.out_root), *spec.extra]


def absolute(path: Path) -> Path:
    # abspath, not resolve: '..' is folded but a symlinked checkout keeps the name it was given.
    return Path(os.path.abspath(path))


def _parse_at(at: str) -> str:
    match = _AT_RE.fullmatch(at.strip())
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ScheduleError(f"--at {at!r}: expected a time of day HH:MM, 00:00 to 23:59")
    return f"{int(match[1]):02d}:{match[2]}"


def _campaign_name(campaign: Path) -> str:
    try:
        return load_campaign(campaign).name
    except CampaignError as err:
        raise ScheduleError(str(err)) from err


def _check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        raise ScheduleError(
            f"schedule name {name!r}: use letters, digits, '_', '.' and '-' (not first: '.' "
            f"or '-'), at most {MAX_NAME} characters"
        )
