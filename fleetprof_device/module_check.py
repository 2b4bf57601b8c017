"""A profiler inside the launched program that needs a module of the program's own Python
(memray): whether that Python can import it, asked before the window.

The controller cannot know what a device's Python environment holds, so it plans such a
profiler with ``options["module"]`` and the target's command wrapped (``python -m memray
run ... SCRIPT``). When the runner is set up (before T0) it runs the program's interpreter,
with the program's environment, on ``-c "import MODULE"``. Where that fails the profiler
becomes ``skipped`` with the reason (its plan entry is changed in place: the session reads
it from there) and the program starts as the campaign wrote it, without the wrap.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any, Dict, List, Optional

from .procfs import os_error_text, shorten
from .runlog import RunnerLog

CHECK_TIMEOUT_S = 20.0  # an interpreter that cannot import a module in this long: skipped
MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")

NOT_IMPORTABLE = (
    "{module} is not installed for the program's Python ({python}: `import {module}` "
    "failed: {said}): install it in that environment (`python -m pip install {module}`) "
    "to profile with it"
)
CHECK_HUNG = (
    "the program's Python ({python}) did not finish `import {module}` in {seconds:g} s: "
    "{module} was not used"
)


def option_errors(options: Dict[str, Any]) -> List[str]:
    """The plan's ``module`` option (and the ``wrap`` length that goes with it)."""
    module = options.get("module")
    if module is None:
        return []
    errors = []
    if not (isinstance(module, str) and MODULE_RE.match(module)):
        errors.append("options.module must be a Python module name")
    for key in ("wrap", "replaces"):
        value = options.get(key)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            errors.append("options.%s must be a positive integer" % key)
    return errors


def _import_problem(python: List[str], module: str, env: Dict[str, str], cwd: Optional[str]) -> str:
    """'' when ``python`` imports ``module``; what went wrong otherwise."""
    try:
        done = subprocess.run(
            [*python, "-c", "import " + module],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=CHECK_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return CHECK_HUNG.format(python=python[0], module=module, seconds=CHECK_TIMEOUT_S)
    except (OSError, ValueError) as exc:
        return NOT_IMPORTABLE.format(
            module=module, python=python[0], said="cannot run it: " + os_error_text(exc)
        )
    if done.returncode == 0:
        return ""
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    said = lines[-1] if lines else "exit code %d" % done.returncode
    return NOT_IMPORTABLE.format(module=module, python=python[0], said=shorten(said, 300))


def check_modules(target: Dict[str, Any], profilers: List[Dict[str, Any]], log: RunnerLog) -> None:
    """Each planned in-target profiler with ``options["module"]``: skipped, and the target's
    command unwrapped, where the program's interpreter cannot import that module."""
    if target.get("mode") != "launch" or not target.get("command"):
        return
    for spec in profilers:
        options = spec.get("options") or {}
        module = options.get("module")
        if spec.get("status") != "planned" or not spec.get("in_target") or not module:
            continue
        command = list(target["command"])
        python = command[: int(options["replaces"])]
        env = dict(os.environ)
        env.update(target.get("env") or {})
        problem = _import_problem(python, str(module), env, target.get("cwd"))
        if not problem:
            log("%s: %s imports %s" % (spec["name"], python[0], module))
            continue
        spec["status"], spec["reason"] = "skipped", problem
        spec["post_argv"] = []
        target["command"] = python + command[int(options["wrap"]) :]
        target["interrupt_s"] = None
        log("%s: skipped: %s" % (spec["name"], problem))
