#!/usr/bin/python
# -*- coding: utf-8 -*-
# WANT_JSON
"""Stop a running fleetprof session on a device and wait for its archive.

The cleanup play runs this when the controller is interrupted: the session runner is told
to stop (SIGTERM, which it handles like the end of the window: it stops its profilers,
writes its manifest and packs its archive), so nothing keeps running and what the device
measured so far can still be collected. Stdlib only, Python 3.8 compatible.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fleetprof_stop
short_description: Stop a fleetprof session runner early and wait for its archive
description:
  - Finds the session runner of one plan by the log file it holds open in the plan's work
    directory (C(runner.log)), owned by the same user, and sends it SIGTERM; the runner
    stops its profilers, writes its manifest and packs C(archive).
  - Waits at most C(wait_s) seconds for the runner to exit. Never signals anything else.
options:
  workdir:
    description: The session's work directory (the plan's C(workdir)).
    type: path
    required: true
  archive:
    description: The session's archive (the plan's C(archive)).
    type: path
    required: true
  wait_s:
    description: How long to wait for the runner to exit after SIGTERM.
    type: float
    default: 15
author: fleetprof
"""

RETURN = r"""
runner_pid:
  description: The runner that was told to stop, or null when none was running.
  type: int
  returned: always
stopped:
  description: Whether the runner exited within wait_s.
  type: bool
  returned: always
archive_ready:
  description: Whether the archive exists now (collect can fetch it).
  type: bool
  returned: always
"""

import json
import os
import signal
import sys
import time

LOG_NAME = "runner.log"


def runner_pids(workdir):
    """Processes of this user holding <workdir>/runner.log open: the session's runner."""
    wanted = os.path.realpath(os.path.join(workdir, LOG_NAME))
    uid = os.getuid()
    found = []
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


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            state = handle.read().rsplit(b")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def stop(workdir, archive, wait_s):
    result = {"changed": False, "failed": False, "runner_pid": None, "stopped": True}
    pids = runner_pids(workdir)
    if pids:
        result.update(changed=True, runner_pid=pids[0], stopped=False)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.time() + max(0.0, wait_s)
        while time.time() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.1)
        result["stopped"] = not any(alive(pid) for pid in pids)
    result["archive_ready"] = os.path.isfile(archive)
    result["msg"] = (
        "no session runner was running for %s" % workdir if not pids
        else "runner %d %s" % (pids[0], "stopped" if result["stopped"] else "still stopping")
    )
    return result


def main():
    with open(sys.argv[1]) as handle:
        args = json.load(handle)
    workdir, archive = args.get("workdir"), args.get("archive")
    if not (isinstance(workdir, str) and workdir and isinstance(archive, str) and archive):
        print(json.dumps({"failed": True, "msg": "workdir and archive are required strings"}))
        return
    try:
        wait_s = float(args.get("wait_s", 15))
    except (TypeError, ValueError):
        print(json.dumps({"failed": True, "msg": "wait_s must be a number of seconds"}))
        return
    print(json.dumps(stop(os.path.expanduser(workdir), os.path.expanduser(archive), wait_s)))


if __name__ == "__main__":
    main()
