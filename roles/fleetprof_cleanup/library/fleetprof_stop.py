#!/usr/bin/python
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
  device_bundle:
    description:
      - The device package this module runs (fleetprof_device, a zipapp the controller
        builds and preflight pushes): C(path) under the connecting user's home and C(sha256).
      - Without it the module uses the C(fleetprof_device/) of the source checkout it is in.
    type: dict
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

import hashlib
import json
import os
import sys
from typing import Optional


def load_device_package(args_file: str) -> Optional[str]:
    """Put fleetprof_device on sys.path -> None, or why it cannot be (the caller reports it).

    ``device_bundle`` in the arguments names the zipapp the controller pushed (its path
    under the home and its sha256, checked here); without it, the fleetprof_device/ of the
    source checkout this file is in (tests, a run by hand: docs/device.md).
    """
    try:
        with open(args_file, encoding="utf-8") as handle:
            bundle = json.load(handle).get("device_bundle")
    except (OSError, ValueError, AttributeError):
        bundle = None
    if not isinstance(bundle, dict):
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, os.path.join(here, os.pardir, os.pardir, os.pardir))
        return None
    path = os.path.join(os.path.expanduser("~"), str(bundle.get("path")))
    try:
        with open(path, "rb") as handle:
            found: Optional[str] = hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        found = None
    if found != bundle.get("sha256"):
        return "the device package %s is missing or another version (sha256 %s)" % (path, found)
    sys.path.insert(0, path)
    return None


def main() -> int:
    problem = load_device_package(sys.argv[1] if len(sys.argv) > 1 else "")
    if problem is None:
        try:
            from fleetprof_device import stop
        except ImportError as exc:
            problem = "cannot import the device package: %s" % exc
        else:
            return stop.main()
    print(json.dumps({"failed": True, "bundle_missing": True, "msg": problem}))
    return 1


if __name__ == "__main__":
    sys.exit(main())
