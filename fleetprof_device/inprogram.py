"""Profilers that run inside the launched program (the builtin "tracemalloc"): the startup
hook the runner puts on the program's path and the environment that starts it, and what
stands in for a sampler in the runner: the program samples itself, the runner reads what
it wrote once the window is over.
"""

from __future__ import annotations

import json
import os
import pkgutil
import signal
import time
from typing import Any, Dict, List, Optional

from .children import Child
from .contract import (
    TRACEMALLOC,
    TRACEMALLOC_FILE,
    TRACEMALLOC_HOOK_DIR,
    TRACEMALLOC_MAX_BYTES,
    TRACEMALLOC_MAX_ERRORS,
    TRACEMALLOC_MAX_FRAMES,
    TRACEMALLOC_MAX_PATH_CHARS,
    TRACEMALLOC_MAX_TOP,
    TRACEMALLOC_SCHEMA,
)
from .dirs import make_private_dir
from .procfs import os_error_text
from .runlog import RunnerLog

HOOK_SOURCE = "tracemalloc_hook.py"  # in this package (the zipapp): written as sitecustomize
HOOK_CONFIG = "fleetprof-tracemalloc.json"  # tracemalloc_hook.CONFIG_NAME
ENVIRONMENT = ("PYTHONPATH", "PYTHONTRACEMALLOC")


def option_errors(options: Dict[str, Any]) -> List[str]:
    """The plan's options for the builtin tracemalloc, beyond the samplers' interval."""
    errors = []
    for key, top in (("frames", TRACEMALLOC_MAX_FRAMES), ("top", TRACEMALLOC_MAX_TOP)):
        value = options.get(key)
        if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= top):
            errors.append("options.%s must be an integer from 1 to %d" % (key, top))
    return errors


def _planned(profilers: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    for spec in profilers:
        if spec.get("status") == "planned" and spec.get("builtin") == TRACEMALLOC:
            return spec
    return None


def launch_env(
    env: Dict[str, str], profilers: List[Dict[str, Any]], workdir: str, log: RunnerLog
) -> Dict[str, str]:
    """The launched program's environment, with the tracemalloc hook where it is planned:
    PYTHONTRACEMALLOC=<frames>, and the hook's directory first on PYTHONPATH (the
    program's own PYTHONPATH after it). The hook puts both back as the program had them.
    When the hook cannot be written the program starts as planned, without it."""
    spec = _planned(profilers)
    if spec is None:
        return env
    options = spec.get("options") or {}
    here = os.path.join(workdir, TRACEMALLOC_HOOK_DIR)
    config = {
        "schema": TRACEMALLOC_SCHEMA,
        "output": os.path.join(workdir, TRACEMALLOC_FILE),
        "interval_s": float(options.get("interval_s", 1.0)),
        "frames": int(options["frames"]),
        "top": int(options["top"]),
        "max_bytes": min(int(spec["max_bytes"]), TRACEMALLOC_MAX_BYTES),
        "max_path_chars": TRACEMALLOC_MAX_PATH_CHARS,
        "max_errors": TRACEMALLOC_MAX_ERRORS,
        "environment": dict((name, env.get(name)) for name in ENVIRONMENT),
    }
    try:
        source = pkgutil.get_data(__package__ or "fleetprof_device", HOOK_SOURCE)
        if source is None:
            raise OSError("the hook's source is not in the device package")
        make_private_dir(here, tighten=True)
        for name, data in (
            ("sitecustomize.py", source),
            (HOOK_CONFIG, json.dumps(config).encode("utf-8")),
        ):
            with open(os.path.join(here, name), "wb") as handle:
                handle.write(data)
    except OSError as exc:
        log("%s: the startup hook could not be written: %s" % (TRACEMALLOC, os_error_text(exc)))
        return env
    env = dict(env)
    env["PYTHONTRACEMALLOC"] = str(config["frames"])
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = here + (os.pathsep + old if old else "")
    log("%s: startup hook in %s (PYTHONTRACEMALLOC=%s)" % (TRACEMALLOC, here, config["frames"]))
    return env


class HookWatch:
    """Stands in for a Sampler: active from the start of the window until the runner stops
    the samplers; what the program's hook wrote is read once, when the manifest asks."""

    def __init__(self, workdir: str, interval: float, max_bytes: int) -> None:
        self.workdir = workdir
        self.interval = interval
        self.max_bytes = max_bytes
        self.started_at: Optional[float] = time.time()
        self.stopped_at: Optional[float] = None
        self.pid: Optional[int] = None
        self.dropped = 0
        # None: no overhead.tracemalloc.cpu_pct. The runner spends nothing; the cost is the
        # program's own (its summary's snapshot_seconds, tracemalloc.snapshot_pct).
        self.cpu_s: Optional[float] = None
        self.ended: Optional[str] = None
        self._read: Optional[Dict[str, Any]] = None
        self._problem: Optional[str] = None
        self.program: Optional[Child] = None  # the launched program, to say how it ended

    def start(self, pid: Optional[int], program: Optional[Child] = None) -> None:
        self.pid = pid
        self.program = program
        if not os.path.isfile(os.path.join(self.workdir, TRACEMALLOC_HOOK_DIR, HOOK_CONFIG)):
            self._problem = (
                "the startup hook was not installed (see runner.log): the program ran "
                "without tracemalloc"
            )

    def alive(self) -> bool:
        return self.stopped_at is None

    def stop(self, final_sample: bool = True, reason: str = "stopped") -> None:
        if self.stopped_at is None:
            self.stopped_at = time.time()
            self.ended = reason

    def _summary(self) -> Dict[str, Any]:
        """What the hook wrote last (read once): its snapshot count and its errors."""
        if self._read is None:
            self._read = {}
            path = os.path.join(self.workdir, TRACEMALLOC_FILE)
            try:
                with open(path, "rb") as handle:
                    data = handle.read(self.max_bytes + 1)
                loaded = json.loads(data.decode("utf-8")) if len(data) <= self.max_bytes else {}
                self._read = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                pass
        return self._read

    @property
    def samples(self) -> int:
        count = self._summary().get("snapshots")
        return count if isinstance(count, int) and not isinstance(count, bool) else 0

    @property
    def error(self) -> Optional[str]:
        if self._problem is not None:
            return self._problem
        if self.samples:
            return None
        return "the program wrote no snapshot: " + self._why_none()

    def _why_none(self) -> str:
        """Why the hook wrote nothing: it writes every interval and at a normal exit, so
        the program ended before its first interval without Python's exit handlers."""
        first = "(%g s after it started)" % self.interval
        code = self.program.exit_code if self.program is not None else None
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "signal %d" % -code
            return (
                "it was killed by %s before its first %s: a killed program runs no exit "
                "handler, where the hook takes its last snapshot" % (name, first)
            )
        if code is not None:
            return (
                "it ended with code %d before its first %s without running Python's exit "
                "handlers, where the hook takes its last snapshot (os._exit, a fatal error), "
                "or its Python ignored the hook (-I, -E, -S)" % (code, first)
            )
        return (
            "it ended, or was killed, before its first %s, or its Python ignored the hook "
            "(-I, -E, -S)" % first
        )

    def quality(self) -> Dict[str, Any]:
        summary = self._summary()
        errors = summary.get("errors")
        return {
            "samples": self.samples,
            "interval_s": self.interval,
            "target_pid": self.pid,
            "ended": self.ended,
            "hook_errors": (
                [str(e)[:300] for e in errors[:TRACEMALLOC_MAX_ERRORS]]
                if isinstance(errors, list)
                else []
            ),
        }
