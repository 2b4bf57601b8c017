"""After the window: each started profiler's post steps (its plan's ``post_argv``, run
once it has stopped, bounded by deadline + grace), its discarded files, and the hot lines'
source text (source_lines.py); then the runner packs the workdir (runner.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from .children import Child
from .contract import DEVICE_PACKAGE_ARG, DEVICE_PYTHON_ARG
from .dirs import PACKAGE_ROOT
from .files import file_tail, keep_tail, last_line
from .procfs import os_error_text
from .profilers import STOP_POLL_S, ProfilerRun
from .runlog import RunnerLog
from .source_lines import after_window
from .target import Target


def post_process(
    profilers: List[ProfilerRun],
    target: Target,
    workdir: str,
    kill_at: float,
    spawn: Callable[..., Child],
    stopping: Callable[[], bool],
    log: RunnerLog,
    blocked: Callable[[], Optional[str]],
) -> None:
    """After everything stopped: each started profiler's post_argv (killed at ``kill_at``,
    the hard deadline; the watchdog as well), its discarded files, hot lines' text."""
    for prof in profilers:
        if prof.child is None and prof.inside is None:
            continue
        if prof.spec.get("post_argv"):
            run_post(prof, spawn, workdir, kill_at, stopping, log, blocked)
        discard_files(prof, workdir, log)
    after_window(profilers, target, workdir, kill_at, log)


def _substitute(arg: str) -> str:
    if arg == DEVICE_PACKAGE_ARG:
        return PACKAGE_ROOT
    if arg == DEVICE_PYTHON_ARG and sys.executable:
        return sys.executable
    return arg


def run_post(
    prof: ProfilerRun,
    spawn: Callable[..., Child],
    workdir: str,
    kill_at: float,
    stopping: Callable[[], bool],
    log: RunnerLog,
    blocked: Callable[[], Optional[str]] = lambda: None,
) -> None:
    """Its post_argv, in order, once it has stopped: each a process of its own (cwd
    workdir, output to <name>.post<i>.stdout/.stderr), killed at ``kill_at``. A step in
    options.post_fallback runs only when the step before it failed (another version of
    the tool, say); it is ``not-needed`` otherwise. Only DEVICE_PACKAGE_ARG (the path of
    this device package: its zipapp, or checkout) and DEVICE_PYTHON_ARG (the runner's own
    interpreter) are substituted in argv.
    ``blocked`` says why no further step may start (free space below the floor)."""
    fallback = set((prof.spec.get("options") or {}).get("post_fallback") or [])
    for index, argv in enumerate(prof.spec.get("post_argv") or []):
        argv = [_substitute(arg) for arg in argv]
        step: Dict[str, Any] = {
            "argv": list(argv),
            "status": "not-needed",
            "reason": None,
            "exit_code": None,
            "fallback": index in fallback,
            "started_at_device": None,
            "stopped_at_device": None,
            "stderr_tail": "",
        }
        prof.post.append(step)
        if index in fallback and prof.post[index - 1]["status"] != "failed":
            continue
        label = "%s.post%d" % (prof.name, index)
        if stopping():
            step.update(status="failed", reason="not run: the runner was told to stop")
            continue
        if time.time() >= kill_at:
            step.update(status="failed", reason="not run: past deadline + grace")
            continue
        why_not = blocked()
        if why_not:
            step.update(status="failed", reason="not run: " + why_not)
            log("%s: post step %d: %s" % (prof.name, index, step["reason"]))
            continue
        try:
            child = spawn(label, list(argv), workdir)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            step.update(
                status="failed", reason="cannot start %s: %s" % (argv[0], os_error_text(exc))
            )
            log("%s: post step %d: %s" % (prof.name, index, step["reason"]))
            continue
        log("%s: post step %d: pid %d: %s" % (prof.name, index, child.pid, " ".join(argv)))
        while not child.exited() and time.time() < kill_at and not stopping():
            time.sleep(STOP_POLL_S)
        killed = not child.exited()
        if killed:
            child.send(signal.SIGKILL, group=True)
            child.popen.wait()
            child.exited()
        child.send(signal.SIGKILL, group=True)  # whatever it left in its group
        stderr = os.path.join(workdir, label + ".stderr")
        keep_tail(stderr)
        keep_tail(os.path.join(workdir, label + ".stdout"))
        step.update(
            exit_code=child.exit_code,
            started_at_device=child.started_at,
            stopped_at_device=child.stopped_at,
            stderr_tail=file_tail(stderr),
        )
        code = child.exit_code
        if killed or (code is not None and code < 0):
            # By this loop or by the watchdog, whichever came first at deadline + grace.
            late = time.time() >= kill_at - 0.1
            step.update(
                status="failed",
                reason="killed by signal %d%s"
                % (
                    -code if code is not None and code < 0 else signal.SIGKILL,
                    " at deadline + grace" if late else "",
                ),
            )
        elif code != 0:
            hint = last_line(step["stderr_tail"])
            step.update(
                status="failed",
                reason="exit code %s%s" % (child.exit_code, " (said: %s)" % hint if hint else ""),
            )
        else:
            step["status"] = "ok"
        log(
            "%s: post step %d: %s%s"
            % (
                prof.name,
                index,
                step["status"],
                ": " + step["reason"] if step["reason"] else "",
            )
        )


def discard_files(prof: ProfilerRun, workdir: str, log: RunnerLog) -> None:
    """Delete options.discard (intermediate files, e.g. an SQLite export) before packing."""
    for name in (prof.spec.get("options") or {}).get("discard") or []:
        path = os.path.join(workdir, name)
        with contextlib.suppress(OSError):
            if not os.path.isdir(path) and os.path.lexists(path):
                os.unlink(path)
                prof.discarded.append(name)
                log("%s: discarded %s" % (prof.name, name))
