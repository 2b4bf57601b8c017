"""The runner's directories (the fleetprof home, runs, the workdir: all 0700) and the disk
floor (``min_free_mb``) checked before and during the window.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any, Dict, List, Optional, Tuple

from .clock import Clock
from .contract import HOST_LOCK_FILE, MIB
from .errors import InvocationError
from .procfs import os_error_text

# What sys.path needs to import this package: its zipapp, or the checkout holding it (a
# post step's converter and the sweep supervisor run in another interpreter).
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fleetprof_home(workdir: str) -> Tuple[str, List[str]]:
    """The fleetprof home the workdir lives under, and fleetprof's own directories above it.

    plan.py lays sessions out as <home>/runs/<campaign>/<run id> (home: ~/.fleetprof); then
    home, runs and the campaign's directory are fleetprof's own, and the host lock lives in
    home. In any other layout the lock lives next to the workdir, and no directory above the
    workdir is taken for fleetprof's own.
    """
    workdir = os.path.normpath(workdir)
    campaign_dir = os.path.dirname(workdir)
    runs = os.path.dirname(campaign_dir)
    home = os.path.dirname(runs)
    if os.path.basename(runs) == "runs" and home != "/":
        return home, [home, runs, campaign_dir]
    return campaign_dir, []


def make_private_dir(path: str, tighten: bool) -> None:
    """Create ``path`` and whatever is missing above it, each mode 0700 whatever the umask.
    An existing ``path`` with a looser mode is tightened to 0700 when ``tighten`` and it
    belongs to this user."""
    missing: List[str] = []
    current = os.path.normpath(path)
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue  # made meanwhile by someone else: not ours to chmod
        os.chmod(directory, 0o700)
    if tighten and not missing:
        info = os.stat(path)
        if (
            stat.S_ISDIR(info.st_mode)
            and info.st_uid == os.geteuid()
            and stat.S_IMODE(info.st_mode) & 0o077
        ):
            os.chmod(path, 0o700)


def prepare_home(plan: Dict[str, Any]) -> str:
    """Create the directories above the workdir (0700); -> the host lock's path."""
    home, own = fleetprof_home(plan["workdir"])
    try:
        make_private_dir(home, tighten=os.path.basename(home) == ".fleetprof")
        for directory in own[1:]:
            make_private_dir(directory, tighten=True)
        if not os.path.isdir(home):
            raise OSError(errno.ENOTDIR, "not a directory", home)
    except OSError as exc:
        raise InvocationError(
            "cannot prepare workdir %s: %s" % (plan["workdir"], os_error_text(exc))
        ) from None
    return os.path.join(home, HOST_LOCK_FILE)


# =========================================================================== disk floor


def mount_point(path: str) -> str:
    """The mount point of the filesystem holding ``path`` (what a reason calls it)."""
    current = os.path.realpath(path)
    try:
        device = os.stat(current).st_dev
        while current != "/":
            parent = os.path.dirname(current)
            if os.stat(parent).st_dev != device:
                break
            current = parent
    except OSError:
        pass
    return current


class DiskFloor:
    """The plan's min_free_mb for the workdir's filesystem: None means no floor."""

    def __init__(self, path: str, floor_mb: Any) -> None:
        self.path = path
        self.floor_mb: Optional[float] = float(floor_mb) if floor_mb is not None else None
        self.fs: Optional[str] = None
        self.free_at_start: Optional[float] = None
        self.lowest: Optional[float] = None
        self.fell_below_at: Optional[float] = None

    def free_mb(self) -> Optional[float]:
        """Free space for this user (f_bavail: what root keeps back does not count), MiB."""
        try:
            info = os.statvfs(self.path)
        except OSError:
            return None
        free = info.f_bavail * info.f_frsize / float(MIB)
        if self.free_at_start is None:
            self.free_at_start = free
        self.lowest = free if self.lowest is None else min(self.lowest, free)
        return free

    def below(self) -> Optional[float]:
        """The free space when it is below the floor, else None (also with no floor)."""
        free = self.free_mb()
        if self.floor_mb is None or free is None or free >= self.floor_mb:
            return None
        if self.fs is None:
            self.fs = mount_point(self.path)
        return free

    def _floor(self) -> str:
        floor = float(self.floor_mb or 0.0)
        return "%d" % floor if floor.is_integer() else "%.1f" % floor

    def too_little(self, free: float) -> str:
        return "free space on %s is %d MiB, below the floor of %s MiB" % (
            self.fs,
            int(free),
            self._floor(),
        )

    def fell(self, free: float) -> str:
        return "free space on %s fell below the floor of %s MiB (%d MiB left)" % (
            self.fs,
            self._floor(),
            int(free),
        )

    def entry(self, clock: Clock) -> Dict[str, Any]:
        def mb(value: Optional[float]) -> Optional[float]:
            return None if value is None else round(value, 1)

        return {
            "fs": self.fs or mount_point(self.path),
            "min_free_mb": self.floor_mb,
            "free_mb_at_start": mb(self.free_at_start),
            "free_mb_lowest": mb(self.lowest),
            "fell_below_at_device": self.fell_below_at,
            "fell_below_at_controller": clock.controller(self.fell_below_at),
        }
