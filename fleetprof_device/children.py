"""Processes the runner starts: each in its own process group, killed with the runner
(PR_SET_PDEATHSIG), stopped gently then by force (Child).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

from .procfs import is_gone, kill_quietly, list_pids, read_stat
from .procread import CLK_TCK, read_target_stat

TARGET_STOP_WAIT_S = 3.0  # SIGTERM -> SIGKILL when stopping a launched target


def _pdeathsig_hook() -> Optional[Callable[[], None]]:
    """A preexec_fn asking Linux to SIGKILL the child if the runner itself is killed.

    The watchdog covers every way the runner can end except SIGKILL (async's time limit,
    the OOM killer); this covers that one for the processes the runner started directly.
    Safe as a preexec_fn because no other thread runs while the runner spawns: the
    built-in samplers' threads start only after the last process was spawned.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
        # PR_SET_PDEATHSIG = 1; the kernel reads the later arguments as unsigned longs.
        args = (
            ctypes.c_int(1),
            ctypes.c_ulong(int(signal.SIGKILL)),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
    except (ImportError, OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(*args)
        if os.getppid() != parent:  # the runner died before prctl took effect
            os._exit(127)

    return hook


PDEATHSIG = _pdeathsig_hook()


class Child:
    """A process the runner started: leader of its own session and process group."""

    def __init__(
        self,
        argv: List[str],
        cwd: str,
        stdout: str,
        stderr: str,
        env: Optional[Dict[str, str]] = None,
    ) -> None:
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            self.popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                close_fds=True,
                start_new_session=True,
                preexec_fn=PDEATHSIG,
            )
        self.pid = self.popen.pid
        self.started_at = time.time()
        self.stopped_at: Optional[float] = None
        self.sent: Dict[str, float] = {}  # "SIGINT", "SIGKILL(group)" -> when
        # Its own CPU time (utime + stime, ticks) as last read from /proc while it ran or
        # lay unreaped: what the process cost the device (its reaped children excluded).
        self.cpu_ticks: Optional[int] = None

    @property
    def exit_code(self) -> Optional[int]:
        """The leader's exit status; negative: killed by that signal (as in subprocess)."""
        return self.popen.returncode

    def exited(self) -> bool:
        """True once the leader has exited (reaps it and notes when it was seen gone)."""
        if self.stopped_at is None:
            self._read_cpu()
            if self.popen.poll() is not None:
                self.stopped_at = time.time()
        return self.stopped_at is not None

    def _read_cpu(self) -> None:
        # A zombie's stat still holds its final times: read before reaping, the last
        # reading is exact.
        try:
            with open("/proc/%d/stat" % self.pid) as handle:
                found = read_target_stat(handle.read())
        except (OSError, ValueError):
            return
        if found is not None:
            self.cpu_ticks = found[1]

    @property
    def cpu_s(self) -> Optional[float]:
        return None if self.cpu_ticks is None else round(self.cpu_ticks / float(CLK_TCK), 3)

    def group_alive(self) -> bool:
        """Whether any live (non-zombie) process is left in the child's process group."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        if not self.exited():
            return True
        for pid in list_pids():
            info = read_stat(pid)
            if info is not None and info[2] == self.pid and not is_gone(info[0]):
                return True
        return False

    def send(self, sig: int, group: bool) -> None:
        """Send ``sig`` to the leader or to the whole group, once per (signal, scope)."""
        key = signal.Signals(sig).name + ("(group)" if group else "")
        if key not in self.sent:
            self.sent[key] = time.time()
            kill_quietly(self.pid, sig, group)

    def signals_sent(self) -> List[str]:
        return [key for key, _ in sorted(self.sent.items(), key=lambda item: item[1])]

    def stop_step(
        self, now: float, first: int, first_at: float, kill_at: float, group_first: bool
    ) -> bool:
        """One step of stopping: ``first`` at first_at, SIGKILL to the group at kill_at.

        A group whose leader is gone but which still has members (the command a profiler
        launched, a helper it forked) gets SIGTERM, then SIGKILL after TARGET_STOP_WAIT_S.
        Returns True while anything of the child is alive.
        """
        if not self.exited():
            if now >= kill_at:
                self.send(signal.SIGKILL, group=True)
            elif now >= first_at:
                self.send(first, group=group_first)
            return True
        if not self.group_alive():
            return False
        self.send(signal.SIGTERM, group=True)
        if now >= min(self.sent["SIGTERM(group)"] + TARGET_STOP_WAIT_S, kill_at):
            self.send(signal.SIGKILL, group=True)
        return True
