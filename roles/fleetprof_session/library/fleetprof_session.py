#!/usr/bin/python
# Copyright: fleetprof contributors
# License: Apache-2.0
#
# WANT_JSON
# The marker above makes Ansible hand this module its arguments as a JSON file (argv[1])
# instead of wrapping it in AnsiballZ, so the very same file runs by hand and in tests:
#     python3 fleetprof_session.py ARGS_FILE      (ARGS_FILE: {"plan": {...}})
# (in a source checkout; on a device: python3 fleetprof_device.pyz session ARGS_FILE).
"""fleetprof's device-side session runner, as an Ansible module: run one profiling session
from its plan. The runner itself is fleetprof_device.runner (the package in the zipapp
that preflight pushes, named by ``device_bundle``); this file only finds it and calls it.

Stdlib only, Python 3.8 or newer (docs/device.md).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fleetprof_session
short_description: Run one coordinated fleetprof profiling session on this device
description:
  - Executes one fleetprof session plan (schema C(fleetprof.plan/1)) on the device, by itself.
  - Resolves the target (attach by regex, pid or pidfile), waits for T0 on the device clock,
    then launches the target (launch mode) and starts every planned profiler with its argv
    (never through a shell) in that instant, stops them by the deadline (or once a launched
    program ended by itself) and kills whatever is left at deadline + grace.
  - Writes C(manifest.json) (schema C(fleetprof.manifest/1)) into the plan's workdir and packs
    the workdir's regular files into the plan's archive (tar.gz, flat member names,
    C(manifest.json) first, written under a temporary name and renamed).
  - Meant to run with C(async) and C(poll=0); it needs nothing from the controller once started.
  - A session that ran but produced nothing usable is not a module failure; see RV(status).
  - Takes an exclusive lock per user and host (C(<fleetprof home>/session.lock)) before anything
    else, and in attach mode one per target process (in C(/run/lock) or C(/tmp), shared by all
    users). When another session holds either, nothing is started and the status is C(busy).
  - With the plan's C(min_free_mb) (MiB), starts nothing when the workdir's filesystem has less
    free, and stops every profiler early when it falls below that during the window.
  - A profiler with C(tool_sha256) is started only when its argv[0] has that sha256.
  - Creates its directories (fleetprof home, runs, workdir) with mode 0700.
version_added: "0.1.0"
options:
  plan:
    description:
      - The session plan, as written by the controller to C(hosts/<host>/plan.json).
      - A JSON string holding the plan is accepted too.
      - See docs/run-directory.md for every field.
    type: dict
    required: true
  device_bundle:
    description:
      - The device package this module runs (fleetprof_device, a zipapp the controller
        builds and preflight pushes): C(path) under the connecting user's home and C(sha256).
      - Without it the module uses the C(fleetprof_device/) of the source checkout it is in.
    type: dict
notes:
  - Standard library only, Python 3.8 or newer on the device.
  - Supports check mode by validating the plan and running nothing.
  - Profilers run with the workdir as cwd, each in its own process group; C({pid}) argv elements
    are replaced by the target pid and nothing else is substituted.
requirements:
  - python >= 3.8 on the device
author:
  - fleetprof
"""

EXAMPLES = r"""
- name: Run the session in the background
  fleetprof_session:
    plan: "{{ lookup('ansible.builtin.file', 'plan.json') | from_json }}"
  async: 300
  poll: 0
  register: session_job

- name: Wait for it
  ansible.builtin.async_status:
    jid: "{{ session_job.ansible_job_id }}"
  register: session
  until: session.finished | bool
  retries: 150
  delay: 2
"""

RETURN = r"""
archive:
  description: Path of the tarball on the device (null when it could not be written).
  returned: always
  type: str
  sample: /root/.fleetprof/runs/demo/20261125-111500-ab12.tar.gz
status:
  description:
    - The session's outcome, C(ok), C(partial) or C(failed); C(busy) when another fleetprof
      session held the host lock or the target's lock (nothing was started).
    - When the busy session is this very plan's (the same plan applied twice at once), its
      workdir and archive are left to it, and RV(archive) and RV(manifest) are null.
  returned: always
  type: str
  sample: ok
reason:
  description: One line saying why the status is not C(ok); null when it is.
  returned: always
  type: str
  sample: target exited at +12.3 s with code 1
manifest:
  description: The content of C(manifest.json) (schema C(fleetprof.manifest/1)).
  returned: when the session ran
  type: dict
msg:
  description: A human-readable summary, or what was wrong with the invocation.
  returned: always
  type: str
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
            from fleetprof_device import runner
        except ImportError as exc:
            problem = "cannot import the device package: %s" % exc
        else:
            return runner.main()
    nothing = {"changed": False, "archive": None, "manifest": None, "status": "failed"}
    print(json.dumps(dict(nothing, failed=True, bundle_missing=True, reason=problem, msg=problem)))
    return 1


if __name__ == "__main__":
    sys.exit(main())
