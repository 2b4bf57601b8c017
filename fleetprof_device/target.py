"""The session's target: a process to attach to (regex, pid, pidfile) or a command to launch
at T0, and how it ended.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Any, Callable, Dict, List, Optional

from .children import TARGET_STOP_WAIT_S, Child
from .clock import Clock
from .contract import PROBE_FILE
from .errors import TargetError
from .files import file_tail
from .flag_check import check_flags
from .inprogram import launch_env
from .module_check import check_modules
from .procfs import (
    ProcessRef,
    check_pid,
    find_by_regex,
    kill_quietly,
    list_pids,
    os_error_text,
    read_pidfile,
    read_stat,
    shorten,
)
from .runlog import RunnerLog
from .workload import with_metrics_file

END_TOLERANCE_S = 0.5  # a target ending this close to the deadline did not end early
LAUNCHED_CHILD_WAIT_S = 2.0  # via_profiler: how long to look for the target it started


class Target:
    """The process being profiled: found (attach), started by the runner, or by a profiler.

    In attach mode it is never signalled. A launched target starts at T0, in the same
    instant as the profilers (py-spy attaches to it with --pid; the runner stays its parent
    and knows its exit code); it is stopped at the deadline, or once every profiler has
    stopped if that is sooner: SIGTERM to its process group, SIGKILL 3 s later. One a
    profiler launched (via_profiler: nsys, ncu, py-spy where attaching is not allowed)
    shares that profiler's process group, so it alone gets SIGTERM, and the profiler sees
    it exit and writes its output; its exit code is unknown to the runner.

    A target with ``interrupt_s`` (a profiler runs inside it: ``python -m cProfile`` writes
    its profile on KeyboardInterrupt, not on SIGTERM) gets SIGINT first, like Ctrl-C on a
    terminal, and SIGTERM only ``interrupt_s`` later if it is still alive.
    """

    def __init__(
        self, spec: Dict[str, Any], log: RunnerLog, profilers: Optional[List[Dict[str, Any]]] = None
    ) -> None:
        self.spec = spec
        self.profilers = profilers or []  # the plan's: one may hook into the program
        self.log = log
        check_modules(spec, self.profilers, log)  # before T0: has the program memray?
        check_flags(self.profilers, log)  # before T0: does the device's nsys know --pytorch?
        self.mode: str = spec["mode"]
        self.via_profiler = self.mode == "launch" and bool(spec.get("via_profiler"))
        self.pid: Optional[int] = None
        self.cmdline: Optional[List[str]] = None
        self.ref: Optional[ProcessRef] = None  # attach, via_profiler
        self.child: Optional[Child] = None  # launched by the runner
        self.exit_code: Optional[int] = None  # known only for self.child
        self.exited_at: Optional[float] = None
        self.stopped_by_runner = False
        # Where the live target ran ("exe", "cwd": /proc links): after the window a
        # launched program is gone, and its hot lines' source is looked for there.
        self.seen: Dict[str, str] = {}
        interrupt = spec.get("interrupt_s")
        self.interrupt_s: Optional[float] = (
            float(interrupt) if self.mode == "launch" and interrupt is not None else None
        )

    def resolve(self) -> None:
        """Attach mode: find the process by regex, pid or pidfile (TargetError if not)."""
        spec = self.spec
        if spec.get("process") is not None:
            pid, argv = find_by_regex(spec["process"])
        elif spec.get("pid") is not None:
            pid = int(spec["pid"])
            argv = check_pid(pid)
        else:
            pid = read_pidfile(spec["pidfile"])
            argv = check_pid(pid, " from pidfile %s" % spec["pidfile"])
        self.ref = ProcessRef.of(pid)
        if self.ref is None:
            raise TargetError("pid %d exited while being resolved" % pid)
        self.pid, self.cmdline = pid, argv
        self.log("target: attach to pid %d: %s" % (pid, shorten(" ".join(argv), 200)))

    def environment(self, workdir: str) -> Dict[str, str]:
        """The launched program's environment whoever starts it (the runner, or a profiler
        that launches it: nsys, ncu, py-spy record, which pass theirs on): the runner's,
        the campaign's ``env`` over it, the workload metrics file's path (workload.py),
        the tracemalloc hook where it is planned."""
        env = dict(os.environ)
        env.update(self.spec.get("env") or {})
        return launch_env(with_metrics_file(env, workdir), self.profilers, workdir, self.log)

    def directory(self, workdir: str) -> str:
        """The launched program's working directory whoever starts it: the campaign's
        ``cwd``, else the session's workdir. A profiler that launches it starts there (its
        outputs are absolute paths into the workdir: the controller's plan makes them so)."""
        return str(self.spec.get("cwd") or workdir)

    def launch(self, spawn: Callable[..., Child], workdir: str) -> None:
        """Launch mode: start the command (argv, never a shell) in its own process group."""
        env = self.environment(workdir)
        argv = list(self.spec["command"])
        try:
            self.child = spawn("target", argv, self.directory(workdir), env)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            raise TargetError(
                "cannot start the target %s: %s" % (shorten(" ".join(argv)), os_error_text(exc))
            ) from None
        self.pid, self.cmdline = self.child.pid, argv
        self.log("target: launched pid %d: %s" % (self.pid, shorten(" ".join(argv), 200)))

    def adopt_child_of(self, launcher: Child, name: str) -> None:
        """via_profiler: the target is the launching profiler's (first) child."""
        self.cmdline = list(self.spec["command"])
        until = time.time() + LAUNCHED_CHILD_WAIT_S
        while time.time() < until and not launcher.exited():
            kids = [
                (info[3], pid)
                for pid, info in ((p, read_stat(p)) for p in list_pids())
                if info is not None and info[1] == launcher.pid
            ]
            if kids:
                self.pid = min(kids)[1]
                self.ref = ProcessRef.of(self.pid)
                self.log("target: pid %d, launched by %s" % (self.pid, name))
                return
            time.sleep(0.02)
        self.log("target: could not find the process %s launched" % name)

    def check(self) -> bool:
        """Whether the target has ended; notes when (and how) the first time it is seen."""
        if self.exited_at is not None:
            return True
        self._remember()
        if self.child is not None:
            if self.child.exited():
                self.exited_at, self.exit_code = self.child.stopped_at, self.child.exit_code
        elif self.ref is not None and not self.ref.alive():
            self.exited_at = time.time()
        if self.exited_at is not None:
            self.log(
                "target: exited%s"
                % (" with code %d" % self.exit_code if self.exit_code is not None else "")
            )
        return self.exited_at is not None

    def _remember(self) -> None:
        if self.pid is None:
            return
        for name in ("exe", "cwd"):
            with contextlib.suppress(OSError):
                self.seen[name] = os.readlink("/proc/%d/%s" % (self.pid, name))

    def stop_step(self, now: float, stop_from: float, kill_at: float) -> bool:
        """One step of stopping a launched target; True while it is alive."""
        if self.child is not None:
            if self.exited_at is None and not self.child.exited():
                self.stopped_by_runner = True
            if self.interrupt_s is not None and not self.child.exited() and now >= stop_from:
                self.child.send(signal.SIGINT, group=True)
                stop_from = min(stop_from + self.interrupt_s, kill_at)
            return self.child.stop_step(
                now,
                signal.SIGTERM,
                stop_from,
                min(kill_at, stop_from + TARGET_STOP_WAIT_S),
                group_first=True,
            )
        if self.via_profiler and self.ref is not None and self.ref.alive():
            if now >= kill_at:
                kill_quietly(self.ref.pid, signal.SIGKILL)
            elif now >= stop_from and not self.stopped_by_runner:
                self.stopped_by_runner = True
                kill_quietly(self.ref.pid, signal.SIGTERM)
            return True
        return False

    def ended_early(self, deadline: float) -> bool:
        return (
            self.exited_at is not None
            and not self.stopped_by_runner
            and self.exited_at < deadline - END_TOLERANCE_S
        )

    def finished(self) -> bool:
        """A launched program that ended by itself, not failing: exit code 0, or unknown
        (a profiler launched it). Its end is the end of a complete measurement."""
        return (
            self.mode == "launch"
            and self.exited_at is not None
            and not self.stopped_by_runner
            and self.exit_code in (0, None)
        )

    def entry(self, clock: Clock, workdir: str) -> Dict[str, Any]:
        entry: Dict[str, Any] = {
            "mode": self.mode,
            "pid": self.pid,
            "cmdline": self.cmdline,
            "exit_code": self.exit_code,
            "exited_at_device": self.exited_at,
            "exited_at_controller": clock.controller(self.exited_at),
            "exited_early": self.ended_early(clock.deadline),
            "stopped_by_runner": self.stopped_by_runner,
            "ended_by_itself": self.exited_at is not None and not self.stopped_by_runner,
            "exit_code_known": self.child is not None and self.exit_code is not None,
        }
        if self.mode == "attach":
            entry["selector"] = dict(
                (k, self.spec[k])
                for k in ("process", "pid", "pidfile")
                if self.spec.get(k) is not None
            )
        elif self.mode == "probe":
            entry["probe"] = list(self.spec.get("probe") or [])
            entry["probe_file"] = PROBE_FILE
        else:
            entry["via_profiler"] = self.via_profiler
        if self.child is not None:
            entry["started_at_device"] = self.child.started_at
            entry["started_at_controller"] = clock.controller(self.child.started_at)
            entry["stderr_tail"] = file_tail(os.path.join(workdir, "target.stderr"))
        return entry
