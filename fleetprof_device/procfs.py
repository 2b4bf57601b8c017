"""/proc for finding and watching processes (command lines, stat, pidfiles, regex matches)
and the small text helpers every module uses (shorten, os_error_text).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import List, Optional, Tuple

from .errors import TargetError


def read_cmdline(pid: int) -> Optional[List[str]]:
    """A process's argv; [] for kernel threads and zombies, None when it is gone."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    parts = data.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [part.decode("utf-8", "replace") for part in parts]


def read_stat(pid: int) -> Optional[Tuple[str, int, int, int]]:
    """(state, ppid, pgrp, starttime) from /proc/PID/stat, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            data = handle.read()
        # comm (field 2) may hold spaces and parentheses: split after its last ')'.
        rest = data[data.rindex(b")") + 2 :].split()
        return rest[0].decode("ascii", "replace"), int(rest[1]), int(rest[2]), int(rest[19])
    except (OSError, ValueError, IndexError):
        return None


def list_pids() -> List[int]:
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())


def is_gone(state: str) -> bool:
    return state in ("Z", "X")  # zombie or dead: exited, only not reaped yet


def ancestors_and_self() -> List[int]:
    chain = [os.getpid()]
    pid = os.getppid()
    while pid > 0 and pid not in chain:
        chain.append(pid)
        info = read_stat(pid)
        pid = info[1] if info else 0
    return chain


def shorten(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shorten_cmdline(argv: List[str], limit: int = 120) -> str:
    """A command line cut in the middle: the program and its last arguments tell it apart."""
    text = " ".join(" ".join(argv).split())
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + "..." + text[len(text) - (limit - head - 3) :]


def find_by_regex(pattern: str) -> Tuple[int, List[str]]:
    """The one process whose command line matches; the runner and its ancestors excluded."""
    regex = re.compile(pattern)
    excluded = set(ancestors_and_self())
    matches: List[Tuple[int, List[str]]] = []
    for pid in list_pids():
        if pid in excluded:
            continue
        argv = read_cmdline(pid)
        if argv and regex.search(" ".join(argv)):  # [] = kernel thread or zombie
            matches.append((pid, argv))
    if not matches:
        raise TargetError("no process matches '%s'" % pattern)
    if len(matches) > 1:
        listed = "; ".join("pid %d: %s" % (pid, shorten_cmdline(argv)) for pid, argv in matches[:5])
        more = " (and %d more)" % (len(matches) - 5) if len(matches) > 5 else ""
        raise TargetError(
            "%d processes match '%s', exactly one is needed: %s%s"
            % (len(matches), pattern, listed, more)
        )
    return matches[0]


def check_pid(pid: int, source: str = "") -> List[str]:
    """The cmdline of a live, non-kernel process ``pid``; TargetError otherwise."""
    label = "pid %d%s" % (pid, source)
    info = read_stat(pid)
    argv = read_cmdline(pid)
    if info is None or argv is None:
        raise TargetError("%s is not running" % label)
    if is_gone(info[0]):
        raise TargetError("%s has exited (zombie, not yet reaped)" % label)
    if not argv:
        raise TargetError("%s is a kernel thread" % label)
    return argv


def read_pidfile(path: str) -> int:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(4096)
    except FileNotFoundError:
        raise TargetError("pidfile %s does not exist" % path) from None
    except OSError as exc:
        raise TargetError("cannot read pidfile %s: %s" % (path, os_error_text(exc))) from None
    text = raw.decode("utf-8", "replace").strip()
    first = text.splitlines()[0].strip() if text else ""
    if not first.isdigit() or int(first) <= 0:
        raise TargetError("pidfile %s does not hold a pid: %r" % (path, shorten(text, 40)))
    return int(first)


class ProcessRef:
    """A process the runner did not start: watched through /proc, pid reuse detected."""

    def __init__(self, pid: int, starttime: int) -> None:
        self.pid = pid
        self.starttime = starttime

    @classmethod
    def of(cls, pid: int) -> Optional[ProcessRef]:
        info = read_stat(pid)
        if info is None or is_gone(info[0]):
            return None
        return cls(pid, info[3])

    def alive(self) -> bool:
        info = read_stat(self.pid)
        return info is not None and info[3] == self.starttime and not is_gone(info[0])


def os_error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return "%s%s" % (exc.strerror, ": '%s'" % exc.filename if exc.filename else "")
    return str(exc) or type(exc).__name__


def kill_quietly(pid: int, sig: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
