"""One session's timeline: resolve the target, wait for T0, start the target and every
profiler, watch the window, stop everything by the deadline; then its manifest.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import time
from typing import Any, Dict, List, Optional, Tuple

from .checksums import ToolHashes
from .children import Child
from .clock import Clock
from .contract import MANIFEST_SCHEMA, RUNNER_VERSION
from .dirs import DiskFloor
from .errors import BusyError, TargetError
from .files import file_tail, keep_tail, last_line
from .locks import SessionLock, lock_holder, target_lock_path
from .outcome import outcome
from .postwindow import post_process
from .probe import Probe
from .procfs import kill_quietly, os_error_text, shorten
from .profilers import STOP_POLL_S, ProfilerRun
from .runlog import RunnerLog
from .target import Target
from .workload import MetricsFile

WARMUP_S = 1.0  # resolve an attach target this long before T0 (a launch target starts at T0)
SIGINT_AFTER_S = 2.0  # profilers still running this long after the deadline get SIGINT
ABORT_WAIT_S = 3.0  # once the runner is told to stop: how long profilers get to write
TARGET_END_WAIT_S = 2.0  # a launched target ended: how long profilers get to stop by themselves
# A profiler attaching by pid to a program just launched gives up if it is not Python yet
# (py-spy: after about 0.5 s; a wrapper script that execs Python later): it is started
# again, this many times at most, while the program is this young.
ATTACH_TRIES = 5
ATTACH_RETRY_S = 5.0
WINDOW_POLL_S = 0.1
# The disk floor: free space of the workdir's filesystem is checked this often in the window.
DISK_CHECK_S = 1.0


class Session:
    """One session's timeline: target, T0, profilers, window, stop; then its manifest."""

    def __init__(self, plan: Dict[str, Any], log: RunnerLog) -> None:
        self.plan = plan
        self.log = log
        self.workdir: str = plan["workdir"]
        self.clock = Clock(plan)
        self.target = Target(plan["target"], log, plan["profilers"])
        self.disk = DiskFloor(self.workdir, plan.get("min_free_mb"))
        self.probe: Optional[Probe] = (
            Probe(plan["target"], self.workdir, log, self.disk.floor_mb)
            if self.target.mode == "probe"
            else None
        )
        self.profilers = [ProfilerRun(p) for p in plan["profilers"]]
        self.workload = MetricsFile(self.workdir) if self.target.mode == "launch" else None
        self.children: List[Child] = []  # everything started, for the watchdog
        self.failure: Optional[str] = None  # why the session could not run
        self.runner_error: Optional[str] = None  # a runner bug, caught
        self.abort: Optional[Tuple[str, float]] = None  # (signal, when) told to stop
        self.watchdog_fired_at: Optional[float] = None
        self.late_by_s: Optional[float] = None
        # When and why the measurement ended: "deadline", "target finished" (a launched
        # program ended by itself, code 0 or unknown), "target failed", "target exited"
        # (attach), "profilers stopped", "probe finished", "disk floor", "stopped by SIG...".
        self.window_end: Optional[Tuple[float, str]] = None
        self.launcher: Optional[ProfilerRun] = None  # via_profiler: the one that started it
        self.started_at: Optional[float] = None
        self.stopped_at: Optional[float] = None
        self.stopped = False
        self.busy: Optional[BusyError] = None  # another session holds a lock
        self.host_lock: Optional[str] = None  # its path; main() holds it
        self.target_lock: Optional[SessionLock] = None
        self.target_lock_path: Optional[str] = None
        self.disk_stop: Optional[Tuple[str, float]] = None  # (reason, when)
        self.hashes = ToolHashes()
        launchers = [p for p in self.profilers if p.planned and p.spec.get("launch_argv")]
        if (
            self.target.via_profiler
            and not launchers
            and any(p.planned and p.builtin for p in self.profilers)
        ):
            # Only built-in samplers, which need no ptrace: the runner launches the target.
            self.target.via_profiler = False

    # ------------------------------------------------------------------ guards

    def install_guards(self) -> None:
        """SIGTERM/SIGINT/SIGHUP end the session early; SIGALRM is the hard-deadline watchdog."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGALRM, self._on_watchdog)
        signal.setitimer(signal.ITIMER_REAL, max(0.01, self.clock.hard_deadline - time.time()))

    @staticmethod
    def disarm_watchdog() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    # Handlers run between two bytecodes of the main thread: they set flags and send
    # signals, and touch no structure the interrupted code may be walking.

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        if self.abort is None:
            self.abort = (signal.Signals(signum).name, time.time())
        else:  # told twice: no more waiting
            self.kill_everything()

    def _on_watchdog(self, _signum: int, _frame: Any) -> None:
        self.watchdog_fired_at = time.time()
        self.kill_everything()

    def stop_samplers(self) -> None:
        ended = self.window_end is not None and self.window_end[1].startswith("target ")
        for prof in self.profilers:
            if prof.sampler is not None:
                prof.sampler.stop(
                    final_sample=self.disk_stop is None,
                    reason="target exited" if ended else "stopped",
                )

    def kill_everything(self) -> None:
        for child in tuple(self.children):
            kill_quietly(child.pid, signal.SIGKILL, group=True)

    def _spawn(
        self, label: str, argv: List[str], cwd: str, env: Optional[Dict[str, str]] = None
    ) -> Child:
        child = Child(
            argv,
            cwd,
            os.path.join(self.workdir, label + ".stdout"),
            os.path.join(self.workdir, label + ".stderr"),
            env,
        )
        self.children.append(child)
        return child

    # ------------------------------------------------------------------ timeline

    def run(self) -> None:
        try:
            self._run_steps()
        finally:
            self.stop_everything()
            if self.workload is not None:
                self.workload.enforce()
        # After the window (postwindow.py): post steps, discarded files, hot lines' text.
        post_process(
            self.profilers,
            self.target,
            self.workdir,
            self.clock.hard_deadline,
            self._spawn,
            lambda: self.abort is not None,
            self.log,
            self._disk_full,
        )

    def _run_steps(self) -> None:
        clock, target = self.clock, self.target
        if self.busy is not None:
            return
        if self.probe is None and not any(p.planned for p in self.profilers):
            self._fail(
                "no profiler was planned (%s)"
                % "; ".join("%s: %s" % (p.name, p.spec.get("reason")) for p in self.profilers)
            )
            return
        if time.time() >= clock.deadline:
            self._fail(
                "the session window had closed when the runner started "
                "(deadline passed %.1f s ago)" % (time.time() - clock.deadline)
            )
            return
        if not self._enough_disk():
            return
        if self.probe is not None:
            self.probe.serve()  # the others' network peer: listening before their T0
        if not self._wait_until(clock.t0 - WARMUP_S):
            return
        try:
            if target.mode == "attach":
                target.resolve()
                if not self._lock_target():
                    return
        except TargetError as exc:
            self._fail(str(exc))
            return
        self._hash_tools()
        if not self._wait_until(clock.t0):
            return
        self.late_by_s = round(max(0.0, time.time() - clock.t0), 3)
        if self.late_by_s > 0.05:
            self.log("late: starting %.3f s after T0" % self.late_by_s)
        if not self._enough_disk():
            return
        if target.mode == "launch" and not target.via_profiler:
            # At T0, the profilers right after it: the profile starts with the program.
            try:
                target.launch(self._spawn, self.workdir, clock.deadline)
            except TargetError as exc:
                self._fail(str(exc))
                return
        elif target.check():
            code = target.exit_code
            self._fail(
                "target pid %s exited before T0%s"
                % (target.pid, " with code %d" % code if code is not None else "")
            )
            return
        self._start_profilers()
        if self.probe is not None and self.failure is None:
            # The benchmarks run here, in the main thread, from T0; samplers run alongside.
            if self.started_at is None:
                self.started_at = time.time()
            try:
                self.probe.run(self._spawn, clock.deadline, lambda: self.abort is not None)
            finally:  # its workers have exited: nothing left for the watchdog to kill
                self.children = [c for c in self.children if c not in self.probe.children]
        if any(p.started for p in self.profilers):
            self._watch_window()
        elif self.probe is not None and self.failure is None:
            now = time.time()
            self.window_end = (
                min(now, clock.deadline),
                "deadline" if now >= clock.deadline else "probe finished",
            )

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self.log("failed: " + reason)

    def set_busy(self, busy: BusyError) -> None:
        self.busy = busy
        self.log(busy.reason + ": nothing was started")

    def _lock_target(self) -> bool:
        """One ptrace sampler per process: lock the resolved target for this session, in
        the directory every user shares; False (busy or failed) when it cannot be had."""
        ref = self.target.ref
        assert ref is not None
        path = target_lock_path(ref.pid, ref.starttime)
        self.target_lock_path = path
        what = "target pid %d (lock %s)" % (ref.pid, path)
        try:
            self.target_lock = SessionLock.acquire(
                path, what, lock_holder(self.plan, private=False), shared=True
            )
        except BusyError as exc:
            self.set_busy(exc)
            return False
        except OSError as exc:
            self._fail("cannot lock target pid %d (%s): %s" % (ref.pid, path, os_error_text(exc)))
            return False
        self.log("lock: holding %s" % path)
        return True

    def release_target(self) -> None:
        if self.target_lock is not None:
            self.target_lock.release(unlink=True)
            self.target_lock = None

    def _hash_tools(self) -> None:
        """Hash the pinned tools now, before T0, so checking them at spawn time is quick."""
        for prof in self.profilers:
            if prof.planned and prof.spec.get("tool_sha256"):
                for argv in (prof.spec.get("argv"), prof.spec.get("launch_argv")):
                    if argv:
                        with contextlib.suppress(OSError):
                            self.hashes.digest(argv[0])

    def _enough_disk(self) -> bool:
        """False (the session failed, nothing more starts) when free space is below the floor."""
        free = self.disk.below()
        if free is None:
            return True
        self._fail(self.disk.too_little(free) + ": nothing was started")
        return False

    def _disk_full(self) -> Optional[str]:
        free = self.disk.below()
        return None if free is None else self.disk.too_little(free)

    def _check_disk_in_window(self) -> bool:
        """True when free space fell below the floor: every profiler is to stop now."""
        free = self.disk.below()
        if free is None:
            return False
        now = time.time()
        reason = self.disk.fell(free)
        self.disk.fell_below_at = now
        self.disk_stop = (reason, now)
        for prof in self.profilers:
            if prof.active():
                prof.cut_short = "stopped at %s: free space below the floor" % (
                    self.clock.since_t0(now)
                )
        self.log("disk: %s: stopping every profiler" % reason)
        return True

    def _wait_until(self, when: float) -> bool:
        """Sleep until ``when`` on the device clock; False when told to stop meanwhile."""
        while self.abort is None:
            remaining = when - time.time()
            if remaining <= 0:
                return True
            time.sleep(min(remaining, 0.25))  # re-read the clock: NTP may step it
        self._fail("runner stopped by %s before T0" % self.abort[0])
        return False

    def _start_profilers(self) -> None:
        self.started_at = time.time()
        planned = [p for p in self.profilers if p.planned]
        for prof in self.profilers:
            if not prof.planned:
                self.log("%s: skipped: %s" % (prof.name, prof.spec.get("reason")))
        if self.target.via_profiler:
            launcher = next((p for p in planned if p.spec.get("launch_argv")), None)
            if launcher is None:
                self._fail("via_profiler is set but no planned profiler has a launch_argv")
                return
            launcher.argv = list(launcher.spec["launch_argv"])
            self.launcher = launcher
            # It starts the program: the program's environment and directory.
            env = self.target.environment(self.workdir)
            cwd = self.target.directory(self.workdir)
            launcher.start(self._spawn, cwd, None, self.log, self.hashes, env)
            if launcher.child is not None:
                self.target.adopt_child_of(launcher.child, launcher.name)
            planned.remove(launcher)
        for prof in planned:
            if prof.in_target:  # inside the program the runner launched (cProfile)
                prof.inside = self.target.child
            elif prof.builtin is None:
                prof.start(self._spawn, self.workdir, self.target.pid, self.log, self.hashes)
        # Threads only now: every process of the session has been spawned.
        for prof in planned:
            if prof.builtin is not None:
                prof.start_sampler(
                    self.workdir, self.target.pid, self.clock.deadline, self.log, self.target.child
                )

    def _watch_window(self) -> None:
        self.log("window: profiling until the deadline")
        disk_at = time.time() + DISK_CHECK_S
        target = self.target
        while self.abort is None:
            now = time.time()
            if now >= self.clock.deadline:
                self.window_end = (self.clock.deadline, "deadline")
                break
            if now >= disk_at:
                disk_at = now + DISK_CHECK_S
                if self.workload is not None:
                    self.workload.enforce()
                if self._check_disk_in_window():
                    self.window_end = (now, "disk floor")
                    break
            if target.child is not None:
                self._attach_again(now)
            if target.check() and target.mode == "launch" and target.exited_at is not None:
                # The program is the measurement: its end ends the window, complete when
                # it ended by itself without failing.
                ended = target.exited_at
                why = "target finished" if target.finished() else "target failed"
                self.window_end = (ended, why)
                self.log("window: %s at %s" % (why, self.clock.since_t0(ended)))
                for prof in self.profilers:
                    if prof is not self.launcher and prof.active():
                        prof.ended_with_target = True
                break
            if not any(p.active() for p in self.profilers):
                self.log("window: every profiler stopped before the deadline")
                gone = target.exited_at
                self.window_end = (
                    (gone, "target exited") if gone is not None else (now, "profilers stopped")
                )
                break
            time.sleep(min(WINDOW_POLL_S, max(0.0, self.clock.deadline - now)))
        if self.window_end is None and self.abort is not None:
            self.window_end = (self.abort[1], "stopped by " + self.abort[0])
        target.check()

    def _attach_again(self, now: float) -> None:
        """A profiler that attaches by pid (py-spy) to the program the runner just
        launched, and gave up while it was starting (not Python yet: a wrapper that execs
        Python later, a slow start), is started again while the program is young."""
        target = self.target
        for prof in self.profilers:
            child = prof.child
            if (
                child is None
                or "{pid}" not in (prof.spec.get("argv") or [])
                or prof.attach_tries >= ATTACH_TRIES
                or not child.exited()
                or child.exit_code == 0
                or target.check()
                or now - (target.child.started_at if target.child else now) > ATTACH_RETRY_S
            ):
                continue
            prof.attach_tries += 1
            text = file_tail(os.path.join(self.workdir, prof.name + ".stderr"))
            said = last_line(
                "\n".join(line for line in text.splitlines() if line.startswith("Error")), text
            )
            self.log(
                "%s: exited with code %s at %s while the program started%s: starting it "
                "again"
                % (
                    prof.name,
                    child.exit_code,
                    self.clock.since_t0(now),
                    " (said: %s)" % said if said else "",
                )
            )
            prof.start(self._spawn, self.workdir, target.pid, self.log, self.hashes)

    def stop_everything(self) -> None:
        """Stop the launched target and the profilers; nothing is left at deadline + grace.

        Profilers get until deadline + 2 s to stop by themselves (py-spy has --duration),
        then SIGINT (py-spy writes its output on SIGINT), then SIGKILL to their process
        group at deadline + grace; one that stops at the deadline (strace) gets its SIGINT
        at the deadline. A launched target gets SIGTERM now, SIGKILL 3 s later.
        Told to stop (SIGTERM to the runner), or free space below the floor, all of it
        happens at once, within 3 s.
        """
        if self.stopped:
            return
        self.stopped = True
        clock = self.clock
        self.stop_samplers()  # before the target is stopped: a last sample of it alive
        sigint_at = clock.deadline + min(SIGINT_AFTER_S, clock.grace / 2.0)
        stop_from = time.time()
        if self.children:
            self.log("stop: stopping what the runner started")
        ended = (
            self.window_end[0]
            if self.window_end
            and self.window_end[1].startswith("target ")
            and self.target.mode == "launch"
            else None
        )
        while True:
            now = time.time()
            kill_at = clock.hard_deadline
            for early in (self.abort, self.disk_stop):
                if early is not None:
                    sigint_at = min(sigint_at, early[1])
                    kill_at = min(kill_at, early[1] + ABORT_WAIT_S)
            self.target.check()
            busy = self.target.stop_step(now, stop_from, kill_at)
            for prof in self.profilers:
                if prof.child is None:
                    continue
                first_at, last_at = sigint_at, kill_at
                if prof.stops_at_deadline:
                    first_at = min(first_at, clock.deadline)
                if ended is not None and prof is not self.launcher:
                    # The launched program ended: py-spy --pid stops by itself; a
                    # system-wide sampler is told to. The launcher (nsys writing its
                    # report) keeps the deadline's schedule.
                    first_at = min(first_at, ended + TARGET_END_WAIT_S)
                    last_at = min(last_at, first_at + ABORT_WAIT_S)
                busy = (
                    prof.child.stop_step(now, signal.SIGINT, first_at, last_at, group_first=False)
                    or busy
                )
            if not busy:
                break
            if now >= kill_at + 2.0:
                self.log("stop: some processes survived SIGKILL; giving up waiting")
                break
            time.sleep(STOP_POLL_S)
        self.target.check()
        self.kill_everything()  # a last sweep: nothing the runner started outlives it
        if self.started_at is not None:
            stops = [p.child.stopped_at or time.time() for p in self.profilers if p.child]
            stops += [p.sampler.stopped_at or time.time() for p in self.profilers if p.sampler]
            self.stopped_at = max(stops) if stops else time.time()
        if self.watchdog_fired_at is not None:
            self.log("watchdog: hard deadline reached, killed every process group left")
        if self.children:
            self.log("stop: done")

    # ------------------------------------------------------------------ results

    def manifest(self) -> Dict[str, Any]:
        """The manifest (fleetprof.manifest/1). Call once: it caps outputs and logs."""
        clock = self.clock
        busy = self.busy.reason if self.busy is not None else None
        profilers = dict(
            (
                p.name,
                p.entry(
                    self.workdir,
                    clock,
                    self.failure,
                    self.watchdog_fired_at is not None,
                    self.log,
                    busy,
                ),
            )
            for p in self.profilers
        )
        if self.target.child is not None:
            for name in ("target.stdout", "target.stderr"):
                keep_tail(os.path.join(self.workdir, name))
        status, reason = outcome(self, profilers)
        plan = self.plan
        return {
            "schema": MANIFEST_SCHEMA,
            "campaign": plan["campaign"],
            "run_id": plan["run_id"],
            "host": plan["host"],
            "status": status,
            "reason": shorten(reason, 1000) if reason else None,
            "clock_offset_s": clock.offset,
            "t0_device": clock.t0,
            "deadline_device": clock.deadline,
            "grace_s": clock.grace,
            "started_at_device": self.started_at,
            "started_at_controller": clock.controller(self.started_at),
            "stopped_at_device": self.stopped_at,
            "stopped_at_controller": clock.controller(self.stopped_at),
            "late_by_s": self.late_by_s,
            "window": {
                "started_at_device": self.started_at,
                "ended_at_device": self.window_end[0] if self.window_end else None,
                "ended_by": self.window_end[1] if self.window_end else None,
            },
            "target": self.target.entry(clock, self.workdir),
            "workload_metrics": self.workload.entry() if self.workload is not None else None,
            "profilers": profilers,
            "locks": {"host": self.host_lock, "target": self.target_lock_path},
            "busy": None
            if self.busy is None
            else {"lock": self.busy.path, "holder": self.busy.holder},
            "disk": self.disk.entry(clock),
            "runner": {
                "python": platform.python_version(),
                "pid": os.getpid(),
                "version": RUNNER_VERSION,
                "stopped_by_signal": self.abort[0] if self.abort else None,
                "watchdog_fired_at_device": self.watchdog_fired_at,
            },
        }
