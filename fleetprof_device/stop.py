"""Stop a running session on a device and wait for its archive (the fleetprof_stop module):
the cleanup play's answer to an interrupted controller.

The runner is told to stop with SIGTERM, which it handles like the end of the window: it
stops its profilers, writes its manifest and packs its archive, so nothing keeps running
and what the device measured so far can still be collected.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from typing import Any, Dict, List, Optional

from .contract import RUNNER_LOG
from .procfs import is_gone, read_stat


def runner_pids(workdir: str) -> List[int]:
    """Processes of this user holding <workdir>/runner.log open: the session's runner."""
    wanted = os.path.realpath(os.path.join(workdir, RUNNER_LOG))
    uid = os.getuid()
    found: List[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        fd_dir = os.path.join("/proc", name, "fd")
        try:
            if os.stat(os.path.join("/proc", name)).st_uid != uid:
                continue
            links = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in links:
            try:
                if os.readlink(os.path.join(fd_dir, fd)) == wanted:
                    found.append(int(name))
                    break
            except OSError:
                continue
    return sorted(found)


def alive(pid: int) -> bool:
    info = read_stat(pid)
    return info is not None and not is_gone(info[0])


def stop(workdir: str, archive: str, wait_s: float) -> Dict[str, Any]:
    result: Dict[str, Any] = {
        "changed": False,
        "failed": False,
        "runner_pid": None,
        "stopped": True,
    }
    pids = runner_pids(workdir)
    if pids:
        result.update(changed=True, runner_pid=pids[0], stopped=False)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.time() + max(0.0, wait_s)
        while time.time() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.1)
        result["stopped"] = not any(alive(pid) for pid in pids)
    result["archive_ready"] = os.path.isfile(archive)
    result["msg"] = (
        "no session runner was running for %s" % workdir
        if not pids
        else "runner %d %s" % (pids[0], "stopped" if result["stopped"] else "still stopping")
    )
    return result


def main(argv: Optional[List[str]] = None) -> int:
    """Stop the runner of the plan named in ARGS_FILE (argv[0]); prints the module result."""
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as handle:
        args = json.load(handle)
    workdir, archive = args.get("workdir"), args.get("archive")
    if not (isinstance(workdir, str) and workdir and isinstance(archive, str) and archive):
        print(json.dumps({"failed": True, "msg": "workdir and archive are required strings"}))
        return 0
    try:
        wait_s = float(args.get("wait_s", 15))
    except (TypeError, ValueError):
        print(json.dumps({"failed": True, "msg": "wait_s must be a number of seconds"}))
        return 0
    print(json.dumps(stop(os.path.expanduser(workdir), os.path.expanduser(archive), wait_s)))
    return 0
