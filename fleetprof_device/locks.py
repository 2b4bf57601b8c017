"""One session per user and host, one ptrace sampler per process: flock(2) locks that the
kernel drops when the runner dies, and what a busy session says about the holder.

Two campaigns on one host at once: the second gets ``busy`` and starts nothing, and the
first is undisturbed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from typing import Any, Dict, Optional, Tuple

from .arguments import is_number, is_positive_int
from .errors import BusyError
from .procfs import is_gone, read_stat, shorten

SHARED_LOCK_DIRS = ("/run/lock", "/tmp")  # the first that is world-writable and sticky
TARGET_LOCK_NAME = "fleetprof-target-%d-%d.lock"  # pid, start time (clock ticks after boot)
LOCK_RETRIES = 5
HOLDER_READ_BYTES = 4096
HOLDER_KEYS = (
    "campaign",
    "run_id",
    "host",
    "pid",
    "uid",
    "since",
    "t0_device",
    "deadline_device",
    "grace_s",
    "workdir",
    "archive",
)
#
# Two campaigns on one host at once: the second gets ``busy`` and starts nothing, and the
# first is undisturbed. flock(2) locks belong to the open file description, so the kernel
# drops them when the runner dies, however it dies: a crashed session never blocks the next.


def iso_utc(when: Any) -> str:
    if not is_number(when):
        return "an unknown time"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def lock_holder(plan: Dict[str, Any], private: bool) -> Dict[str, Any]:
    """What a lock file says about its holder. A shared lock file (the target's) is readable
    by every user: it names the campaign and run, never paths in the holder's home."""
    holder: Dict[str, Any] = {
        "campaign": plan["campaign"],
        "run_id": plan["run_id"],
        "host": plan["host"],
        "pid": os.getpid(),
        "uid": os.geteuid(),
        "since": round(time.time(), 3),
        "t0_device": plan["t0_device"],
        "deadline_device": plan["deadline_device"],
        "grace_s": plan["grace_s"],
    }
    if private:
        holder["workdir"] = plan["workdir"]
        holder["archive"] = plan["archive"]
    return holder


def busy_reason(what: str, holder: Optional[Dict[str, Any]]) -> str:
    if holder is None:
        return "busy: another fleetprof session holds %s (who holds it could not be read)" % what
    return "busy: another fleetprof session holds %s (campaign %s, run %s, pid %s, until %s)" % (
        what,
        holder.get("campaign"),
        holder.get("run_id"),
        holder.get("pid"),
        iso_utc(holder.get("deadline_device")),
    )


class SessionLock:
    """An exclusive, non-blocking flock on one lock file, held until release() or death.

    The file is opened with O_NOFOLLOW (a symlink planted at its name is refused) and
    O_NONBLOCK (a FIFO planted there cannot hang the runner), and must be a regular file
    with one link; only a file of this user's is ever written.
    Its holder writes a short JSON description into it; whoever finds it locked reads that
    back for its ``busy`` reason. ``shared``: a lock file in a directory every user may
    write (the target's lock), readable by all so another user's session can lock it too.
    """

    def __init__(self, path: str, fd: int, shared: bool) -> None:
        self.path = path
        self.fd = fd
        self.shared = shared

    @classmethod
    def acquire(cls, path: str, what: str, holder: Dict[str, Any], shared: bool) -> SessionLock:
        """The lock, or BusyError (someone holds it) or OSError (it cannot be taken)."""
        for _ in range(LOCK_RETRIES):
            fd, writable = cls._open(path, shared)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                held = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
                other = cls._read_holder(fd) if held else None
                os.close(fd)
                if held:
                    raise BusyError(busy_reason(what, other), path, other) from None
                raise
            # Its last holder may have unlinked the file between our open and our flock:
            # a lock on a file no longer at the path excludes nobody. Lock the one there.
            try:
                mine, there = os.fstat(fd), os.lstat(path)
                same = (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)
            except OSError:
                same = False
            if same:
                lock = cls(path, fd, shared)
                if writable:
                    lock._describe(holder)
                return lock
            os.close(fd)
        raise OSError(errno.EAGAIN, "the lock file kept being replaced", path)

    @staticmethod
    def _open(path: str, shared: bool) -> Tuple[int, bool]:
        """(fd, whether it may be written)."""
        flags = os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd, writable = os.open(path, flags | os.O_RDWR | os.O_CREAT, 0o600), True
        except OSError as exc:
            if not (shared and exc.errno in (errno.EACCES, errno.EPERM)):
                raise
            # Another user's lock file in a sticky directory: protected_regular refuses
            # O_CREAT on it, and it is not ours to write. A read-only descriptor locks too.
            fd, writable = os.open(path, flags | os.O_RDONLY), False
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", path)
            if info.st_nlink != 1:
                # A hard link planted at the lock's name would have the runner truncate and
                # write whatever file it points to (where protected_hardlinks is off).
                raise OSError(errno.EMLINK, "the lock file has %d links" % info.st_nlink, path)
            # Only a file of our own is ever written; anyone else's is only locked and read.
            writable = writable and info.st_uid == os.geteuid()
            if writable:
                # Readable by all in the shared directory (another user's session must be
                # able to open it to lock it); private (0600) in the fleetprof home.
                os.fchmod(fd, 0o644 if shared else 0o600)
        except OSError:
            os.close(fd)
            raise
        return fd, writable

    @staticmethod
    def _read_holder(fd: int) -> Optional[Dict[str, Any]]:
        """The holder's description, when it names a process that is still running (a
        description left by an earlier holder, which a new one could not overwrite, does
        not)."""
        try:
            holder = json.loads(os.pread(fd, HOLDER_READ_BYTES, 0).decode("utf-8", "replace"))
        except (OSError, ValueError):
            return None
        if not isinstance(holder, dict) or not is_positive_int(holder.get("pid")):
            return None
        info = read_stat(int(holder["pid"]))
        if info is None or is_gone(info[0]):
            return None
        # Another user may have written this file: keep only the known keys, as plain values.
        return dict(
            (key, shorten(value, 200) if isinstance(value, str) else value)
            for key, value in holder.items()
            if key in HOLDER_KEYS and (isinstance(value, str) or is_number(value))
        )

    def _describe(self, holder: Dict[str, Any]) -> None:
        data = (json.dumps(holder, sort_keys=True) + "\n").encode("utf-8")
        with contextlib.suppress(OSError):  # the description is a courtesy, the lock is not
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)

    def release(self, unlink: bool = False) -> None:
        """Give the lock up; ``unlink``: remove our own lock file first, while still holding
        it (whoever opened it meanwhile sees it gone after its flock, and retries)."""
        if self.fd < 0:
            return
        if unlink:
            with contextlib.suppress(OSError):
                mine, there = os.fstat(self.fd), os.lstat(self.path)
                if (mine.st_dev, mine.st_ino) == (
                    there.st_dev,
                    there.st_ino,
                ) and mine.st_uid == os.geteuid():
                    os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1


def shared_lock_dir() -> str:
    """The directory for locks every user must see: chosen from what it is, not from who
    asks (/run/lock when it is world-writable and sticky, else /tmp), so that two users'
    sessions pick the same one."""
    for directory in SHARED_LOCK_DIRS:
        try:
            info = os.stat(directory)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_mode & 0o1777 == 0o1777:
            return directory
    return "/tmp"


def target_lock_path(pid: int, starttime: int) -> str:
    """The target's lock: named from its pid and start time, so a reused pid is another."""
    return os.path.join(shared_lock_dir(), TARGET_LOCK_NAME % (pid, starttime))
