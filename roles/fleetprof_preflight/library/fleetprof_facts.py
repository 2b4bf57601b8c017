#!/usr/bin/python
# WANT_JSON
"""Collect what fleetprof's plan needs to know about a device, in one cheap module run.

Stdlib only and Python 3.8 compatible: it runs on whatever Python the device has, with
nothing installed. Ansible's fact gathering is not used: it is slow on small boards and
misses what matters here (ptrace scope, capabilities, the hardware model of ARM boards).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fleetprof_facts
short_description: Describe a device for a fleetprof campaign
description:
  - Reports architecture, hardware model, OS, kernel, Python, cores, memory, free disk,
    ptrace permission, delay accounting (kernel.task_delayacct) and the tools already
    present (iotop is looked for on PATH and in the sbin directories, as C(iotop_path)),
    plus the device clock for the controller's NTP-style offset measurement.
options:
  hw_model:
    description: Hardware model set by the inventory (hostvar C(fleetprof_hw_model)); wins over detection.
    type: str
    default: ''
  tools:
    description: Absolute paths of tools to look for on the device, by name.
    type: dict
    default: {}
  hash_files:
    description:
      - Files whose sha256 to report (C(~/) is the connecting user's home), so the
        controller pushes a tool only where the device lacks the exact copy. A file that
        is missing, not a regular file, or over 256 MiB is left out.
    type: list
    elements: str
    default: []
  device_bundle:
    description:
      - The device package this module runs (fleetprof_device, a zipapp the controller
        builds and preflight pushes): C(path) under the connecting user's home and C(sha256).
      - Without it the module uses the C(fleetprof_device/) of the source checkout it is in.
    type: dict
author: fleetprof
"""

RETURN = r"""
facts:
  description: The device description (see orchestrator/models.py HostFacts).
  type: dict
  returned: always
device_time:
  description: The device's clock (epoch seconds) sampled just before the module returned.
  type: float
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
            from fleetprof_device import facts
        except ImportError as exc:
            problem = "cannot import the device package: %s" % exc
        else:
            return facts.main()
    # Not a failure: preflight pushes the package to this device, then asks again.
    print(
        json.dumps(
            {
                "changed": False,
                "bundle_missing": True,
                "msg": problem,
                "home": os.path.expanduser("~"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
