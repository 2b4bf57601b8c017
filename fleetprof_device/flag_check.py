"""A launcher's flag that only newer versions of its tool know (nsys's ``--pytorch``): asked
of the tool's own ``--help`` before the window, the flag taken out where the help lacks it.

The controller cannot know which Nsight Systems a device has (the facts name its path, not
its version), so it plans nsys with the flag in ``launch_argv`` and ``options["flag_check"]``
= ``{"flag": "--pytorch=autograd-nvtx", "help_argv": [NSYS, "profile", "--help"],
"needle": "--pytorch"}``. When the runner is set up (before T0) it runs ``help_argv``;
where its output (stdout and stderr, capped) does not hold ``needle`` -- an older nsys, or a
help that fails to run or hangs -- the flag is removed from ``launch_argv`` (the plan entry
is changed in place: the session reads it from there), so the profiler runs without it
instead of failing on an unknown option. The manifest's ``argv`` shows what ran; the
controller's parser says why the flag is missing (docs/troubleshooting.md).
"""

from __future__ import annotations

import subprocess
from typing import Any, Dict, List

from .procfs import os_error_text, shorten
from .runlog import RunnerLog

CHECK_TIMEOUT_S = 20.0  # a tool that cannot print its help in this long: the flag is dropped
HELP_MAX_BYTES = 1 << 20  # of its help read; nsys profile --help is about 60 KB


def option_errors(options: Dict[str, Any]) -> List[str]:
    """The plan's ``flag_check`` option, where there is one."""
    check = options.get("flag_check")
    if check is None:
        return []
    if not (
        isinstance(check, dict)
        and all(isinstance(check.get(key), str) and check[key] for key in ("flag", "needle"))
        and isinstance(check.get("help_argv"), list)
        and check["help_argv"]
        and all(isinstance(arg, str) and arg for arg in check["help_argv"])
    ):
        return ["options.flag_check must hold flag, needle (strings) and help_argv (a list)"]
    return []


def _help_lacks(help_argv: List[str], needle: str) -> str:
    """'' when the tool's help mentions ``needle``; what it said or did otherwise."""
    try:
        done = subprocess.run(
            help_argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=CHECK_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return "`%s` did not finish in %g s" % (" ".join(help_argv), CHECK_TIMEOUT_S)
    except (OSError, ValueError) as exc:
        return "`%s` could not run: %s" % (" ".join(help_argv), os_error_text(exc))
    text = done.stdout[:HELP_MAX_BYTES].decode("utf-8", "replace")
    if needle in text:
        return ""
    return "`%s` (exit code %d) does not list %s" % (
        " ".join(help_argv),
        done.returncode,
        shorten(needle, 80),
    )


def check_flags(profilers: List[Dict[str, Any]], log: RunnerLog) -> None:
    """Each planned profiler with ``options["flag_check"]``: its flag out of ``launch_argv``
    where the tool's help does not list it."""
    for spec in profilers:
        check = (spec.get("options") or {}).get("flag_check")
        argv = spec.get("launch_argv") or []
        if spec.get("status") != "planned" or not check or check["flag"] not in argv:
            continue
        problem = _help_lacks(list(check["help_argv"]), str(check["needle"]))
        if not problem:
            log("%s: %s is known to %s" % (spec["name"], check["needle"], argv[0]))
            continue
        spec["launch_argv"] = [arg for arg in argv if arg != check["flag"]]
        log("%s: runs without %s: %s" % (spec["name"], check["flag"], problem))
