"""One planned profiler: its argv, its process (restarted while a launched target is too
young to attach to), its stop, its outputs and what its entry in the manifest says.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from typing import Any, Callable, Dict, List, Optional, Union

from .checksums import ToolHashes
from .children import Child
from .clock import Clock
from .contract import OPEN_FILES, TRACEMALLOC
from .files import LOG_CAP_BYTES, cap_output, file_tail, keep_tail, last_line, post_problems
from .inprogram import HookWatch
from .procfs import os_error_text
from .pyspy_output import sampling_quality
from .runlog import RunnerLog
from .samplers import Sampler

STOP_POLL_S = 0.05


class ProfilerRun:
    """One profiler of the plan: its argv, its process, and what it left behind."""

    def __init__(self, spec: Dict[str, Any]) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.argv: List[str] = list(spec.get("argv") or [])
        self.child: Optional[Child] = None
        self.error: Optional[str] = None  # why it was not started
        self.builtin: Optional[str] = spec.get("builtin")
        self.sampler: Optional[Union[Sampler, HookWatch]] = None
        self.post: List[Dict[str, Any]] = []  # its post_argv steps, as they ran
        self.discarded: List[str] = []
        self.tool_check: Optional[Dict[str, Any]] = None  # the plan's tool_sha256
        self.cut_short: Optional[str] = None  # stopped early by the runner: why
        self.ended_with_target = False  # still running when the launched program ended
        self.attach_tries = 0  # started again after giving up on a starting program
        # in_target: it runs inside the launched target (cProfile), no process of its own;
        # the target's process, once the runner launched it.
        self.in_target = bool(spec.get("in_target"))
        self.inside: Optional[Child] = None

    @property
    def planned(self) -> bool:
        return bool(self.spec["status"] == "planned")

    def active(self) -> bool:
        """Whether it is still at work: its process running or its sampler sampling."""
        if self.sampler is not None:
            return self.sampler.alive()
        if self.inside is not None:
            return not self.inside.exited()
        return self.child is not None and not self.child.exited()

    @property
    def started(self) -> bool:
        return self.child is not None or self.sampler is not None or self.inside is not None

    def start_sampler(
        self,
        workdir: str,
        pid: Optional[int],
        deadline: float,
        log: RunnerLog,
        program: Optional[Child] = None,
    ) -> None:
        """A builtin: the runner samples /proc itself, in a thread, until the deadline
        (tracemalloc: the launched ``program`` samples itself)."""
        if self.builtin in ("memory", OPEN_FILES) and pid is None:
            self.error = "the target's pid is unknown: no %s series to sample" % self.builtin
            log("%s: not started: %s" % (self.name, self.error))
            return
        options = self.spec.get("options") or {}
        interval = float(options.get("interval_s", 1.0))
        if self.builtin == TRACEMALLOC:  # the program samples itself (inprogram.py)
            self.sampler = HookWatch(workdir, interval, int(self.spec["max_bytes"]))
            self.sampler.start(pid, program)
            log("%s: the program snapshots itself every %g s" % (self.name, interval))
            return
        output = os.path.join(workdir, self.spec["outputs"][0])
        self.sampler = Sampler(
            str(self.builtin),
            output,
            interval,
            int(self.spec["max_bytes"]),
            deadline,
            log,
            options,
        )
        self.sampler.start(pid)
        log(
            "%s: sampling every %g s%s"
            % (self.name, interval, " (target pid %d)" % pid if pid else "")
        )

    def check_tool(self, hashes: ToolHashes, log: RunnerLog) -> bool:
        """Whether argv[0] may run: the plan pins the sha256 of a tool it pushed (py-spy);
        a binary that differs (damaged, replaced) is not run."""
        expected = self.spec.get("tool_sha256")
        if not expected or not self.argv:
            return True
        problem, found = hashes.problem(self.argv[0], expected)
        self.tool_check = {
            "path": self.argv[0],
            "expected": expected.lower(),
            "sha256": found,
            "ok": problem is None,
        }
        if problem is not None:
            self.error = problem
            log("%s: not started: %s" % (self.name, problem))
            return False
        return True

    def start(
        self,
        spawn: Callable[..., Child],
        cwd: str,
        pid: Optional[int],
        log: RunnerLog,
        hashes: Optional[ToolHashes] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> None:
        """Start it with ``{pid}`` argv elements replaced; nothing else is substituted.
        A tool whose sha256 the plan pins is checked just before (see check_tool).
        ``cwd``: the workdir, or a launcher's: the program's directory, which it passes on.
        ``env``: its environment (a launcher's: the program's, which it passes on)."""
        if not self.check_tool(hashes or ToolHashes(), log):
            return
        if "{pid}" in self.argv:
            if pid is None:
                self.error = "its argv needs {pid} but the target's pid is unknown"
                log("%s: not started: %s" % (self.name, self.error))
                return
            self.argv = [str(pid) if arg == "{pid}" else arg for arg in self.argv]
        try:
            self.child = spawn(self.name, self.argv, cwd, env)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            self.error = "cannot start %s: %s" % (self.argv[0], os_error_text(exc))
            log("%s: %s" % (self.name, self.error))
            return
        log("%s: started pid %d: %s" % (self.name, self.child.pid, " ".join(self.argv)))

    def entry(
        self,
        workdir: str,
        clock: Clock,
        session_failure: Optional[str],
        watchdog_fired: bool,
        log: RunnerLog,
        busy: Optional[str] = None,
    ) -> Dict[str, Any]:
        """The manifest's view of this profiler (caps its outputs and logs on the way).
        ``busy``: another session held a lock this one needed; nothing was started."""
        entry: Dict[str, Any] = {
            "status": "skipped",
            "reason": self.spec.get("reason"),
            "argv": self.argv,
            "exit_code": None,
            "started_at_device": None,
            "stopped_at_device": None,
            "started_at_controller": None,
            "stopped_at_controller": None,
            "stderr_tail": "",
            "stdout_tail": "",
            "outputs": {},
            "signals_sent": [],
        }
        if not self.planned:
            return entry
        if busy is not None:
            entry["reason"] = "not started: " + busy
            return entry
        if self.tool_check is not None:
            entry["tool_check"] = self.tool_check
        if self.builtin is not None:
            return self._sampler_entry(entry, workdir, clock, session_failure, log)
        if self.in_target:
            return self._inside_entry(entry, workdir, clock, session_failure, log)
        child = self.child
        if child is None:
            return self._not_started(entry, session_failure)
        stdout = os.path.join(workdir, self.name + ".stdout")
        stderr = os.path.join(workdir, self.name + ".stderr")
        ran_s = child.stopped_at - child.started_at if child.stopped_at else None
        entry.update(
            exit_code=child.exit_code,
            started_at_device=child.started_at,
            stopped_at_device=child.stopped_at,
            started_at_controller=clock.controller(child.started_at),
            stopped_at_controller=clock.controller(child.stopped_at),
            stderr_tail=file_tail(stderr),
            stdout_tail=file_tail(stdout),
            signals_sent=self._signals_sent(watchdog_fired),
            data_quality=sampling_quality([stdout, stderr], self.argv, ran_s),
            cpu_s=child.cpu_s,
        )
        if self.attach_tries:
            entry["attach_tries"] = self.attach_tries + 1
        for path in (stdout, stderr):
            if keep_tail(path):
                log(
                    "%s: kept the last %d bytes of %s"
                    % (self.name, LOG_CAP_BYTES, os.path.basename(path))
                )
        problems = self._collect_outputs(workdir, entry["outputs"], log)
        if self.cut_short:
            problems.append(self.cut_short)
        ending = self._ending(entry["signals_sent"])
        if ending and not (
            self.ended_with_target
            and self.child is not None
            and self.child.exit_code in (-signal.SIGINT, -signal.SIGTERM, 130, 143)
        ):
            problems.append(ending)  # not when told to stop because the program had ended
        hint = last_line(entry["stderr_tail"], entry["stdout_tail"])
        return self._settle(entry, problems, "said: " + hint if hint else None)

    def _not_started(self, entry: Dict[str, Any], why: Optional[str]) -> Dict[str, Any]:
        entry.update(status="failed", reason=self.error or "not started: %s" % (why or "unknown"))
        return entry

    def _settle(
        self,
        entry: Dict[str, Any],
        problems: List[str],
        said: Optional[str] = None,
        failed_when: Optional[bool] = None,
    ) -> Dict[str, Any]:
        """The entry's status: its post steps' problems added, ``failed`` (with ``said``)
        when no output has a byte (or ``failed_when``, where given: a sampler's test),
        ``partial`` with problems, else ``ok``. A builtin sampler has no post steps (they
        follow a profiler's process, which it has not)."""
        if self.spec.get("post_argv") and self.builtin is None:
            entry["post"] = self.post
            entry["discarded"] = self.discarded
            problems.extend(post_problems(self.post))
        if failed_when is None:
            failed_when = not any(info["bytes"] > 0 for info in entry["outputs"].values())
        if failed_when:
            entry["status"] = "failed"
            entry["reason"] = "; ".join(problems + ([said] if said else []))
        elif problems:
            entry["status"], entry["reason"] = "partial", "; ".join(problems)
        else:
            entry["status"], entry["reason"] = "ok", None
        return entry

    def _sampler_entry(
        self,
        entry: Dict[str, Any],
        workdir: str,
        clock: Clock,
        session_failure: Optional[str],
        log: RunnerLog,
    ) -> Dict[str, Any]:
        """ok once it sampled and its output exists; partial when it cut or broke off."""
        sampler = self.sampler
        if sampler is None:
            return self._not_started(entry, session_failure)
        entry.update(
            argv=[],
            builtin=self.builtin,
            started_at_device=sampler.started_at,
            stopped_at_device=sampler.stopped_at,
            started_at_controller=clock.controller(sampler.started_at),
            stopped_at_controller=clock.controller(sampler.stopped_at),
            data_quality=sampler.quality(),
            cpu_s=sampler.cpu_s,
        )
        problems = self._collect_outputs(workdir, entry["outputs"], log)
        if sampler.dropped:
            name = self.spec["outputs"][0]
            if name in entry["outputs"]:
                entry["outputs"][name]["truncated"] = True
            problems.append(
                "output reached max_bytes (%d): %d samples not written"
                % (int(self.spec["max_bytes"]), sampler.dropped)
            )
        if sampler.error:
            problems.append(sampler.error)
        if self.cut_short:
            problems.append(self.cut_short)
        if sampler.alive():
            problems.append("the sampler did not stop")
        said = None if problems else "no sample was taken"
        return self._settle(entry, problems, said, failed_when=sampler.samples == 0)

    def _inside_entry(
        self,
        entry: Dict[str, Any],
        workdir: str,
        clock: Clock,
        session_failure: Optional[str],
        log: RunnerLog,
    ) -> Dict[str, Any]:
        """In the target: ok when its outputs were written; what the target said otherwise
        (a Python without the module, a program that would not stop on SIGINT)."""
        inside = self.inside
        if inside is None:
            return self._not_started(entry, session_failure or "the target was not launched")
        entry.update(
            in_target=True,
            exit_code=inside.exit_code,
            started_at_device=inside.started_at,
            stopped_at_device=inside.stopped_at,
            started_at_controller=clock.controller(inside.started_at),
            stopped_at_controller=clock.controller(inside.stopped_at),
            signals_sent=inside.signals_sent(),
        )
        problems = self._collect_outputs(workdir, entry["outputs"], log)
        said = last_line(file_tail(os.path.join(workdir, "target.stderr")))
        if said and any(p.endswith("was not written") for p in problems):
            problems.append("the target said: " + said)
        if any(s.startswith("SIGTERM") or s.startswith("SIGKILL") for s in inside.sent):
            problems.append(
                "the target did not end on SIGINT: it was stopped with %s, so the profile "
                "may not have been written" % ", ".join(inside.signals_sent()[1:])
            )
        return self._settle(entry, problems)

    def _signals_sent(self, watchdog_fired: bool) -> List[str]:
        assert self.child is not None
        sent = self.child.signals_sent()
        # The watchdog's handler records nothing (it may interrupt anything): a child that
        # died of SIGKILL the stop loop never sent was killed by the watchdog.
        if (
            watchdog_fired
            and self.child.exit_code == -signal.SIGKILL
            and not any(s.startswith("SIGKILL") for s in sent)
        ):
            sent.append("SIGKILL(watchdog)")
        return sent

    def _ending(self, signals_sent: List[str]) -> Optional[str]:
        """How it ended, when that was not a clean exit 0."""
        assert self.child is not None
        code = self.child.exit_code
        if code is None:
            return "did not exit"
        if code > 0:
            return "exit code %d" % code
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "signal %d" % -code
            by_runner = any(sent.split("(")[0] == name for sent in signals_sent)
            return "killed by %s%s" % (name, " (sent by the runner)" if by_runner else "")
        return None

    def _collect_outputs(self, workdir: str, outputs: Dict[str, Any], log: RunnerLog) -> List[str]:
        """Size (and cap) each declared output; the problems found, one phrase each."""
        problems: List[str] = []
        for name in self.spec.get("outputs") or []:
            path = os.path.join(workdir, name)
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    problems.append("output '%s' is not a regular file" % name)
                    continue
                size, before = cap_output(path, int(self.spec["max_bytes"]))
            except FileNotFoundError:
                # A post step that may fail (another tool version's report name) leaves
                # its output missing by design.
                if name not in ((self.spec.get("options") or {}).get("optional_outputs") or []):
                    problems.append("output '%s' was not written" % name)
                continue
            except OSError as exc:
                problems.append("output '%s' unreadable: %s" % (name, os_error_text(exc)))
                continue
            outputs[name] = {"bytes": size, "truncated": size < before}
            if size < before:
                outputs[name]["original_bytes"] = before
                problems.append("output '%s' truncated to %d bytes (was %d)" % (name, size, before))
                log("%s: truncated %s to %d bytes (was %d)" % (self.name, name, size, before))
            elif size == 0:
                problems.append("output '%s' is empty" % name)
        return problems
