"""Whether this machine can run the test fleet, and why not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache

from tests.fleet.cgroups import detect

DEVICE_PYTHON = "/usr/bin/python3"


def find_tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")


@cache
def _unshare_works(unshare: str) -> str | None:
    argv = [unshare, "--pid", "--fork", "--mount", "--mount-proc", "--uts", "--ipc", "true"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare does not work here: {exc}"
    if proc.returncode != 0:
        return f"cannot create PID/mount/UTS/IPC namespaces: {proc.stderr.strip()}"
    return None


def fleet_unavailable(need_cpu: bool = True) -> str | None:
    """Why the test fleet cannot run on this machine; None when it can."""
    if sys.platform != "linux":
        return "the test fleet needs Linux (namespaces, cgroups)"
    if os.geteuid() != 0:
        return "the test fleet needs root (namespaces, cgroups, sshd)"
    for tool, package in (
        ("sshd", "openssh-server"),
        ("ssh-keygen", "openssh-client"),
        ("unshare", "util-linux"),
        ("mount", "mount"),
    ):
        if find_tool(tool) is None:
            return f"{tool} not found (Debian package {package})"
    if not os.access(DEVICE_PYTHON, os.X_OK):
        return f"{DEVICE_PYTHON} is missing: the hosts need a Python visible in their namespace"
    tree = detect()
    if tree is None:
        return "no cgroup hierarchy found under /sys/fs/cgroup"
    problem = tree.problem(need_cpu=need_cpu)
    if problem:
        return problem
    return _unshare_works(str(find_tool("unshare")))
