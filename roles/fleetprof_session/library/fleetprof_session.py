#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetprof contributors
# License: Apache-2.0
#
# WANT_JSON
# The marker above makes Ansible hand this module its arguments as a JSON file (argv[1])
# instead of wrapping it in AnsiballZ, so the very same file runs by hand and in tests:
#     python3 fleetprof_session.py ARGS_FILE      (ARGS_FILE: {"plan": {...}})
"""fleetprof's device-side session runner: run one profiling session from its plan.

Given a plan (``fleetprof.plan/1``, see docs/run-directory.md) it finds the target
(attach), waits for T0 on the device clock, starts the target (launch) and every planned
profiler in that instant, stops them all by the deadline (or when a launched program
ends by itself), records what happened in ``manifest.json`` and packs the workdir into
one tarball. It needs nothing from the controller once started: Ansible runs it with
``async`` and ``poll: 0``, so a lost network or a killed controller changes nothing here,
and nothing it started outlives ``deadline + grace_s``.

Why stdlib-only and Python 3.8: this file is copied to every device as is. Edge boards
run whatever python3 their OS shipped (Debian 11 / Ubuntu 20.04 / EL8 still mean 3.8 or
3.9), and the design allows no installs on a device besides the profilers themselves. So:
no third-party imports, no ``ansible.module_utils`` (which would need AnsiballZ), no
``match``, no 3.9+ APIs (``str.removeprefix``, ``list[int]`` at runtime), typing.List/Dict.

Errors are values: a session that ran and found, say, no matching process is not a module
failure; it is ``status: failed`` with a reason in the manifest, and the archive is still
written. ``failed: true`` is reserved for a broken invocation (bad arguments, a plan of
another schema, a workdir or archive that cannot be written).

Guards against other sessions and the device's own trouble (docs/security.md):
- locks: before anything else, an exclusive flock on ``<fleetprof home>/session.lock`` (one
  session per user and host), and in attach mode, once the target is resolved, one on a
  lock file named from the target's pid and start time in /run/lock or /tmp (one ptrace
  sampler per process, whoever runs it). Either held by someone else: ``status: busy``,
  nothing is started, and the archive holds the manifest and runner.log only. The kernel
  drops a flock when its process dies: a crashed session never blocks the next.
- the disk floor (``min_free_mb``): below it at the start nothing runs (``failed``); falling
  below it in the window every profiler is stopped early (``partial``).
- ``tool_sha256``: a pushed tool whose binary differs from the plan's sha256 is not run.
- every directory it creates (fleetprof home, runs, workdir) is mode 0700.
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

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import platform
import re
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

PLAN_SCHEMA = "fleetprof.plan/1"
MANIFEST_SCHEMA = "fleetprof.manifest/1"
RUNNER_VERSION = "1"

WARMUP_S = 1.0  # resolve an attach target this long before T0 (a launch target starts at T0)
SIGINT_AFTER_S = 2.0  # profilers still running this long after the deadline get SIGINT
TARGET_STOP_WAIT_S = 3.0  # SIGTERM -> SIGKILL when stopping a launched target
ABORT_WAIT_S = 3.0  # once the runner is told to stop: how long profilers get to write
END_TOLERANCE_S = 0.5  # a target ending this close to the deadline did not end early
TARGET_END_WAIT_S = 2.0  # a launched target ended: how long profilers get to stop by themselves
# A profiler attaching by pid to a program just launched gives up if it is not Python yet
# (py-spy: after about 0.5 s; a wrapper script that execs Python later): it is started
# again, this many times at most, while the program is this young.
ATTACH_TRIES = 5
ATTACH_RETRY_S = 5.0
LAUNCHED_CHILD_WAIT_S = 2.0  # via_profiler: how long to look for the target it started
WINDOW_POLL_S = 0.1
STOP_POLL_S = 0.05
TAIL_BYTES = 4096
LOG_CAP_BYTES = 1 << 20  # profiler and target stdout/stderr files keep their last MiB
TRUNCATE_LOOKBACK = 64 * 1024  # cut a too-large output at a line end found this far back

RESERVED_FILES = ("manifest.json", "runner.log", "target.stdout", "target.stderr",
                  "probe.json", ".probe-disk.tmp", "manifest.json.tmp", ".reserve")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")  # \Z: no trailing newline
BEHIND_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|\xb5s|us|ms|s) behind in sampling")
SAMPLES_RE = re.compile(r"Samples: ([0-9]+) Errors: ([0-9]+)")
LAG_UNITS = {"ns": 1e-9, "\xb5s": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
SHA256_RE = re.compile(r"^[0-9A-Fa-f]{64}\Z")
HASH_CHUNK = 1 << 20

# Locks (see SessionLock): one per user and host in the fleetprof home, one per target
# process in a directory every user shares, so two users' campaigns on one process collide.
HOST_LOCK_FILE = "session.lock"
SHARED_LOCK_DIRS = ("/run/lock", "/tmp")  # the first that is world-writable and sticky
TARGET_LOCK_NAME = "fleetprof-target-%d-%d.lock"  # pid, start time (clock ticks after boot)
LOCK_RETRIES = 5
HOLDER_READ_BYTES = 4096
HOLDER_KEYS = ("campaign", "run_id", "host", "pid", "uid", "since", "t0_device",
               "deadline_device", "grace_s", "workdir", "archive")

# The disk floor: free space of the workdir's filesystem is checked this often in the window.
DISK_CHECK_S = 1.0
MIB = 1 << 20


class InvocationError(Exception):
    """The module was called wrongly: bad arguments or a plan it cannot run."""


class TargetError(Exception):
    """The target could not be found or started; the message is the session's reason."""


class BusyError(Exception):
    """Another fleetprof session holds a lock this one needs; the message is the reason."""

    def __init__(self, reason: str, path: str, holder: Optional[Dict[str, Any]]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path
        self.holder = holder


# =========================================================================== arguments


def load_args(argv: List[str]) -> Tuple[Dict[str, Any], bool]:
    """ARGS_FILE -> (plan, check_mode). Ansible's own keys (``_ansible_*``) are accepted."""
    if len(argv) != 1:
        raise InvocationError("usage: fleetprof_session.py ARGS_FILE (JSON holding a 'plan' key)")
    try:
        with open(argv[0], "r", encoding="utf-8") as handle:
            args = json.load(handle)
    except (OSError, ValueError) as exc:
        raise InvocationError("cannot read the arguments file %s: %s" % (argv[0], exc)) from None
    if not isinstance(args, dict):
        raise InvocationError("the arguments file must hold a JSON object")
    unknown = sorted(k for k in args if k != "plan" and not str(k).startswith("_ansible_"))
    if unknown:
        raise InvocationError("unsupported parameters: %s (supported: plan)" % ", ".join(unknown))
    if "plan" not in args:
        raise InvocationError("missing required argument: plan")
    plan = args["plan"]
    if isinstance(plan, str):
        try:
            plan = json.loads(plan)
        except ValueError as exc:
            raise InvocationError("plan is a string but not JSON: %s" % exc) from None
    if not isinstance(plan, dict):
        raise InvocationError("plan must be a dict, got %s" % type(plan).__name__)
    return plan, bool(args.get("_ansible_check_mode"))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def validate_plan(plan: Dict[str, Any]) -> None:
    """Raise InvocationError listing every way the plan breaks fleetprof.plan/1.

    Unknown keys are allowed: the controller may add fields this runner does not need.
    """
    if plan.get("schema") != PLAN_SCHEMA:
        raise InvocationError(
            "plan schema is %r, this runner reads %r" % (plan.get("schema"), PLAN_SCHEMA)
        )
    errors = []  # type: List[str]
    for key in ("campaign", "run_id", "host"):
        if not isinstance(plan.get(key), str):
            errors.append("%s must be a string" % key)
    for key in ("workdir", "archive"):
        value = plan.get(key)
        if not (isinstance(value, str) and os.path.isabs(value) and value.strip("/")):
            errors.append("%s must be an absolute path other than /" % key)
    for key in ("t0_device", "deadline_device", "grace_s", "clock_offset_s"):
        if not _is_number(plan.get(key)):
            errors.append("%s must be a number" % key)
    if not errors:
        if plan["deadline_device"] <= plan["t0_device"]:
            errors.append("deadline_device must be after t0_device")
        if plan["grace_s"] < 0:
            errors.append("grace_s must not be negative")
        if os.path.normpath(plan["archive"]) == os.path.normpath(plan["workdir"]):
            errors.append("archive must not be the workdir")
    floor = plan.get("min_free_mb")
    if floor is not None and not (_is_number(floor) and math.isfinite(floor) and floor >= 0):
        errors.append("min_free_mb must be a number of MiB, 0 or more (or null: no floor)")
    errors.extend(_target_errors(plan.get("target")))
    errors.extend(_profilers_errors(plan.get("profilers")))
    if errors:
        raise InvocationError("invalid plan: " + "; ".join(errors))


def _target_errors(target: Any) -> List[str]:
    if not isinstance(target, dict):
        return ["target must be a dict"]
    mode = target.get("mode")
    if mode == "attach":
        given = [k for k in ("process", "pid", "pidfile") if target.get(k) is not None]
        if len(given) != 1:
            return ["attach target needs exactly one of process, pid, pidfile (got %s)" % given]
        key, value = given[0], target[given[0]]
        if key == "pid":
            return [] if _is_positive_int(value) else ["target.pid must be a positive integer"]
        if not (isinstance(value, str) and value):
            return ["target.%s must be a non-empty string" % key]
        if key == "process":
            try:
                re.compile(value)
            except re.error as exc:
                return ["target.process is not a valid regex: %s" % exc]
        return []
    if mode == "launch":
        errors = []
        if not (_is_str_list(target.get("command")) and target["command"]):
            errors.append("launch target needs command, a non-empty list of strings")
        if target.get("cwd") is not None and not isinstance(target["cwd"], str):
            errors.append("target.cwd must be a string")
        env = target.get("env") or {}
        if not (isinstance(env, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            errors.append("target.env must map strings to strings")
        if not isinstance(target.get("via_profiler", False), bool):
            errors.append("target.via_profiler must be a boolean")
        return errors
    if mode == "probe":
        kinds = target.get("probe")
        errors = []
        if not (_is_str_list(kinds) and kinds and len(set(kinds)) == len(kinds)
                and all(k in PROBE_KINDS for k in kinds)):
            errors.append("probe target needs probe, a non-empty list of distinct benchmarks "
                          "from %s" % ", ".join(PROBE_KINDS))
        seconds = target.get("probe_seconds")
        if seconds is not None and not (_is_number(seconds) and 0 < seconds <= 3600):
            errors.append("target.probe_seconds must be a number of seconds, more than 0")
        repeats = target.get("probe_repeats")
        if repeats is not None and not (_is_positive_int(repeats) and repeats <= PROBE_MAX_REPS):
            errors.append("target.probe_repeats must be an integer from 1 to %d" % PROBE_MAX_REPS)
        return errors
    return ["target.mode must be 'attach', 'launch' or 'probe', got %r" % (mode,)]


def _profilers_errors(profilers: Any) -> List[str]:
    if not isinstance(profilers, list):
        return ["profilers must be a list"]
    errors = []  # type: List[str]
    names = []  # type: List[str]
    for index, prof in enumerate(profilers):
        if not isinstance(prof, dict):
            errors.append("profilers[%d] must be a dict" % index)
            continue
        name = prof.get("name")
        if not (isinstance(name, str) and NAME_RE.match(name)) or name == "target":
            errors.append("profilers[%d].name must be a plain name ([A-Za-z0-9._-], "
                          "not 'target')" % index)
            continue
        names.append(name)
        errors.extend("profiler %s: %s" % (name, e) for e in _profiler_errors(prof))
    duplicates = sorted(set(n for n in names if names.count(n) > 1))
    if duplicates:
        errors.append("profiler names must be unique: %s" % ", ".join(duplicates))
    return errors


def _profiler_errors(prof: Dict[str, Any]) -> List[str]:
    errors = []  # type: List[str]
    if prof.get("status") not in ("planned", "skipped"):
        errors.append("status must be 'planned' or 'skipped'")
    for key in ("argv", "launch_argv", "outputs"):
        if not _is_str_list(prof.get(key, [])):
            errors.append("%s must be a list of strings" % key)
    builtin = prof.get("builtin")
    if builtin is not None:
        errors.extend(_builtin_errors(prof, builtin))
    elif prof.get("status") == "planned" and not (prof.get("argv") or prof.get("launch_argv")):
        errors.append("a planned profiler needs an argv")
    errors.extend(_post_errors(prof))
    for output in prof.get("outputs") or []:
        if not isinstance(output, str):
            continue
        if not output or "/" in output or "\0" in output or output in (".", ".."):
            errors.append("output %r must be a plain file name in workdir (the archive is flat)"
                          % output)
        elif output == "%s.stdout" % prof.get("name"):
            continue  # a sampler that prints its samples (iotop, nvidia-smi): stdout is its output
        elif output in RESERVED_FILES or output.endswith((".stdout", ".stderr")):
            errors.append("output %r collides with the runner's own files" % output)
    if not _is_positive_int(prof.get("max_bytes")):
        errors.append("max_bytes must be a positive integer")
    digest = prof.get("tool_sha256")
    if digest is not None and not (isinstance(digest, str) and SHA256_RE.match(digest)):
        errors.append("tool_sha256 must be a sha256 in hex, 64 digits (or null)")
    return errors


def _builtin_errors(prof: Dict[str, Any], builtin: Any) -> List[str]:
    """A sampler the runner runs itself: a known kind, an interval, one output file."""
    if builtin not in BUILTINS:
        return ["builtin must be one of %s, got %r" % (", ".join(BUILTINS), builtin)]
    errors = []  # type: List[str]
    options = prof.get("options") or {}
    interval = options.get("interval_s", 1.0) if isinstance(options, dict) else None
    if not (_is_number(interval)
            and MIN_SAMPLE_INTERVAL_S <= interval <= MAX_SAMPLE_INTERVAL_S):
        errors.append("options.interval_s must be a number from %g to %g"
                      % (MIN_SAMPLE_INTERVAL_S, MAX_SAMPLE_INTERVAL_S))
    if prof.get("argv") or prof.get("launch_argv"):
        errors.append("a builtin sampler takes no argv")
    if len(prof.get("outputs") or []) != 1:
        errors.append("a builtin sampler writes exactly one output")
    return errors


def _post_errors(prof: Dict[str, Any]) -> List[str]:
    """post_argv (argv lists run after the profiler stopped) and the options that go with it:
    post_fallback (indices of steps that run only when the step before failed),
    optional_outputs (outputs that may be missing) and discard (files deleted before packing)."""
    errors = []  # type: List[str]
    post = prof.get("post_argv", [])
    if not isinstance(post, list) or not all(_is_str_list(a) and a for a in post):
        return ["post_argv must be a list of non-empty lists of strings"]
    options = prof.get("options") or {}
    if not isinstance(options, dict):
        return ["options must be a dict"]
    fallback = options.get("post_fallback", [])
    if not (isinstance(fallback, list) and all(
            isinstance(i, int) and not isinstance(i, bool) and 1 <= i < len(post)
            for i in fallback)):
        errors.append("options.post_fallback must list post_argv indices from 1")
    outputs = prof.get("outputs") or []
    optional = options.get("optional_outputs", [])
    if not (_is_str_list(optional) and all(name in outputs for name in optional)):
        errors.append("options.optional_outputs must list some of the outputs")
    discard = options.get("discard", [])
    if not _is_str_list(discard) or any(
            not NAME_RE.match(name) or name in RESERVED_FILES or name in outputs
            or name.endswith((".stdout", ".stderr")) for name in discard):
        errors.append("options.discard must list plain file names that are not outputs")
    return errors


# =========================================================================== /proc


def read_cmdline(pid: int) -> Optional[List[str]]:
    """A process's argv; [] for kernel threads and zombies, None when it is gone."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    parts = data.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [part.decode("utf-8", "replace") for part in parts]


def read_stat(pid: int) -> Optional[Tuple[str, int, int, int]]:
    """(state, ppid, pgrp, starttime) from /proc/PID/stat, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            data = handle.read()
        # comm (field 2) may hold spaces and parentheses: split after its last ')'.
        rest = data[data.rindex(b")") + 2:].split()
        return rest[0].decode("ascii", "replace"), int(rest[1]), int(rest[2]), int(rest[19])
    except (OSError, ValueError, IndexError):
        return None


def list_pids() -> List[int]:
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())


def is_gone(state: str) -> bool:
    return state in ("Z", "X")  # zombie or dead: exited, only not reaped yet


def ancestors_and_self() -> List[int]:
    chain = [os.getpid()]
    pid = os.getppid()
    while pid > 0 and pid not in chain:
        chain.append(pid)
        info = read_stat(pid)
        pid = info[1] if info else 0
    return chain


def shorten(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shorten_cmdline(argv: List[str], limit: int = 120) -> str:
    """A command line cut in the middle: the program and its last arguments tell it apart."""
    text = " ".join(" ".join(argv).split())
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + "..." + text[len(text) - (limit - head - 3):]


def find_by_regex(pattern: str) -> Tuple[int, List[str]]:
    """The one process whose command line matches; the runner and its ancestors excluded."""
    regex = re.compile(pattern)
    excluded = set(ancestors_and_self())
    matches = []  # type: List[Tuple[int, List[str]]]
    for pid in list_pids():
        if pid in excluded:
            continue
        argv = read_cmdline(pid)
        if argv and regex.search(" ".join(argv)):  # [] = kernel thread or zombie
            matches.append((pid, argv))
    if not matches:
        raise TargetError("no process matches '%s'" % pattern)
    if len(matches) > 1:
        listed = "; ".join("pid %d: %s" % (pid, shorten_cmdline(argv))
                           for pid, argv in matches[:5])
        more = " (and %d more)" % (len(matches) - 5) if len(matches) > 5 else ""
        raise TargetError("%d processes match '%s', exactly one is needed: %s%s"
                          % (len(matches), pattern, listed, more))
    return matches[0]


def check_pid(pid: int, source: str = "") -> List[str]:
    """The cmdline of a live, non-kernel process ``pid``; TargetError otherwise."""
    label = "pid %d%s" % (pid, source)
    info = read_stat(pid)
    argv = read_cmdline(pid)
    if info is None or argv is None:
        raise TargetError("%s is not running" % label)
    if is_gone(info[0]):
        raise TargetError("%s has exited (zombie, not yet reaped)" % label)
    if not argv:
        raise TargetError("%s is a kernel thread" % label)
    return argv


def read_pidfile(path: str) -> int:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(4096)
    except FileNotFoundError:
        raise TargetError("pidfile %s does not exist" % path) from None
    except OSError as exc:
        raise TargetError("cannot read pidfile %s: %s" % (path, os_error_text(exc))) from None
    text = raw.decode("utf-8", "replace").strip()
    first = text.splitlines()[0].strip() if text else ""
    if not first.isdigit() or int(first) <= 0:
        raise TargetError("pidfile %s does not hold a pid: %r" % (path, shorten(text, 40)))
    return int(first)


class ProcessRef:
    """A process the runner did not start: watched through /proc, pid reuse detected."""

    def __init__(self, pid: int, starttime: int) -> None:
        self.pid = pid
        self.starttime = starttime

    @classmethod
    def of(cls, pid: int) -> Optional[ProcessRef]:
        info = read_stat(pid)
        if info is None or is_gone(info[0]):
            return None
        return cls(pid, info[3])

    def alive(self) -> bool:
        info = read_stat(self.pid)
        return info is not None and info[3] == self.starttime and not is_gone(info[0])


def os_error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return "%s%s" % (exc.strerror, ": '%s'" % exc.filename if exc.filename else "")
    return str(exc) or type(exc).__name__


def kill_quietly(pid: int, sig: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


# =========================================================================== locks
#
# Two campaigns on one host at once: the second gets ``busy`` and starts nothing, and the
# first is undisturbed. flock(2) locks belong to the open file description, so the kernel
# drops them when the runner dies, however it dies: a crashed session never blocks the next.


def iso_utc(when: Any) -> str:
    if not _is_number(when):
        return "an unknown time"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def lock_holder(plan: Dict[str, Any], private: bool) -> Dict[str, Any]:
    """What a lock file says about its holder. A shared lock file (the target's) is readable
    by every user: it names the campaign and run, never paths in the holder's home."""
    holder = {
        "campaign": plan["campaign"], "run_id": plan["run_id"], "host": plan["host"],
        "pid": os.getpid(), "uid": os.geteuid(), "since": round(time.time(), 3),
        "t0_device": plan["t0_device"], "deadline_device": plan["deadline_device"],
        "grace_s": plan["grace_s"],
    }  # type: Dict[str, Any]
    if private:
        holder["workdir"] = plan["workdir"]
        holder["archive"] = plan["archive"]
    return holder


def busy_reason(what: str, holder: Optional[Dict[str, Any]]) -> str:
    if holder is None:
        return "busy: another fleetprof session holds %s (who holds it could not be read)" % what
    return "busy: another fleetprof session holds %s (campaign %s, run %s, pid %s, until %s)" % (
        what, holder.get("campaign"), holder.get("run_id"), holder.get("pid"),
        iso_utc(holder.get("deadline_device")))


class SessionLock:
    """An exclusive, non-blocking flock on one lock file, held until release() or death.

    The file is opened with O_NOFOLLOW (a symlink planted at its name is refused) and
    O_NONBLOCK (a FIFO planted there cannot hang the runner), and must be a regular file
    with one link; only a file of this user's is ever written.
    Its holder writes a short JSON description into it; whoever finds it locked reads that
    back for its ``busy`` reason. ``shared``: a lock file in a directory every user may
    write (the target's lock), readable by all so another user's session can lock it too.
    """

    def __init__(self, path: str, fd: int, shared: bool) -> None:
        self.path = path
        self.fd = fd
        self.shared = shared

    @classmethod
    def acquire(cls, path: str, what: str, holder: Dict[str, Any],
                shared: bool) -> "SessionLock":
        """The lock, or BusyError (someone holds it) or OSError (it cannot be taken)."""
        for _ in range(LOCK_RETRIES):
            fd, writable = cls._open(path, shared)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                held = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
                other = cls._read_holder(fd) if held else None
                os.close(fd)
                if held:
                    raise BusyError(busy_reason(what, other), path, other) from None
                raise
            # Its last holder may have unlinked the file between our open and our flock:
            # a lock on a file no longer at the path excludes nobody. Lock the one there.
            try:
                mine, there = os.fstat(fd), os.lstat(path)
                same = (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)
            except OSError:
                same = False
            if same:
                lock = cls(path, fd, shared)
                if writable:
                    lock._describe(holder)
                return lock
            os.close(fd)
        raise OSError(errno.EAGAIN, "the lock file kept being replaced", path)

    @staticmethod
    def _open(path: str, shared: bool) -> Tuple[int, bool]:
        """(fd, whether it may be written)."""
        flags = os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd, writable = os.open(path, flags | os.O_RDWR | os.O_CREAT, 0o600), True
        except OSError as exc:
            if not (shared and exc.errno in (errno.EACCES, errno.EPERM)):
                raise
            # Another user's lock file in a sticky directory: protected_regular refuses
            # O_CREAT on it, and it is not ours to write. A read-only descriptor locks too.
            fd, writable = os.open(path, flags | os.O_RDONLY), False
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", path)
            if info.st_nlink != 1:
                # A hard link planted at the lock's name would have the runner truncate and
                # write whatever file it points to (where protected_hardlinks is off).
                raise OSError(errno.EMLINK, "the lock file has %d links" % info.st_nlink, path)
            # Only a file of our own is ever written; anyone else's is only locked and read.
            writable = writable and info.st_uid == os.geteuid()
            if writable:
                # Readable by all in the shared directory (another user's session must be
                # able to open it to lock it); private (0600) in the fleetprof home.
                os.fchmod(fd, 0o644 if shared else 0o600)
        except OSError:
            os.close(fd)
            raise
        return fd, writable

    @staticmethod
    def _read_holder(fd: int) -> Optional[Dict[str, Any]]:
        """The holder's description, when it names a process that is still running (a
        description left by an earlier holder, which a new one could not overwrite, does
        not)."""
        try:
            holder = json.loads(os.pread(fd, HOLDER_READ_BYTES, 0).decode("utf-8", "replace"))
        except (OSError, ValueError):
            return None
        if not isinstance(holder, dict) or not _is_positive_int(holder.get("pid")):
            return None
        info = read_stat(int(holder["pid"]))
        if info is None or is_gone(info[0]):
            return None
        # Another user may have written this file: keep only the known keys, as plain values.
        return dict((key, shorten(value, 200) if isinstance(value, str) else value)
                    for key, value in holder.items()
                    if key in HOLDER_KEYS and (isinstance(value, str) or _is_number(value)))

    def _describe(self, holder: Dict[str, Any]) -> None:
        data = (json.dumps(holder, sort_keys=True) + "\n").encode("utf-8")
        with contextlib.suppress(OSError):  # the description is a courtesy, the lock is not
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)

    def release(self, unlink: bool = False) -> None:
        """Give the lock up; ``unlink``: remove our own lock file first, while still holding
        it (whoever opened it meanwhile sees it gone after its flock, and retries)."""
        if self.fd < 0:
            return
        if unlink:
            with contextlib.suppress(OSError):
                mine, there = os.fstat(self.fd), os.lstat(self.path)
                if ((mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)
                        and mine.st_uid == os.geteuid()):
                    os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1


def shared_lock_dir() -> str:
    """The directory for locks every user must see: chosen from what it is, not from who
    asks (/run/lock when it is world-writable and sticky, else /tmp), so that two users'
    sessions pick the same one."""
    for directory in SHARED_LOCK_DIRS:
        try:
            info = os.stat(directory)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_mode & 0o1777 == 0o1777:
            return directory
    return "/tmp"


def target_lock_path(pid: int, starttime: int) -> str:
    """The target's lock: named from its pid and start time, so a reused pid is another."""
    return os.path.join(shared_lock_dir(), TARGET_LOCK_NAME % (pid, starttime))


# =========================================================================== directories


def fleetprof_home(workdir: str) -> Tuple[str, List[str]]:
    """The fleetprof home the workdir lives under, and fleetprof's own directories above it.

    plan.py lays sessions out as <home>/runs/<campaign>/<run id> (home: ~/.fleetprof); then
    home, runs and the campaign's directory are fleetprof's own, and the host lock lives in
    home. In any other layout the lock lives next to the workdir, and no directory above the
    workdir is taken for fleetprof's own.
    """
    workdir = os.path.normpath(workdir)
    campaign_dir = os.path.dirname(workdir)
    runs = os.path.dirname(campaign_dir)
    home = os.path.dirname(runs)
    if os.path.basename(runs) == "runs" and home != "/":
        return home, [home, runs, campaign_dir]
    return campaign_dir, []


def make_private_dir(path: str, tighten: bool) -> None:
    """Create ``path`` and whatever is missing above it, each mode 0700 whatever the umask.
    An existing ``path`` with a looser mode is tightened to 0700 when ``tighten`` and it
    belongs to this user."""
    missing = []  # type: List[str]
    current = os.path.normpath(path)
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue  # made meanwhile by someone else: not ours to chmod
        os.chmod(directory, 0o700)
    if tighten and not missing:
        info = os.stat(path)
        if (stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
                and stat.S_IMODE(info.st_mode) & 0o077):
            os.chmod(path, 0o700)


def prepare_home(plan: Dict[str, Any]) -> str:
    """Create the directories above the workdir (0700); -> the host lock's path."""
    home, own = fleetprof_home(plan["workdir"])
    try:
        make_private_dir(home, tighten=os.path.basename(home) == ".fleetprof")
        for directory in own[1:]:
            make_private_dir(directory, tighten=True)
        if not os.path.isdir(home):
            raise OSError(errno.ENOTDIR, "not a directory", home)
    except OSError as exc:
        raise InvocationError("cannot prepare workdir %s: %s"
                              % (plan["workdir"], os_error_text(exc))) from None
    return os.path.join(home, HOST_LOCK_FILE)


# =========================================================================== disk floor


def mount_point(path: str) -> str:
    """The mount point of the filesystem holding ``path`` (what a reason calls it)."""
    current = os.path.realpath(path)
    try:
        device = os.stat(current).st_dev
        while current != "/":
            parent = os.path.dirname(current)
            if os.stat(parent).st_dev != device:
                break
            current = parent
    except OSError:
        pass
    return current


class DiskFloor:
    """The plan's min_free_mb for the workdir's filesystem: None means no floor."""

    def __init__(self, path: str, floor_mb: Any) -> None:
        self.path = path
        self.floor_mb = float(floor_mb) if floor_mb is not None else None  # type: Optional[float]
        self.fs = None  # type: Optional[str]
        self.free_at_start = None  # type: Optional[float]
        self.lowest = None  # type: Optional[float]
        self.fell_below_at = None  # type: Optional[float]

    def free_mb(self) -> Optional[float]:
        """Free space for this user (f_bavail: what root keeps back does not count), MiB."""
        try:
            info = os.statvfs(self.path)
        except OSError:
            return None
        free = info.f_bavail * info.f_frsize / float(MIB)
        if self.free_at_start is None:
            self.free_at_start = free
        self.lowest = free if self.lowest is None else min(self.lowest, free)
        return free

    def below(self) -> Optional[float]:
        """The free space when it is below the floor, else None (also with no floor)."""
        free = self.free_mb()
        if self.floor_mb is None or free is None or free >= self.floor_mb:
            return None
        if self.fs is None:
            self.fs = mount_point(self.path)
        return free

    def _floor(self) -> str:
        floor = float(self.floor_mb or 0.0)
        return "%d" % floor if floor.is_integer() else "%.1f" % floor

    def too_little(self, free: float) -> str:
        return "free space on %s is %d MiB, below the floor of %s MiB" % (
            self.fs, int(free), self._floor())

    def fell(self, free: float) -> str:
        return "free space on %s fell below the floor of %s MiB (%d MiB left)" % (
            self.fs, self._floor(), int(free))

    def entry(self, clock: "Clock") -> Dict[str, Any]:
        def mb(value: Optional[float]) -> Optional[float]:
            return None if value is None else round(value, 1)

        return {"fs": self.fs or mount_point(self.path), "min_free_mb": self.floor_mb,
                "free_mb_at_start": mb(self.free_at_start), "free_mb_lowest": mb(self.lowest),
                "fell_below_at_device": self.fell_below_at,
                "fell_below_at_controller": clock.controller(self.fell_below_at)}


# =========================================================================== tool checksums


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ToolHashes:
    """sha256 of the tools the plan pinned, hashed before T0 and trusted at spawn time only
    while the file is unchanged (same inode, size, mtime and ctime): so the check is made
    just before the spawn without a large binary's hashing delaying the start at T0."""

    def __init__(self) -> None:
        self.known = {}  # type: Dict[str, Tuple[Tuple[int, ...], str]]

    @staticmethod
    def _resolve(program: str) -> str:
        if "/" in program:
            return program
        import shutil  # only for a bare program name, which a pinned tool never is

        return shutil.which(program) or program

    def digest(self, program: str) -> Tuple[str, str]:
        """(path, sha256 of the file it names now); OSError when it cannot be read."""
        path = self._resolve(program)
        info = os.stat(path)
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        known = self.known.get(path)
        if known is not None and known[0] == key:
            return path, known[1]
        value = file_sha256(path)
        self.known[path] = (key, value)
        return path, value

    def problem(self, program: str, expected: str) -> Tuple[Optional[str], Optional[str]]:
        """(why it must not run, or None; the sha256 found)."""
        try:
            path, found = self.digest(program)
        except OSError as exc:
            return ("tool %s cannot be read to check its sha256 (%s): not run"
                    % (program, os_error_text(exc))), None
        if found != expected.lower():
            return ("tool %s sha256 %s does not match the plan's %s: not run"
                    % (path, found, expected.lower())), found
        return None, found


# =========================================================================== children


def _pdeathsig_hook() -> Optional[Callable[[], None]]:
    """A preexec_fn asking Linux to SIGKILL the child if the runner itself is killed.

    The watchdog covers every way the runner can end except SIGKILL (async's time limit,
    the OOM killer); this covers that one for the processes the runner started directly.
    Safe as a preexec_fn because no other thread runs while the runner spawns: the
    built-in samplers' threads start only after the last process was spawned.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
        # PR_SET_PDEATHSIG = 1; the kernel reads the later arguments as unsigned longs.
        args = (ctypes.c_int(1), ctypes.c_ulong(int(signal.SIGKILL)), ctypes.c_ulong(0),
                ctypes.c_ulong(0), ctypes.c_ulong(0))
    except (ImportError, OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(*args)
        if os.getppid() != parent:  # the runner died before prctl took effect
            os._exit(127)

    return hook


PDEATHSIG = _pdeathsig_hook()


class Child:
    """A process the runner started: leader of its own session and process group."""

    def __init__(self, argv: List[str], cwd: str, stdout: str, stderr: str,
                 env: Optional[Dict[str, str]] = None) -> None:
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            self.popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                close_fds=True, start_new_session=True, preexec_fn=PDEATHSIG,
            )
        self.pid = self.popen.pid
        self.started_at = time.time()
        self.stopped_at = None  # type: Optional[float]
        self.sent = {}  # type: Dict[str, float]  # "SIGINT", "SIGKILL(group)" -> when
        # Its own CPU time (utime + stime, ticks) as last read from /proc while it ran or
        # lay unreaped: what the process cost the device (its reaped children excluded).
        self.cpu_ticks = None  # type: Optional[int]

    @property
    def exit_code(self) -> Optional[int]:
        """The leader's exit status; negative: killed by that signal (as in subprocess)."""
        return self.popen.returncode

    def exited(self) -> bool:
        """True once the leader has exited (reaps it and notes when it was seen gone)."""
        if self.stopped_at is None:
            self._read_cpu()
            if self.popen.poll() is not None:
                self.stopped_at = time.time()
        return self.stopped_at is not None

    def _read_cpu(self) -> None:
        # A zombie's stat still holds its final times: read before reaping, the last
        # reading is exact.
        try:
            with open("/proc/%d/stat" % self.pid) as handle:
                found = read_target_stat(handle.read())
        except (OSError, ValueError):
            return
        if found is not None:
            self.cpu_ticks = found[1]

    @property
    def cpu_s(self) -> Optional[float]:
        return None if self.cpu_ticks is None else round(self.cpu_ticks / float(CLK_TCK), 3)

    def group_alive(self) -> bool:
        """Whether any live (non-zombie) process is left in the child's process group."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        if not self.exited():
            return True
        for pid in list_pids():
            info = read_stat(pid)
            if info is not None and info[2] == self.pid and not is_gone(info[0]):
                return True
        return False

    def send(self, sig: int, group: bool) -> None:
        """Send ``sig`` to the leader or to the whole group, once per (signal, scope)."""
        key = signal.Signals(sig).name + ("(group)" if group else "")
        if key not in self.sent:
            self.sent[key] = time.time()
            kill_quietly(self.pid, sig, group)

    def signals_sent(self) -> List[str]:
        return [key for key, _ in sorted(self.sent.items(), key=lambda item: item[1])]

    def stop_step(self, now: float, first: int, first_at: float, kill_at: float,
                  group_first: bool) -> bool:
        """One step of stopping: ``first`` at first_at, SIGKILL to the group at kill_at.

        A group whose leader is gone but which still has members (the command a profiler
        launched, a helper it forked) gets SIGTERM, then SIGKILL after TARGET_STOP_WAIT_S.
        Returns True while anything of the child is alive.
        """
        if not self.exited():
            if now >= kill_at:
                self.send(signal.SIGKILL, group=True)
            elif now >= first_at:
                self.send(first, group=group_first)
            return True
        if not self.group_alive():
            return False
        self.send(signal.SIGTERM, group=True)
        if now >= min(self.sent["SIGTERM(group)"] + TARGET_STOP_WAIT_S, kill_at):
            self.send(signal.SIGKILL, group=True)
        return True


# =========================================================================== target


class Target:
    """The process being profiled: found (attach), started by the runner, or by a profiler.

    In attach mode it is never signalled. A launched target starts at T0, in the same
    instant as the profilers (py-spy attaches to it with --pid; the runner stays its parent
    and knows its exit code); it is stopped at the deadline, or once every profiler has
    stopped if that is sooner: SIGTERM to its process group, SIGKILL 3 s later. One a
    profiler launched (via_profiler: nsys, ncu, py-spy where attaching is not allowed)
    shares that profiler's process group, so it alone gets SIGTERM, and the profiler sees
    it exit and writes its output; its exit code is unknown to the runner.
    """

    def __init__(self, spec: Dict[str, Any], log: RunnerLog) -> None:
        self.spec = spec
        self.log = log
        self.mode = spec["mode"]  # type: str
        self.via_profiler = self.mode == "launch" and bool(spec.get("via_profiler"))
        self.pid = None  # type: Optional[int]
        self.cmdline = None  # type: Optional[List[str]]
        self.ref = None  # type: Optional[ProcessRef]  # attach, via_profiler
        self.child = None  # type: Optional[Child]  # launched by the runner
        self.exit_code = None  # type: Optional[int]  # known only for self.child
        self.exited_at = None  # type: Optional[float]
        self.stopped_by_runner = False

    def resolve(self) -> None:
        """Attach mode: find the process by regex, pid or pidfile (TargetError if not)."""
        spec = self.spec
        if spec.get("process") is not None:
            pid, argv = find_by_regex(spec["process"])
        elif spec.get("pid") is not None:
            pid = int(spec["pid"])
            argv = check_pid(pid)
        else:
            pid = read_pidfile(spec["pidfile"])
            argv = check_pid(pid, " from pidfile %s" % spec["pidfile"])
        self.ref = ProcessRef.of(pid)
        if self.ref is None:
            raise TargetError("pid %d exited while being resolved" % pid)
        self.pid, self.cmdline = pid, argv
        self.log("target: attach to pid %d: %s" % (pid, shorten(" ".join(argv), 200)))

    def launch(self, spawn: Callable[..., Child], workdir: str) -> None:
        """Launch mode: start the command (argv, never a shell) in its own process group."""
        env = dict(os.environ)
        env.update(self.spec.get("env") or {})
        argv = list(self.spec["command"])
        try:
            self.child = spawn("target", argv, self.spec.get("cwd") or workdir, env)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            raise TargetError("cannot start the target %s: %s"
                              % (shorten(" ".join(argv)), os_error_text(exc))) from None
        self.pid, self.cmdline = self.child.pid, argv
        self.log("target: launched pid %d: %s" % (self.pid, shorten(" ".join(argv), 200)))

    def adopt_child_of(self, launcher: Child, name: str) -> None:
        """via_profiler: the target is the launching profiler's (first) child."""
        self.cmdline = list(self.spec["command"])
        until = time.time() + LAUNCHED_CHILD_WAIT_S
        while time.time() < until and not launcher.exited():
            kids = [(info[3], pid) for pid, info in ((p, read_stat(p)) for p in list_pids())
                    if info is not None and info[1] == launcher.pid]
            if kids:
                self.pid = min(kids)[1]
                self.ref = ProcessRef.of(self.pid)
                self.log("target: pid %d, launched by %s" % (self.pid, name))
                return
            time.sleep(0.02)
        self.log("target: could not find the process %s launched" % name)

    def check(self) -> bool:
        """Whether the target has ended; notes when (and how) the first time it is seen."""
        if self.exited_at is not None:
            return True
        if self.child is not None:
            if self.child.exited():
                self.exited_at, self.exit_code = self.child.stopped_at, self.child.exit_code
        elif self.ref is not None and not self.ref.alive():
            self.exited_at = time.time()
        if self.exited_at is not None:
            self.log("target: exited%s" % (" with code %d" % self.exit_code
                                            if self.exit_code is not None else ""))
        return self.exited_at is not None

    def stop_step(self, now: float, stop_from: float, kill_at: float) -> bool:
        """One step of stopping a launched target; True while it is alive."""
        if self.child is not None:
            if self.exited_at is None and not self.child.exited():
                self.stopped_by_runner = True
            return self.child.stop_step(now, signal.SIGTERM, stop_from,
                                        min(kill_at, stop_from + TARGET_STOP_WAIT_S),
                                        group_first=True)
        if self.via_profiler and self.ref is not None and self.ref.alive():
            if now >= kill_at:
                kill_quietly(self.ref.pid, signal.SIGKILL)
            elif now >= stop_from and not self.stopped_by_runner:
                self.stopped_by_runner = True
                kill_quietly(self.ref.pid, signal.SIGTERM)
            return True
        return False

    def ended_early(self, deadline: float) -> bool:
        return (self.exited_at is not None and not self.stopped_by_runner
                and self.exited_at < deadline - END_TOLERANCE_S)

    def finished(self) -> bool:
        """A launched program that ended by itself, not failing: exit code 0, or unknown
        (a profiler launched it). Its end is the end of a complete measurement."""
        return (self.mode == "launch" and self.exited_at is not None
                and not self.stopped_by_runner and self.exit_code in (0, None))

    def entry(self, clock: Clock, workdir: str) -> Dict[str, Any]:
        entry = {
            "mode": self.mode,
            "pid": self.pid,
            "cmdline": self.cmdline,
            "exit_code": self.exit_code,
            "exited_at_device": self.exited_at,
            "exited_at_controller": clock.controller(self.exited_at),
            "exited_early": self.ended_early(clock.deadline),
            "stopped_by_runner": self.stopped_by_runner,
            "ended_by_itself": self.exited_at is not None and not self.stopped_by_runner,
            "exit_code_known": self.child is not None and self.exit_code is not None,
        }  # type: Dict[str, Any]
        if self.mode == "attach":
            entry["selector"] = dict((k, self.spec[k]) for k in ("process", "pid", "pidfile")
                                     if self.spec.get(k) is not None)
        elif self.mode == "probe":
            entry["probe"] = list(self.spec.get("probe") or [])
            entry["probe_file"] = PROBE_FILE
        else:
            entry["via_profiler"] = self.via_profiler
        if self.child is not None:
            entry["started_at_device"] = self.child.started_at
            entry["started_at_controller"] = clock.controller(self.child.started_at)
            entry["stderr_tail"] = file_tail(os.path.join(workdir, "target.stderr"))
        return entry


# =========================================================================== probe

PROBE_KINDS = ("cpu", "memory", "disk")
PROBE_FILE = "probe.json"
PROBE_SCHEMA = "fleetprof.probe/1"
PROBE_DEFAULT_S = 2.0  # per benchmark, when the plan does not say
PROBE_REPS = 5  # each measurement runs as this many short repetitions: a spread, not a point
PROBE_MAX_REPS = 50
PROBE_RESERVE_S = 0.2  # kept free before the deadline: stopping workers, writing probe.json
PROBE_MIN_S = 0.05  # a benchmark with less time than this left does not start
PROBE_READY_SHARE = 0.5  # all-core: at most this share of its time waiting for the workers,
PROBE_READY_MIN_S = 0.5  # ... or this long (past its end where the deadline leaves room)
PROBE_GO_MARGIN_S = 0.02  # all-core: the first window opens this long after the start file
PROBE_GO_FILE = ".probe-cpu-go"  # all-core: the windows; its appearance starts the workers
PROBE_WORKER_WAIT_S = 2.0  # all-core workers still running this long after their end: killed
PROBE_MEMORY_BYTES = 64 << 20
PROBE_COPY_CHUNK = 4 << 20
PROBE_DISK_BYTES = 256 << 20
PROBE_DISK_BLOCK = 1 << 20
PROBE_DISK_SYNC_BYTES = 8 << 20  # fsync this often: dirty data (and the last fsync) stay small
PROBE_DISK_FILE = ".probe-disk.tmp"

# The CPU workload, as source: the runner runs it in its own process (single-thread) and
# in os.cpu_count() fresh interpreters at once (all-core): the same code everywhere.
PROBE_CPU_SOURCE = '''
import time


def probe_cpu(windows):
    """Count loop iterations (an LCG step and a xorshift each) in every (start, end);
    late_s: how long after start the counting began (a worker still starting up, or the
    repetition before overran: the process was not given the CPU). A window with less
    than half of it left when its turn comes is not timed but marked missed: a few
    thousand iterations over a sliver of a window are a coin toss, not a rate."""
    done = []
    for start, end in windows:
        now = time.time()
        if now < start:
            time.sleep(start - now)
        began = time.time()
        late = round(max(0.0, began - start), 6)
        if end - began < (end - start) / 2.0:
            done.append({"iterations": 0, "seconds": 0.0, "late_s": late, "missed": True})
            continue
        count = 0
        x = 1
        while True:
            for _ in range(2000):
                x = (x * 1103515245 + 12345) & 0xFFFFFFFF
                x ^= x >> 13
            count += 2000
            now = time.time()
            if now >= end:
                break
        done.append({"iterations": count, "seconds": round(now - began, 6), "late_s": late})
    return done
'''
# An all-core worker: says it is up (a line on stdout), waits for the runner's start file
# (the windows, written once every worker is up), counts, prints its repetitions.
PROBE_CPU_MAIN = '''
import json, os, sys
go, give_up = sys.argv[1], float(sys.argv[2])
sys.stdout.write("ready\\n")
sys.stdout.flush()
while not os.path.exists(go):
    if time.time() >= give_up:
        sys.exit("no start from the runner")
    time.sleep(0.005)
with open(go) as handle:
    windows = json.load(handle)
sys.stdout.write(json.dumps(probe_cpu(windows)) + "\\n")
'''
_PROBE_NAMESPACE = {}  # type: Dict[str, Any]
exec(compile(PROBE_CPU_SOURCE, "<probe_cpu>", "exec"), _PROBE_NAMESPACE)
# (windows: [[start, end], ...]) -> [{"iterations", "seconds"}, ...]
probe_cpu = _PROBE_NAMESPACE["probe_cpu"]  # type: Callable[..., List[Dict[str, Any]]]


class ProbeError(Exception):
    """A benchmark that cannot run here (too little memory or disk); its result's error."""


def _started(stdout: str) -> bool:
    """An all-core worker is up once it wrote its first line."""
    try:
        return os.path.getsize(stdout) > 0
    except OSError:
        return False


def _windows(start: float, end: float, reps: int) -> List[List[float]]:
    width = max(0.001, (end - start) / reps)
    return [[start + i * width, start + (i + 1) * width] for i in range(reps)]


class Probe:
    """A probe target: fixed micro-benchmarks run in order from T0, stdlib only.

    Each gets its budget (the plan's probe_seconds, less when the deadline is nearer) and
    runs as PROBE_REPS repetitions; the raw numbers (iterations or bytes, seconds) of each
    go to probe.json, written whatever happens. Nothing here outlives the deadline.
    """

    def __init__(self, spec: Dict[str, Any], workdir: str, log: RunnerLog,
                 floor_mb: Optional[float] = None) -> None:
        self.kinds = list(spec.get("probe") or [])  # type: List[str]
        self.floor_mb = floor_mb  # the disk benchmark's file never takes free space below it
        self.nominal = float(spec.get("probe_seconds") or PROBE_DEFAULT_S)
        self.reps = int(spec.get("probe_repeats") or PROBE_REPS)
        self.workdir = workdir
        self.log = log
        self.results = {}  # type: Dict[str, Dict[str, Any]]
        self.children = []  # type: List[Child]

    def run(self, spawn: Callable[..., Child], deadline: float,
            stopped: Callable[[], bool]) -> None:
        try:
            for index, kind in enumerate(self.kinds):
                left = deadline - PROBE_RESERVE_S - time.time()
                budget = min(self.nominal, left / (len(self.kinds) - index))
                result = {"budget_s": round(max(0.0, budget), 3),
                          "error": None}  # type: Dict[str, Any]
                self.results[kind] = result
                if stopped():
                    result["error"] = "the runner was told to stop before it ran"
                    continue
                if budget < PROBE_MIN_S:
                    result["error"] = "no time left before the deadline"
                    continue
                self.log("probe: %s for %.2f s" % (kind, budget))
                started = time.time()
                try:
                    if kind == "cpu":
                        # A slow all-core start may run past the budget, not into the
                        # budgets the benchmarks after it would get.
                        rest = (len(self.kinds) - index - 1) * budget
                        self._cpu(result, spawn, started + budget, deadline,
                                  deadline - PROBE_RESERVE_S - rest)
                    elif kind == "memory":
                        self._memory(result, started + budget)
                    else:
                        self._disk(result, started + budget)
                except Exception as exc:  # one benchmark's failure is its result
                    result["error"] = "%s: %s" % (type(exc).__name__, os_error_text(exc))
                    self.log("probe: %s: %s" % (kind, result["error"]))
                result["ran_s"] = round(time.time() - started, 3)
        finally:
            self.write()

    def ran(self) -> List[str]:
        """The benchmarks that measured something."""
        first = {"cpu": "single", "memory": "copy", "disk": "write"}
        return [kind for kind, result in self.results.items()
                if (result.get(first[kind]) or {}).get("reps")]

    def problems(self) -> List[str]:
        return ["probe %s: %s" % (kind, result["error"])
                for kind, result in self.results.items() if result.get("error")]

    def write(self) -> None:
        write_json(os.path.join(self.workdir, PROBE_FILE), {
            "schema": PROBE_SCHEMA, "kinds": self.kinds, "nominal_s": self.nominal,
            "reps": self.reps, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "results": self.results,
        })

    # ------------------------------------------------------------------ benchmarks

    def _cpu(self, result: Dict[str, Any], spawn: Callable[..., Child], end: float,
             deadline: float, latest_end: Optional[float] = None) -> None:
        """Single-thread ops/s in this process, then all-core: os.cpu_count() interpreters
        running the same loop in the same windows (their rates add up). The all-core
        windows are set once every worker is up (or PROBE_READY_SHARE of the time, at
        least PROBE_READY_MIN_S, is gone): an interpreter starts slowly on a throttled or
        busy device, and windows fixed before it started would be missed, not measured.
        A slow start may push the windows past ``end``, up to ``latest_end`` (by default
        the deadline's reserve)."""
        start = time.time()
        middle = start + (end - start) / 2.0
        result["single"] = {"reps": probe_cpu(_windows(start, middle, self.reps))}
        processes = os.cpu_count() or 1
        result["all"] = {"processes": processes, "reps": []}
        if not sys.executable:
            raise ProbeError("all-core: the Python interpreter's path is unknown")
        go = os.path.join(self.workdir, PROBE_GO_FILE)
        with contextlib.suppress(OSError):
            os.unlink(go)
        argv = [sys.executable, "-c", PROBE_CPU_SOURCE + PROBE_CPU_MAIN, go, repr(deadline)]
        labels = ["probe-cpu-%d" % i for i in range(processes)]
        workers = []  # type: List[Child]
        windows = []  # type: List[List[float]]
        try:
            spawned = time.time()
            for label in labels:
                workers.append(spawn(label, argv, self.workdir))
                self.children.append(workers[-1])
            measure = max(end - spawned, PROBE_MIN_S) * (1.0 - PROBE_READY_SHARE)
            if latest_end is None:
                latest_end = deadline - PROBE_RESERVE_S
            latest_end = max(latest_end, end)
            latest = latest_end - PROBE_GO_MARGIN_S - measure
            ready_by = min(max(end - measure, spawned + PROBE_READY_MIN_S), latest)
            outs = [os.path.join(self.workdir, label + ".stdout") for label in labels]
            while time.time() < ready_by and not all(
                    _started(out) or w.exited() for out, w in zip(outs, workers)):
                time.sleep(0.005)
            result["all"]["ready_s"] = round(time.time() - spawned, 3)
            result["all"]["ready"] = sum(1 for out in outs if _started(out))
            first = time.time() + PROBE_GO_MARGIN_S
            stop = max(end, min(first + measure, latest_end))
            windows = _windows(first, stop, self.reps)
            give_up = min(windows[-1][1] + PROBE_WORKER_WAIT_S, deadline)
            with open(go + ".tmp", "w") as handle:
                json.dump(windows, handle)
            os.replace(go + ".tmp", go)  # atomic: a worker never reads half of it
            while time.time() < give_up and not all(w.exited() for w in workers):
                time.sleep(0.02)
        finally:
            for worker in workers:
                if not worker.exited():
                    kill_quietly(worker.pid, signal.SIGKILL, group=True)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        worker.popen.wait(1.0)
                    worker.exited()
            with contextlib.suppress(OSError):
                os.unlink(go)
        outputs, failures = [], []  # type: List[List[Any]], List[str]
        for label, worker in zip(labels, workers):
            path = os.path.join(self.workdir, label)
            lines = file_tail(path + ".stdout", 65536).strip().splitlines()
            try:
                reps = json.loads(lines[-1]) if worker.exit_code == 0 and lines else None
            except ValueError:
                reps = None
            if isinstance(reps, list) and len(reps) == len(windows):
                outputs.append(reps)
            else:
                failures.append("%s exited with %s: %s" % (
                    label, worker.exit_code,
                    last_line(file_tail(path + ".stderr")) or "no result"))
            for suffix in (".stdout", ".stderr"):
                with contextlib.suppress(OSError):
                    os.unlink(path + suffix)
        if failures:
            raise ProbeError("all-core: %d of %d workers failed (%s)"
                             % (len(failures), processes, shorten(failures[0], 300)))
        result["all"]["reps"] = [{"workers": [out[i] for out in outputs]}
                                 for i in range(len(windows))]

    def _memory(self, result: Dict[str, Any], end: float) -> None:
        """Copy MB/s: memoryview slice copies, PROBE_COPY_CHUNK at a time, cycling through
        a buffer of min(64 MiB, 10 % of MemAvailable) so it does not fit in a cache."""
        available = parse_kv_kb(read_once("/proc/meminfo"), ("MemAvailable",))["MemAvailable"]
        size = PROBE_MEMORY_BYTES
        if available is not None:
            size = min(size, available * 1024 // 10)
        size -= size % PROBE_COPY_CHUNK
        if size < PROBE_COPY_CHUNK:
            raise ProbeError("too little free memory for a %d MiB buffer"
                             % (PROBE_COPY_CHUNK >> 20))
        src = bytearray(b"\xa5") * size
        dst = bytearray(size)
        reps = []  # type: List[Dict[str, Any]]
        result["buffer_bytes"] = size
        result["copy"] = {"chunk_bytes": PROBE_COPY_CHUNK, "reps": reps}
        with memoryview(src) as source, memoryview(dst) as dest:
            dest[:] = source  # every page faulted in before anything is timed
            for window in _windows(time.time(), end, self.reps):
                began, copied, offset = time.time(), 0, 0
                while True:
                    stop = offset + PROBE_COPY_CHUNK
                    dest[offset:stop] = source[offset:stop]
                    copied += PROBE_COPY_CHUNK
                    offset = (offset + PROBE_COPY_CHUNK) % size
                    now = time.time()
                    if now >= window[1]:
                        break
                reps.append({"bytes": copied, "seconds": round(now - began, 6)})

    def _disk(self, result: Dict[str, Any], end: float) -> None:
        """Sequential write (fsync'ed every 8 MiB and at the end) and read MB/s of one file
        of min(256 MiB, 10 % of the free space) in the workdir, deleted afterwards. Before
        each read its pages are dropped from the page cache (POSIX_FADV_DONTNEED after the
        fsync), so the read comes from the device, not from memory."""
        fs = os.statvfs(self.workdir)
        free = fs.f_bavail * fs.f_frsize
        size = min(PROBE_DISK_BYTES, free // 10)
        if self.floor_mb is not None:
            size = min(size, free - int(self.floor_mb * MIB))
        size -= size % PROBE_DISK_BLOCK
        if size < PROBE_DISK_BLOCK:
            raise ProbeError("less than 10 MiB free in %s%s" % (
                self.workdir, "" if self.floor_mb is None
                else " above the floor of %g MiB" % self.floor_mb))
        path = os.path.join(self.workdir, PROBE_DISK_FILE)
        block = os.urandom(PROBE_DISK_BLOCK)  # incompressible
        writes, reads = [], []  # type: List[Dict[str, Any]], List[Dict[str, Any]]
        result.update(file_bytes_max=size, block_bytes=PROBE_DISK_BLOCK,
                      sync_every_bytes=PROBE_DISK_SYNC_BYTES, cache_dropped=True,
                      write={"reps": writes}, read={"reps": reads})

        def drop(fd: int) -> None:
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except (AttributeError, OSError):
                result["cache_dropped"] = False

        try:
            for window in _windows(time.time(), end, self.reps):
                middle = (window[0] + window[1]) / 2.0
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    began, written, unsynced = time.time(), 0, 0
                    while written < size:
                        count = os.write(fd, block)
                        written += count
                        unsynced += count
                        if unsynced >= PROBE_DISK_SYNC_BYTES:
                            os.fsync(fd)
                            unsynced = 0
                        if time.time() >= middle:
                            break
                    os.fsync(fd)
                    writes.append({"bytes": written, "seconds": round(time.time() - began, 6)})
                    drop(fd)
                finally:
                    os.close(fd)
                fd = os.open(path, os.O_RDONLY)
                try:
                    drop(fd)
                    began, got = time.time(), 0
                    while True:
                        data = os.read(fd, PROBE_DISK_BLOCK)
                        if not data:  # read it all: drop it again and start over
                            if time.time() >= window[1]:
                                break
                            drop(fd)
                            os.lseek(fd, 0, os.SEEK_SET)
                            continue
                        got += len(data)
                        if time.time() >= window[1]:
                            break
                    reads.append({"bytes": got, "seconds": round(time.time() - began, 6)})
                finally:
                    os.close(fd)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)


# =========================================================================== profilers


class Clock:
    """The session's times: T0 and the deadline on the device clock, and the offset."""

    def __init__(self, plan: Dict[str, Any]) -> None:
        self.t0 = float(plan["t0_device"])
        self.deadline = float(plan["deadline_device"])
        self.grace = float(plan["grace_s"])
        self.offset = float(plan["clock_offset_s"])
        self.hard_deadline = self.deadline + self.grace

    def controller(self, device_time: Optional[float]) -> Optional[float]:
        return None if device_time is None else round(device_time - self.offset, 6)

    def since_t0(self, device_time: float) -> str:
        return "%+.1f s" % (device_time - self.t0)


class ProfilerRun:
    """One profiler of the plan: its argv, its process, and what it left behind."""

    def __init__(self, spec: Dict[str, Any]) -> None:
        self.spec = spec
        self.name = spec["name"]  # type: str
        self.argv = list(spec.get("argv") or [])  # type: List[str]
        self.child = None  # type: Optional[Child]
        self.error = None  # type: Optional[str]  # why it was not started
        self.builtin = spec.get("builtin")  # type: Optional[str]
        self.sampler = None  # type: Optional[Sampler]
        self.post = []  # type: List[Dict[str, Any]]  # its post_argv steps, as they ran
        self.discarded = []  # type: List[str]
        self.tool_check = None  # type: Optional[Dict[str, Any]]  # the plan's tool_sha256
        self.cut_short = None  # type: Optional[str]  # stopped early by the runner: why
        self.ended_with_target = False  # still running when the launched program ended
        self.attach_tries = 0  # started again after giving up on a starting program

    @property
    def planned(self) -> bool:
        return self.spec["status"] == "planned"

    def active(self) -> bool:
        """Whether it is still at work: its process running or its sampler sampling."""
        if self.sampler is not None:
            return self.sampler.alive()
        return self.child is not None and not self.child.exited()

    @property
    def started(self) -> bool:
        return self.child is not None or self.sampler is not None

    def start_sampler(self, workdir: str, pid: Optional[int], deadline: float,
                      log: RunnerLog) -> None:
        """A builtin: the runner samples /proc itself, in a thread, until the deadline."""
        if self.builtin == "memory" and pid is None:
            self.error = "the target's pid is unknown: no memory series to sample"
            log("%s: not started: %s" % (self.name, self.error))
            return
        options = self.spec.get("options") or {}
        interval = float(options.get("interval_s", 1.0))
        output = os.path.join(workdir, self.spec["outputs"][0])
        self.sampler = Sampler(str(self.builtin), output, interval,
                               int(self.spec["max_bytes"]), deadline, log)
        self.sampler.start(pid)
        log("%s: sampling every %g s%s" % (self.name, interval,
                                            " (target pid %d)" % pid if pid else ""))

    def check_tool(self, hashes: ToolHashes, log: RunnerLog) -> bool:
        """Whether argv[0] may run: the plan pins the sha256 of a tool it pushed (py-spy);
        a binary that differs (damaged, replaced) is not run."""
        expected = self.spec.get("tool_sha256")
        if not expected or not self.argv:
            return True
        problem, found = hashes.problem(self.argv[0], expected)
        self.tool_check = {"path": self.argv[0], "expected": expected.lower(),
                           "sha256": found, "ok": problem is None}
        if problem is not None:
            self.error = problem
            log("%s: not started: %s" % (self.name, problem))
            return False
        return True

    def start(self, spawn: Callable[..., Child], workdir: str, pid: Optional[int],
              log: RunnerLog, hashes: Optional[ToolHashes] = None) -> None:
        """Start it with ``{pid}`` argv elements replaced; nothing else is substituted.
        A tool whose sha256 the plan pins is checked just before (see check_tool)."""
        if not self.check_tool(hashes or ToolHashes(), log):
            return
        if "{pid}" in self.argv:
            if pid is None:
                self.error = "its argv needs {pid} but the target's pid is unknown"
                log("%s: not started: %s" % (self.name, self.error))
                return
            self.argv = [str(pid) if arg == "{pid}" else arg for arg in self.argv]
        try:
            self.child = spawn(self.name, self.argv, workdir)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            self.error = "cannot start %s: %s" % (self.argv[0], os_error_text(exc))
            log("%s: %s" % (self.name, self.error))
            return
        log("%s: started pid %d: %s" % (self.name, self.child.pid, " ".join(self.argv)))

    def run_post(self, spawn: Callable[..., Child], workdir: str, kill_at: float,
                 stopping: Callable[[], bool], log: RunnerLog,
                 blocked: Callable[[], Optional[str]] = lambda: None) -> None:
        """Its post_argv, in order, once it has stopped: each a process of its own (cwd
        workdir, output to <name>.post<i>.stdout/.stderr), killed at ``kill_at``. A step in
        options.post_fallback runs only when the step before it failed (another version of
        the tool, say); it is ``not-needed`` otherwise. Nothing is substituted in argv.
        ``blocked`` says why no further step may start (free space below the floor)."""
        fallback = set((self.spec.get("options") or {}).get("post_fallback") or [])
        for index, argv in enumerate(self.spec.get("post_argv") or []):
            step = {"argv": list(argv), "status": "not-needed", "reason": None,
                    "exit_code": None, "fallback": index in fallback,
                    "started_at_device": None, "stopped_at_device": None,
                    "stderr_tail": ""}  # type: Dict[str, Any]
            self.post.append(step)
            if index in fallback and self.post[index - 1]["status"] != "failed":
                continue
            label = "%s.post%d" % (self.name, index)
            if stopping():
                step.update(status="failed", reason="not run: the runner was told to stop")
                continue
            if time.time() >= kill_at:
                step.update(status="failed", reason="not run: past deadline + grace")
                continue
            why_not = blocked()
            if why_not:
                step.update(status="failed", reason="not run: " + why_not)
                log("%s: post step %d: %s" % (self.name, index, step["reason"]))
                continue
            try:
                child = spawn(label, list(argv), workdir)
            except (OSError, subprocess.SubprocessError, ValueError) as exc:
                step.update(status="failed",
                            reason="cannot start %s: %s" % (argv[0], os_error_text(exc)))
                log("%s: post step %d: %s" % (self.name, index, step["reason"]))
                continue
            log("%s: post step %d: pid %d: %s" % (self.name, index, child.pid, " ".join(argv)))
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
            step.update(exit_code=child.exit_code, started_at_device=child.started_at,
                        stopped_at_device=child.stopped_at, stderr_tail=file_tail(stderr))
            code = child.exit_code
            if killed or (code is not None and code < 0):
                # By this loop or by the watchdog, whichever came first at deadline + grace.
                late = time.time() >= kill_at - 0.1
                step.update(status="failed", reason="killed by signal %d%s" % (
                    -code if code is not None and code < 0 else signal.SIGKILL,
                    " at deadline + grace" if late else ""))
            elif code != 0:
                hint = last_line(step["stderr_tail"])
                step.update(status="failed", reason="exit code %s%s" % (
                    child.exit_code, " (said: %s)" % hint if hint else ""))
            else:
                step["status"] = "ok"
            log("%s: post step %d: %s%s" % (self.name, index, step["status"],
                                             ": " + step["reason"] if step["reason"] else ""))

    def discard_files(self, workdir: str, log: RunnerLog) -> None:
        """Delete options.discard (intermediate files, e.g. an SQLite export) before packing."""
        for name in (self.spec.get("options") or {}).get("discard") or []:
            path = os.path.join(workdir, name)
            with contextlib.suppress(OSError):
                if not os.path.isdir(path) and os.path.lexists(path):
                    os.unlink(path)
                    self.discarded.append(name)
                    log("%s: discarded %s" % (self.name, name))

    def entry(self, workdir: str, clock: Clock, session_failure: Optional[str],
              watchdog_fired: bool, log: RunnerLog, busy: Optional[str] = None
              ) -> Dict[str, Any]:
        """The manifest's view of this profiler (caps its outputs and logs on the way).
        ``busy``: another session held a lock this one needed; nothing was started."""
        entry = {
            "status": "skipped", "reason": self.spec.get("reason"), "argv": self.argv,
            "exit_code": None, "started_at_device": None, "stopped_at_device": None,
            "started_at_controller": None, "stopped_at_controller": None,
            "stderr_tail": "", "stdout_tail": "", "outputs": {}, "signals_sent": [],
        }  # type: Dict[str, Any]
        if not self.planned:
            return entry
        if busy is not None:
            entry["reason"] = "not started: " + busy
            return entry
        if self.tool_check is not None:
            entry["tool_check"] = self.tool_check
        if self.builtin is not None:
            return self._sampler_entry(entry, workdir, clock, session_failure, log)
        child = self.child
        if child is None:
            reason = self.error or "not started: %s" % (session_failure or "unknown")
            entry.update(status="failed", reason=reason)
            return entry
        stdout = os.path.join(workdir, self.name + ".stdout")
        stderr = os.path.join(workdir, self.name + ".stderr")
        ran_s = child.stopped_at - child.started_at if child.stopped_at else None
        entry.update(
            exit_code=child.exit_code,
            started_at_device=child.started_at, stopped_at_device=child.stopped_at,
            started_at_controller=clock.controller(child.started_at),
            stopped_at_controller=clock.controller(child.stopped_at),
            stderr_tail=file_tail(stderr), stdout_tail=file_tail(stdout),
            signals_sent=self._signals_sent(watchdog_fired),
            data_quality=sampling_quality([stdout, stderr], self.argv, ran_s),
            cpu_s=child.cpu_s,
        )
        if self.attach_tries:
            entry["attach_tries"] = self.attach_tries + 1
        for path in (stdout, stderr):
            if keep_tail(path):
                log("%s: kept the last %d bytes of %s"
                    % (self.name, LOG_CAP_BYTES, os.path.basename(path)))
        problems = self._collect_outputs(workdir, entry["outputs"], log)
        if self.cut_short:
            problems.append(self.cut_short)
        ending = self._ending(entry["signals_sent"])
        if ending and not (self.ended_with_target and self.child.exit_code in (
                -signal.SIGINT, -signal.SIGTERM, 130, 143)):
            problems.append(ending)  # not when told to stop because the program had ended
        if self.spec.get("post_argv"):
            entry["post"] = self.post
            entry["discarded"] = self.discarded
            problems.extend(post_problems(self.post))
        if not any(info["bytes"] > 0 for info in entry["outputs"].values()):
            hint = last_line(entry["stderr_tail"], entry["stdout_tail"])
            entry["status"] = "failed"
            entry["reason"] = "; ".join(problems + (["said: " + hint] if hint else []))
        elif problems:
            entry["status"], entry["reason"] = "partial", "; ".join(problems)
        else:
            entry["status"], entry["reason"] = "ok", None
        return entry

    def _sampler_entry(self, entry: Dict[str, Any], workdir: str, clock: Clock,
                       session_failure: Optional[str], log: RunnerLog) -> Dict[str, Any]:
        """ok once it sampled and its output exists; partial when it cut or broke off."""
        sampler = self.sampler
        if sampler is None:
            reason = self.error or "not started: %s" % (session_failure or "unknown")
            entry.update(status="failed", reason=reason)
            return entry
        entry.update(
            argv=[], builtin=self.builtin,
            started_at_device=sampler.started_at, stopped_at_device=sampler.stopped_at,
            started_at_controller=clock.controller(sampler.started_at),
            stopped_at_controller=clock.controller(sampler.stopped_at),
            data_quality=sampler.quality(), cpu_s=sampler.cpu_s,
        )
        problems = self._collect_outputs(workdir, entry["outputs"], log)
        if sampler.dropped:
            name = self.spec["outputs"][0]
            if name in entry["outputs"]:
                entry["outputs"][name]["truncated"] = True
            problems.append("output reached max_bytes (%d): %d samples not written"
                            % (int(self.spec["max_bytes"]), sampler.dropped))
        if sampler.error:
            problems.append(sampler.error)
        if self.cut_short:
            problems.append(self.cut_short)
        if sampler.alive():
            problems.append("the sampler did not stop")
        if sampler.samples == 0:
            entry["status"] = "failed"
            entry["reason"] = "; ".join(problems) or "no sample was taken"
        elif problems:
            entry["status"], entry["reason"] = "partial", "; ".join(problems)
        else:
            entry["status"], entry["reason"] = "ok", None
        return entry

    def _signals_sent(self, watchdog_fired: bool) -> List[str]:
        assert self.child is not None
        sent = self.child.signals_sent()
        # The watchdog's handler records nothing (it may interrupt anything): a child that
        # died of SIGKILL the stop loop never sent was killed by the watchdog.
        if (watchdog_fired and self.child.exit_code == -signal.SIGKILL
                and not any(s.startswith("SIGKILL") for s in sent)):
            sent.append("SIGKILL(watchdog)")
        return sent

    def _ending(self, signals_sent: List[str]) -> Optional[str]:
        """How it ended, when that was not a clean exit 0."""
        assert self.child is not None
        code = self.child.exit_code
        if code is None:
            return "did not exit"
        if code > 0:
            return "exit code %d" % code
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "signal %d" % -code
            by_runner = any(sent.split("(")[0] == name for sent in signals_sent)
            return "killed by %s%s" % (name, " (sent by the runner)" if by_runner else "")
        return None

    def _collect_outputs(self, workdir: str, outputs: Dict[str, Any],
                         log: RunnerLog) -> List[str]:
        """Size (and cap) each declared output; the problems found, one phrase each."""
        problems = []  # type: List[str]
        for name in self.spec.get("outputs") or []:
            path = os.path.join(workdir, name)
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    problems.append("output '%s' is not a regular file" % name)
                    continue
                size, before = cap_output(path, int(self.spec["max_bytes"]))
            except FileNotFoundError:
                # A post step that may fail (another tool version's report name) leaves
                # its output missing by design.
                if name not in ((self.spec.get("options") or {}).get("optional_outputs") or []):
                    problems.append("output '%s' was not written" % name)
                continue
            except OSError as exc:
                problems.append("output '%s' unreadable: %s" % (name, os_error_text(exc)))
                continue
            outputs[name] = {"bytes": size, "truncated": size < before}
            if size < before:
                outputs[name]["original_bytes"] = before
                problems.append("output '%s' truncated to %d bytes (was %d)"
                                % (name, size, before))
                log("%s: truncated %s to %d bytes (was %d)" % (self.name, name, size, before))
            elif size == 0:
                problems.append("output '%s' is empty" % name)
        return problems


# =========================================================================== built-in samplers
#
# "system" and "memory" are sampled by the runner itself, in a thread, instead of by a
# profiler process: a few /proc and /sys files per interval, each kept open and re-read
# with one pread() at offset 0, so a sample costs a handful of syscalls and well under a
# millisecond of CPU. The threads start only after every process of the session was
# spawned (the pdeathsig preexec_fn must not run while another thread may hold a lock).

BUILTINS = ("system", "memory")
MIN_SAMPLE_INTERVAL_S = 0.05
MAX_SAMPLE_INTERVAL_S = 3600.0
PROC_ROOT = "/proc"
SYS_ROOT = "/sys"
READ_LIMIT = 1 << 16
MAX_THERMAL_ZONES = 32
MAX_CPUFREQ_CPUS = 256
SAMPLER_JOIN_S = 2.0
ZONE_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_TREE_PROCS = 64  # the target's descendants followed per sample (3 open files each)
CMDLINE_CHARS = 300


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK")) or 100
    except (ValueError, OSError, AttributeError):
        return 100


CLK_TCK = _clock_ticks()


class ProcFile:
    """One /proc or /sys file kept open and re-read from offset 0 on each sample.

    A /proc/PID file opened while the process lived fails once it is gone, even if the pid
    is reused meanwhile: the open descriptor is the guard against pid reuse. A file that
    cannot be opened or read returns None (edge kernels differ; nothing here is required).
    """

    def __init__(self, path: str, keep_open: bool = True) -> None:
        self.path = path
        self.keep_open = keep_open
        self.fd = None  # type: Optional[int]
        self.failed = False

    def read(self) -> Optional[str]:
        if self.failed:
            return None
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            data = os.pread(self.fd, READ_LIMIT, 0)
        except OSError:
            self.close()
            self.failed = True
            return None
        finally:
            if not self.keep_open:
                self.close()
        return data.decode("ascii", "replace")

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def read_once(path: str) -> Optional[str]:
    handle = ProcFile(path)
    try:
        return handle.read()
    finally:
        handle.close()


def _int(text: Any) -> Optional[int]:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def parse_kv_kb(text: Optional[str], keys: Tuple[str, ...]) -> Dict[str, Optional[int]]:
    """'Key:   123 kB' lines (meminfo, status, smaps_rollup) -> {key: 123} for ``keys``."""
    found = dict((key, None) for key in keys)  # type: Dict[str, Optional[int]]
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        if key in found:
            parts = value.split()
            found[key] = _int(parts[0]) if parts else None
    return found


def parse_cpu_times(text: Optional[str]) -> Dict[str, Tuple[int, int]]:
    """/proc/stat -> {"cpu": (busy, total), "cpu0": ...} in clock ticks."""
    times = {}  # type: Dict[str, Tuple[int, int]]
    for line in (text or "").splitlines():
        if not line.startswith("cpu"):
            break  # the cpu lines come first; the rest (intr, ...) is not needed
        parts = line.split()
        values = [_int(v) for v in parts[1:9]]
        if len(values) < 4 or any(v is None for v in values):
            continue
        nums = [v for v in values if v is not None]
        idle = nums[3] + (nums[4] if len(nums) > 4 else 0)  # idle + iowait
        total = sum(nums)  # guest time is already inside user and nice
        times[parts[0]] = (total - idle, total)
    return times


def cpu_pct(before: Tuple[int, int], after: Tuple[int, int]) -> Optional[float]:
    busy, total = after[0] - before[0], after[1] - before[1]
    if total <= 0 or busy < 0:
        return None
    return round(min(100.0, 100.0 * busy / total), 1)


def _mb(kb: Optional[int]) -> Optional[float]:
    return None if kb is None else round(kb / 1024.0, 1)


class TargetFiles:
    """The target's /proc files, opened once."""

    def __init__(self, pid: int, with_io: bool) -> None:
        base = "%s/%d/" % (PROC_ROOT, pid)
        self.pid = pid
        self.stat = ProcFile(base + "stat")
        self.status = ProcFile(base + "status")
        # Bound to the memory of the program it was opened on: an exec (a wrapper script
        # that execs Python) would leave it reading nothing, so it is opened per sample.
        self.smaps = ProcFile(base + "smaps_rollup", keep_open=False)
        self.io = ProcFile(base + "io") if with_io else None

    def close(self) -> None:
        for handle in (self.stat, self.status, self.smaps, self.io):
            if handle is not None:
                handle.close()


def read_target_stat(text: Optional[str]) -> Optional[Tuple[str, int, int]]:
    """(state, utime + stime in ticks, num_threads) from /proc/PID/stat text."""
    if not text or ")" not in text:
        return None
    rest = text[text.rindex(")") + 2:].split()
    if len(rest) < 20:
        return None
    utime, stime, threads = _int(rest[11]), _int(rest[12]), _int(rest[17])
    if utime is None or stime is None or threads is None:
        return None
    return rest[0], utime + stime, threads


def read_member_stat(text: Optional[str]) -> Optional[Tuple[str, int, int, int, int]]:
    """(state, ppid, starttime, own ticks, reaped children's ticks) from /proc/PID/stat."""
    if not text or ")" not in text:
        return None
    rest = text[text.rindex(")") + 2:].split()
    values = [_int(v) for v in (rest[1:2] + rest[11:15] + rest[19:20])] if len(rest) > 19 else []
    if len(values) != 6 or any(v is None for v in values):
        return None
    ppid, utime, stime, cutime, cstime, start = [int(v or 0) for v in values]
    return rest[0], ppid, start, utime + stime, cutime + cstime


class ProcessTree:
    """The target and its descendants, found again at every sample: each one's RSS, PSS
    and CPU, and their totals. Children come from /proc/PID/task/TID/children where the
    kernel has it (CONFIG_PROC_CHILDREN), else from every process's ppid in /proc/*/stat.

    The CPU total is a counter: each member's own time plus the time of the children it
    reaped (cutime + cstime), so a child that ends and is reaped moves its time into its
    parent's and the total never drops (a zombie still counts its final time).
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.members = {}  # type: Dict[int, Tuple[TargetFiles, int]]  # pid -> (files, start)
        self.children_files = os.path.exists("%s/%d/task/%d/children" % (PROC_ROOT, root, root))
        self.overflow = False  # more descendants than MAX_TREE_PROCS: the rest not counted

    def close(self) -> None:
        for files, _ in self.members.values():
            files.close()
        self.members = {}

    def _kids(self, pid: int, by_parent: Optional[Dict[int, List[int]]]) -> List[int]:
        if by_parent is not None:
            return by_parent.get(pid, [])
        kids = []  # type: List[int]
        try:
            tids = os.listdir("%s/%d/task" % (PROC_ROOT, pid))
        except OSError:
            return kids
        for tid in tids:
            kids.extend(_int(v) or 0 for v in (read_once(
                "%s/%d/task/%s/children" % (PROC_ROOT, pid, tid)) or "").split())
        return [k for k in kids if k > 0]

    def _by_parent(self) -> Dict[int, List[int]]:
        found = {}  # type: Dict[int, List[int]]
        for name in os.listdir(PROC_ROOT):
            if name.isdigit():
                info = read_member_stat(read_once("%s/%s/stat" % (PROC_ROOT, name)))
                if info is not None:
                    found.setdefault(info[1], []).append(int(name))
        return found

    def sample(self, root: Dict[str, Any]) -> Dict[str, Any]:
        """One sample of the whole tree; the root's memory as the target record read it."""
        by_parent = None if self.children_files else self._by_parent()
        order, queue, new = [], [self.root], []  # type: List[int], List[int], List[Any]
        while queue and len(order) < MAX_TREE_PROCS:
            pid = queue.pop(0)
            if pid in order:
                continue
            order.append(pid)
            queue.extend(self._kids(pid, by_parent))
        self.overflow = self.overflow or bool(queue)
        for pid in [p for p in self.members if p not in order]:
            self.members.pop(pid)[0].close()
        totals = {"rss_kb": 0, "pss_kb": 0, "swap_kb": 0}  # type: Dict[str, Any]
        ticks, rows = 0, []  # type: int, List[List[Any]]
        for pid in order:
            files = self.members[pid][0] if pid in self.members else TargetFiles(pid, False)
            info = read_member_stat(files.stat.read())
            if info is None or (pid in self.members and info[2] != self.members[pid][1]):
                files.close()  # gone (or another process under a reused pid)
                self.members.pop(pid, None)
                continue
            if pid not in self.members:
                self.members[pid] = (files, info[2])
                new.append({"pid": pid, "ppid": info[1], "start": info[2],
                            "cmd": shorten(" ".join(read_cmdline(pid) or []), CMDLINE_CHARS)})
            ticks += info[3] + info[4]
            if pid == self.root:
                mem, pss = {"VmRSS": root.get("rss_kb"), "VmSwap": root.get("swap_kb")}, \
                    root.get("pss_kb")
            else:
                mem = parse_kv_kb(files.status.read(), ("VmRSS", "VmSwap"))
                pss = (None if info[0] in ("Z", "X")
                       else parse_kv_kb(files.smaps.read(), ("Pss",))["Pss"])
            for key, value in (("rss_kb", mem["VmRSS"]), ("swap_kb", mem["VmSwap"]),
                               ("pss_kb", pss)):
                if value is not None and totals[key] is not None:
                    totals[key] += value
                elif key == "pss_kb" and info[0] not in ("Z", "X"):
                    totals[key] = None  # a member's PSS is unreadable: no honest total
            rows.append([pid, mem["VmRSS"], pss, round(info[3] / float(CLK_TCK), 2)])
        totals.update(procs=len(rows), cpu_s=round(ticks / float(CLK_TCK), 3), members=rows)
        if new:
            totals["new"] = new
        if self.overflow:
            totals["overflow"] = True
        return totals


def status_gone(status: Optional[str]) -> bool:
    for line in (status or "").splitlines():
        if line.startswith("State:"):
            return line.split()[1:2] in (["Z"], ["X"])
    return status is None


def thermal_zones() -> List[Tuple[str, ProcFile]]:
    """(name, temp file) per thermal zone; names sanitized and made unique."""
    base = SYS_ROOT + "/class/thermal"
    try:
        entries = [n for n in os.listdir(base) if n.startswith("thermal_zone")]
    except OSError:
        return []
    entries.sort(key=lambda n: _int(n[len("thermal_zone"):]) or 0)
    zones = []  # type: List[Tuple[str, ProcFile]]
    seen = set()  # type: set
    for entry in entries[:MAX_THERMAL_ZONES]:
        kind = (read_once("%s/%s/type" % (base, entry)) or "").strip()
        name = ZONE_NAME_RE.sub("_", kind)[:40].strip("_.") or entry
        if name in seen:
            name = "%s-%s" % (name, entry[len("thermal_zone"):])
        seen.add(name)
        zones.append((name, ProcFile("%s/%s/temp" % (base, entry))))
    return zones


def cpufreq_cores() -> List[Tuple[int, ProcFile, ProcFile, Optional[int]]]:
    """(cpu, scaling_cur_freq, scaling_max_freq, cpuinfo_max_freq kHz) per core with cpufreq."""
    base = SYS_ROOT + "/devices/system/cpu"
    try:
        names = [n for n in os.listdir(base) if n.startswith("cpu") and n[3:].isdigit()]
    except OSError:
        return []
    cores = []  # type: List[Tuple[int, ProcFile, ProcFile, Optional[int]]]
    for name in sorted(names, key=lambda n: int(n[3:]))[:MAX_CPUFREQ_CPUS]:
        directory = "%s/%s/cpufreq/" % (base, name)
        if not os.path.exists(directory + "scaling_cur_freq"):
            continue
        hw_max = _int((read_once(directory + "cpuinfo_max_freq") or "").strip())
        cores.append((int(name[3:]), ProcFile(directory + "scaling_cur_freq"),
                      ProcFile(directory + "scaling_max_freq"), hw_max))
    return cores


class Sampler:
    """A built-in profiler: samples every interval from its start until the deadline.

    It stops early when the target it watches is gone; a target that was never known is
    no reason to stop the system-wide series. Each sample is one JSON object on one line,
    flushed at once, so whatever happens to the runner the file holds whole samples.
    """

    def __init__(self, kind: str, path: str, interval: float, max_bytes: int,
                 deadline: float, log: RunnerLog) -> None:
        self.kind = kind
        self.path = path
        self.interval = interval
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.log = log
        self.samples = 0
        self.dropped = 0  # samples not written: the output reached max_bytes
        self.missed = 0  # intervals skipped because a sample came late
        self.written = 0
        self.cpu_s = 0.0  # the sampler thread's own CPU time
        self.error = None  # type: Optional[str]
        self.ended = None  # type: Optional[str]  # why it stopped
        self.started_at = None  # type: Optional[float]
        self.stopped_at = None  # type: Optional[float]
        self.unreadable = []  # type: List[str]
        self.pid = None  # type: Optional[int]
        self.stop_event = threading.Event()
        self.final_sample = True  # stop() takes one last sample, unless told not to write
        self.stop_reason = "stopped"
        self.thread = None  # type: Optional[threading.Thread]
        self.target = None  # type: Optional[TargetFiles]
        self.tree = None  # type: Optional[ProcessTree]
        self.prev_cpu = {}  # type: Dict[str, Tuple[int, int]]
        self.prev_target = None  # type: Optional[Tuple[float, int]]
        self.proc_stat = ProcFile(PROC_ROOT + "/stat")
        self.loadavg = ProcFile(PROC_ROOT + "/loadavg")
        self.meminfo = ProcFile(PROC_ROOT + "/meminfo")
        self.zones = []  # type: List[Tuple[str, ProcFile]]
        self.cores = []  # type: List[Tuple[int, ProcFile, ProcFile, Optional[int]]]

    # ------------------------------------------------------------------ control

    def start(self, pid: Optional[int]) -> None:
        self.pid = pid
        self.started_at = time.time()
        self.thread = threading.Thread(target=self._run, name="fleetprof-" + self.kind)
        self.thread.daemon = True  # never keeps the runner alive past its own end
        self.thread.start()

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self, final_sample: bool = True, reason: str = "stopped") -> None:
        """Take one last sample now (unless one was just taken, or ``final_sample`` is
        false: the disk is past its floor) and end the thread; ``reason``: why it ended
        when that last sample is not taken."""
        self.stop_reason = reason
        if not final_sample:
            self.final_sample = False
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(SAMPLER_JOIN_S)

    # ------------------------------------------------------------------ loop

    def _run(self) -> None:
        started_cpu = time.thread_time() if hasattr(time, "thread_time") else None
        handle = None
        try:
            handle = open(self.path, "w", encoding="utf-8")
            self._open_sources()
            self._loop(handle)
        except Exception as exc:  # a sampler bug must not take the session down
            self.error = "sampler error: %s: %s" % (type(exc).__name__, exc)
            self.log("%s: %s\n%s" % (self.kind, self.error, traceback.format_exc()))
        finally:
            if handle is not None:
                with contextlib.suppress(OSError):
                    handle.close()
            for source in self._sources():
                source.close()
            if self.target is not None:
                self.target.close()
            if self.tree is not None:
                self.tree.close()
            if started_cpu is not None:
                self.cpu_s = round(time.thread_time() - started_cpu, 4)
            self.stopped_at = time.time()

    def _open_sources(self) -> None:
        if self.pid is not None:
            self.target = TargetFiles(self.pid, with_io=self.kind == "system")
            self.tree = ProcessTree(self.pid)
        if self.kind == "system":
            self.zones = thermal_zones()
            self.cores = cpufreq_cores()

    def _sources(self) -> List[ProcFile]:
        files = [self.proc_stat, self.loadavg, self.meminfo] + [f for _, f in self.zones]
        for _, cur, cap, _ in self.cores:
            files += [cur, cap]
        return files

    def _loop(self, handle: Any) -> None:
        next_at = time.time()
        last = None  # type: Optional[float]
        while True:
            now = time.time()
            final = self.stop_event.is_set() or now >= self.deadline
            if final and last is not None and (
                    now - last < min(0.05, self.interval / 4.0) or not self.final_sample):
                self.ended = "deadline" if now >= self.deadline else self.stop_reason
                return
            record = self._sample(now)
            last = now
            if record is None:
                self.ended = "target exited"
                self.log("%s: the target is gone: sampling stopped" % self.kind)
                return
            self._write(handle, record)
            if final:
                self.ended = "deadline" if now >= self.deadline else self.stop_reason
                return
            next_at += self.interval
            now = time.time()
            if next_at <= now:  # a slow sample (or a clock step): skip what was missed
                skipped = int((now - next_at) // self.interval) + 1
                self.missed += skipped
                next_at += skipped * self.interval
            self.stop_event.wait(max(0.0, min(next_at, self.deadline) - time.time()))

    def _write(self, handle: Any, record: Dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        if self.written + len(line) > self.max_bytes:
            self.dropped += 1
            return
        handle.write(line)
        handle.flush()
        self.written += len(line)
        self.samples += 1

    def _note(self, what: str) -> None:
        if what not in self.unreadable:
            self.unreadable.append(what)
            self.log("%s: %s unreadable on this device" % (self.kind, what))

    # ------------------------------------------------------------------ one sample

    def _sample(self, now: float) -> Optional[Dict[str, Any]]:
        """One record; None when the watched target is gone."""
        record = {"t": round(now, 3)}  # type: Dict[str, Any]
        if self.kind == "system":
            record.update(self._system())
        if self.target is not None:
            target = self._target(now)
            if target is None:
                return None
            record["target"] = target
            if self.tree is not None:
                record["tree"] = self.tree.sample(target)
        elif self.kind == "memory":
            return None  # nothing to watch
        return record

    def _system(self) -> Dict[str, Any]:
        out = {}  # type: Dict[str, Any]
        times = parse_cpu_times(self.proc_stat.read())
        if not times:
            self._note("/proc/stat")
        prev, self.prev_cpu = self.prev_cpu, times
        if prev:
            both = "cpu" in times and "cpu" in prev
            out["cpu_pct"] = cpu_pct(prev["cpu"], times["cpu"]) if both else None
            cores = {}  # type: Dict[str, Optional[float]]
            for name, value in times.items():
                if name != "cpu" and name in prev:
                    cores[name] = cpu_pct(prev[name], value)
            out["cpu_core_pct"] = cores
        load = (self.loadavg.read() or "").split()[:3]
        loads = []  # type: List[float]
        for value in load:
            with contextlib.suppress(ValueError):
                loads.append(float(value))
        out["load"] = loads if len(loads) == 3 else None
        mem = parse_kv_kb(self.meminfo.read(),
                          ("MemTotal", "MemAvailable", "SwapTotal", "SwapFree"))
        out["mem_mb"] = {"total": _mb(mem["MemTotal"]), "available": _mb(mem["MemAvailable"]),
                         "swap_total": _mb(mem["SwapTotal"]), "swap_free": _mb(mem["SwapFree"])}
        if self.zones:
            temps = {}  # type: Dict[str, Optional[float]]
            for name, temp in self.zones:
                milli = _int((temp.read() or "").strip())
                temps[name] = None if milli is None else milli / 1000.0
            out["thermal_c"] = temps
        if self.cores:
            freqs = []  # type: List[Dict[str, Any]]
            for cpu, cur, cap, hw_max in self.cores:
                freqs.append({"cpu": cpu, "cur_khz": _int((cur.read() or "").strip()),
                              "max_khz": hw_max,
                              "policy_max_khz": _int((cap.read() or "").strip())})
            out["cpufreq"] = freqs
        return out

    def _target(self, now: float) -> Optional[Dict[str, Any]]:
        files = self.target
        assert files is not None
        out = {"pid": files.pid}  # type: Dict[str, Any]
        status = files.status.read()
        if status_gone(status):
            return None
        mem = parse_kv_kb(status, ("VmRSS", "VmSwap", "voluntary_ctxt_switches",
                                   "nonvoluntary_ctxt_switches", "Threads"))
        out["rss_kb"] = mem["VmRSS"]
        out["swap_kb"] = mem["VmSwap"]
        pss = parse_kv_kb(files.smaps.read(), ("Pss",))["Pss"]
        if pss is None:
            self._note("pss")
        out["pss_kb"] = pss
        if self.kind != "system":
            return out
        stat_info = read_target_stat(files.stat.read())
        if stat_info is None:
            return None
        state, ticks, threads = stat_info
        if state in ("Z", "X"):
            return None
        out["cpu_s"] = round(ticks / float(CLK_TCK), 3)
        prev, self.prev_target = self.prev_target, (now, ticks)
        out["cpu_pct"] = (round(100.0 * (ticks - prev[1]) / CLK_TCK / (now - prev[0]), 1)
                          if prev is not None and now > prev[0] else None)
        out["threads"] = threads
        out["ctx_voluntary"] = mem["voluntary_ctxt_switches"]
        out["ctx_nonvoluntary"] = mem["nonvoluntary_ctxt_switches"]
        io_text = files.io.read() if files.io is not None else None
        if io_text is None:
            self._note("io")
        counters = parse_kv_kb(io_text, ("rchar", "wchar", "read_bytes", "write_bytes"))
        out.update(counters)
        return out

    # ------------------------------------------------------------------ manifest

    def quality(self) -> Dict[str, Any]:
        ran = (self.stopped_at or time.time()) - (self.started_at or time.time())
        return {"samples": self.samples, "interval_s": self.interval, "missed": self.missed,
                "dropped": self.dropped, "sampler_cpu_s": self.cpu_s,
                "ran_s": round(max(0.0, ran), 3), "ended": self.ended,
                "target_pid": self.pid, "unreadable": list(self.unreadable),
                "clk_tck": CLK_TCK,
                "tree": None if self.tree is None else {
                    "children_files": self.tree.children_files,
                    "overflow": self.tree.overflow, "max_procs": MAX_TREE_PROCS}}


# =========================================================================== session


class RunnerLog:
    """runner.log: one line per step, stamped with UTC time and the offset from T0."""

    def __init__(self, path: str, t0: float) -> None:
        self.t0 = t0
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    def __call__(self, message: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        with contextlib.suppress(OSError, ValueError):  # a full disk must not stop the run
            self.handle.write("%s.%03dZ T0%+.3fs %s\n"
                              % (stamp, int(now % 1 * 1000), now - self.t0, message))
            self.handle.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()


class Session:
    """One session's timeline: target, T0, profilers, window, stop; then its manifest."""

    def __init__(self, plan: Dict[str, Any], log: RunnerLog) -> None:
        self.plan = plan
        self.log = log
        self.workdir = plan["workdir"]  # type: str
        self.clock = Clock(plan)
        self.target = Target(plan["target"], log)
        self.disk = DiskFloor(self.workdir, plan.get("min_free_mb"))
        self.probe = (Probe(plan["target"], self.workdir, log, self.disk.floor_mb)
                      if self.target.mode == "probe" else None)  # type: Optional[Probe]
        self.profilers = [ProfilerRun(p) for p in plan["profilers"]]
        self.children = []  # type: List[Child]  # everything started, for the watchdog
        self.failure = None  # type: Optional[str]  # why the session could not run
        self.runner_error = None  # type: Optional[str]  # a runner bug, caught
        self.abort = None  # type: Optional[Tuple[str, float]]  # (signal, when) told to stop
        self.watchdog_fired_at = None  # type: Optional[float]
        self.late_by_s = None  # type: Optional[float]
        # When and why the measurement ended: "deadline", "target finished" (a launched
        # program ended by itself, code 0 or unknown), "target failed", "target exited"
        # (attach), "profilers stopped", "probe finished", "disk floor", "stopped by SIG...".
        self.window_end = None  # type: Optional[Tuple[float, str]]
        self.launcher = None  # type: Optional[ProfilerRun]  # via_profiler: the one that started it
        self.started_at = None  # type: Optional[float]
        self.stopped_at = None  # type: Optional[float]
        self.stopped = False
        self.busy = None  # type: Optional[BusyError]  # another session holds a lock
        self.host_lock = None  # type: Optional[str]  # its path; main() holds it
        self.target_lock = None  # type: Optional[SessionLock]
        self.target_lock_path = None  # type: Optional[str]
        self.disk_stop = None  # type: Optional[Tuple[str, float]]  # (reason, when)
        self.hashes = ToolHashes()
        launchers = [p for p in self.profilers if p.planned and p.spec.get("launch_argv")]
        if self.target.via_profiler and not launchers and any(
                p.planned and p.builtin for p in self.profilers):
            # Only built-in samplers, which need no ptrace: the runner launches the target.
            self.target.via_profiler = False

    # ------------------------------------------------------------------ guards

    def install_guards(self) -> None:
        """SIGTERM/SIGINT/SIGHUP end the session early; SIGALRM is the hard-deadline watchdog."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGALRM, self._on_watchdog)
        signal.setitimer(signal.ITIMER_REAL, max(0.01, self.clock.hard_deadline - time.time()))

    @staticmethod
    def disarm_watchdog() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    # Handlers run between two bytecodes of the main thread: they set flags and send
    # signals, and touch no structure the interrupted code may be walking.

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        if self.abort is None:
            self.abort = (signal.Signals(signum).name, time.time())
        else:  # told twice: no more waiting
            self.kill_everything()

    def _on_watchdog(self, _signum: int, _frame: Any) -> None:
        self.watchdog_fired_at = time.time()
        self.kill_everything()

    def stop_samplers(self) -> None:
        ended = self.window_end is not None and self.window_end[1].startswith("target ")
        for prof in self.profilers:
            if prof.sampler is not None:
                prof.sampler.stop(final_sample=self.disk_stop is None,
                                  reason="target exited" if ended else "stopped")

    def kill_everything(self) -> None:
        for child in tuple(self.children):
            kill_quietly(child.pid, signal.SIGKILL, group=True)

    def _spawn(self, label: str, argv: List[str], cwd: str,
               env: Optional[Dict[str, str]] = None) -> Child:
        child = Child(argv, cwd, os.path.join(self.workdir, label + ".stdout"),
                      os.path.join(self.workdir, label + ".stderr"), env)
        self.children.append(child)
        return child

    # ------------------------------------------------------------------ timeline

    def run(self) -> None:
        try:
            self._run_steps()
        finally:
            self.stop_everything()
        self.post_process()

    def post_process(self) -> None:
        """After everything stopped, before the manifest: each started profiler's post_argv
        (bounded by deadline + grace, and the watchdog, like everything else), then the
        files its plan discards."""
        kill_at = self.clock.hard_deadline
        for prof in self.profilers:
            if prof.child is None:
                continue
            if prof.spec.get("post_argv"):
                prof.run_post(self._spawn, self.workdir, kill_at,
                              lambda: self.abort is not None, self.log, self._disk_full)
            prof.discard_files(self.workdir, self.log)

    def _run_steps(self) -> None:
        clock, target = self.clock, self.target
        if self.busy is not None:
            return
        if self.probe is None and not any(p.planned for p in self.profilers):
            self._fail("no profiler was planned (%s)" % "; ".join(
                "%s: %s" % (p.name, p.spec.get("reason")) for p in self.profilers))
            return
        if time.time() >= clock.deadline:
            self._fail("the session window had closed when the runner started "
                       "(deadline passed %.1f s ago)" % (time.time() - clock.deadline))
            return
        if not self._enough_disk():
            return
        if not self._wait_until(clock.t0 - WARMUP_S):
            return
        try:
            if target.mode == "attach":
                target.resolve()
                if not self._lock_target():
                    return
        except TargetError as exc:
            self._fail(str(exc))
            return
        self._hash_tools()
        if not self._wait_until(clock.t0):
            return
        self.late_by_s = round(max(0.0, time.time() - clock.t0), 3)
        if self.late_by_s > 0.05:
            self.log("late: starting %.3f s after T0" % self.late_by_s)
        if not self._enough_disk():
            return
        if target.mode == "launch" and not target.via_profiler:
            # At T0, the profilers right after it: the profile starts with the program.
            try:
                target.launch(self._spawn, self.workdir)
            except TargetError as exc:
                self._fail(str(exc))
                return
        elif target.check():
            code = target.exit_code
            self._fail("target pid %s exited before T0%s"
                       % (target.pid, " with code %d" % code if code is not None else ""))
            return
        self._start_profilers()
        if self.probe is not None and self.failure is None:
            # The benchmarks run here, in the main thread, from T0; samplers run alongside.
            if self.started_at is None:
                self.started_at = time.time()
            try:
                self.probe.run(self._spawn, clock.deadline, lambda: self.abort is not None)
            finally:  # its workers have exited: nothing left for the watchdog to kill
                self.children = [c for c in self.children if c not in self.probe.children]
        if any(p.started for p in self.profilers):
            self._watch_window()
        elif self.probe is not None and self.failure is None:
            now = time.time()
            self.window_end = (min(now, clock.deadline),
                               "deadline" if now >= clock.deadline else "probe finished")

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self.log("failed: " + reason)

    def set_busy(self, busy: BusyError) -> None:
        self.busy = busy
        self.log(busy.reason + ": nothing was started")

    def _lock_target(self) -> bool:
        """One ptrace sampler per process: lock the resolved target for this session, in
        the directory every user shares; False (busy or failed) when it cannot be had."""
        ref = self.target.ref
        assert ref is not None
        path = target_lock_path(ref.pid, ref.starttime)
        self.target_lock_path = path
        what = "target pid %d (lock %s)" % (ref.pid, path)
        try:
            self.target_lock = SessionLock.acquire(
                path, what, lock_holder(self.plan, private=False), shared=True)
        except BusyError as exc:
            self.set_busy(exc)
            return False
        except OSError as exc:
            self._fail("cannot lock target pid %d (%s): %s"
                       % (ref.pid, path, os_error_text(exc)))
            return False
        self.log("lock: holding %s" % path)
        return True

    def release_target(self) -> None:
        if self.target_lock is not None:
            self.target_lock.release(unlink=True)
            self.target_lock = None

    def _hash_tools(self) -> None:
        """Hash the pinned tools now, before T0, so checking them at spawn time is quick."""
        for prof in self.profilers:
            if prof.planned and prof.spec.get("tool_sha256"):
                for argv in (prof.spec.get("argv"), prof.spec.get("launch_argv")):
                    if argv:
                        with contextlib.suppress(OSError):
                            self.hashes.digest(argv[0])

    def _enough_disk(self) -> bool:
        """False (the session failed, nothing more starts) when free space is below the floor."""
        free = self.disk.below()
        if free is None:
            return True
        self._fail(self.disk.too_little(free) + ": nothing was started")
        return False

    def _disk_full(self) -> Optional[str]:
        free = self.disk.below()
        return None if free is None else self.disk.too_little(free)

    def _check_disk_in_window(self) -> bool:
        """True when free space fell below the floor: every profiler is to stop now."""
        free = self.disk.below()
        if free is None:
            return False
        now = time.time()
        reason = self.disk.fell(free)
        self.disk.fell_below_at = now
        self.disk_stop = (reason, now)
        for prof in self.profilers:
            if prof.active():
                prof.cut_short = "stopped at %s: free space below the floor" % (
                    self.clock.since_t0(now))
        self.log("disk: %s: stopping every profiler" % reason)
        return True

    def _wait_until(self, when: float) -> bool:
        """Sleep until ``when`` on the device clock; False when told to stop meanwhile."""
        while self.abort is None:
            remaining = when - time.time()
            if remaining <= 0:
                return True
            time.sleep(min(remaining, 0.25))  # re-read the clock: NTP may step it
        self._fail("runner stopped by %s before T0" % self.abort[0])
        return False

    def _start_profilers(self) -> None:
        self.started_at = time.time()
        planned = [p for p in self.profilers if p.planned]
        for prof in self.profilers:
            if not prof.planned:
                self.log("%s: skipped: %s" % (prof.name, prof.spec.get("reason")))
        if self.target.via_profiler:
            launcher = next((p for p in planned if p.spec.get("launch_argv")), None)
            if launcher is None:
                self._fail("via_profiler is set but no planned profiler has a launch_argv")
                return
            launcher.argv = list(launcher.spec["launch_argv"])
            self.launcher = launcher
            launcher.start(self._spawn, self.workdir, None, self.log, self.hashes)
            if launcher.child is not None:
                self.target.adopt_child_of(launcher.child, launcher.name)
            planned.remove(launcher)
        for prof in planned:
            if prof.builtin is None:
                prof.start(self._spawn, self.workdir, self.target.pid, self.log, self.hashes)
        # Threads only now: every process of the session has been spawned.
        for prof in planned:
            if prof.builtin is not None:
                prof.start_sampler(self.workdir, self.target.pid, self.clock.deadline, self.log)

    def _watch_window(self) -> None:
        self.log("window: profiling until the deadline")
        disk_at = time.time() + DISK_CHECK_S
        target = self.target
        while self.abort is None:
            now = time.time()
            if now >= self.clock.deadline:
                self.window_end = (self.clock.deadline, "deadline")
                break
            if now >= disk_at:
                disk_at = now + DISK_CHECK_S
                if self._check_disk_in_window():
                    self.window_end = (now, "disk floor")
                    break
            if target.child is not None:
                self._attach_again(now)
            if target.check() and target.mode == "launch" and target.exited_at is not None:
                # The program is the measurement: its end ends the window, complete when
                # it ended by itself without failing.
                ended = target.exited_at
                why = "target finished" if target.finished() else "target failed"
                self.window_end = (ended, why)
                self.log("window: %s at %s" % (why, self.clock.since_t0(ended)))
                for prof in self.profilers:
                    if prof is not self.launcher and prof.active():
                        prof.ended_with_target = True
                break
            if not any(p.active() for p in self.profilers):
                self.log("window: every profiler stopped before the deadline")
                gone = target.exited_at
                self.window_end = ((gone, "target exited") if gone is not None
                                   else (now, "profilers stopped"))
                break
            time.sleep(min(WINDOW_POLL_S, max(0.0, self.clock.deadline - now)))
        if self.window_end is None and self.abort is not None:
            self.window_end = (self.abort[1], "stopped by " + self.abort[0])
        target.check()

    def _attach_again(self, now: float) -> None:
        """A profiler that attaches by pid (py-spy) to the program the runner just
        launched, and gave up while it was starting (not Python yet: a wrapper that execs
        Python later, a slow start), is started again while the program is young."""
        target = self.target
        for prof in self.profilers:
            child = prof.child
            if (child is None or "{pid}" not in (prof.spec.get("argv") or [])
                    or prof.attach_tries >= ATTACH_TRIES or not child.exited()
                    or child.exit_code == 0 or target.check()
                    or now - (target.child.started_at if target.child else now) > ATTACH_RETRY_S):
                continue
            prof.attach_tries += 1
            text = file_tail(os.path.join(self.workdir, prof.name + ".stderr"))
            said = last_line("\n".join(line for line in text.splitlines()
                                       if line.startswith("Error")), text)
            self.log("%s: exited with code %s at %s while the program started%s: starting it "
                     "again" % (prof.name, child.exit_code, self.clock.since_t0(now),
                                " (said: %s)" % said if said else ""))
            prof.start(self._spawn, self.workdir, target.pid, self.log, self.hashes)

    def stop_everything(self) -> None:
        """Stop the launched target and the profilers; nothing is left at deadline + grace.

        Profilers get until deadline + 2 s to stop by themselves (py-spy has --duration),
        then SIGINT (py-spy writes its output on SIGINT), then SIGKILL to their process
        group at deadline + grace. A launched target gets SIGTERM now, SIGKILL 3 s later.
        Told to stop (SIGTERM to the runner), or free space below the floor, all of it
        happens at once, within 3 s.
        """
        if self.stopped:
            return
        self.stopped = True
        clock = self.clock
        self.stop_samplers()  # before the target is stopped: a last sample of it alive
        sigint_at = clock.deadline + min(SIGINT_AFTER_S, clock.grace / 2.0)
        stop_from = time.time()
        if self.children:
            self.log("stop: stopping what the runner started")
        ended = self.window_end[0] if self.window_end and self.window_end[1].startswith(
            "target ") and self.target.mode == "launch" else None
        while True:
            now = time.time()
            kill_at = clock.hard_deadline
            for early in (self.abort, self.disk_stop):
                if early is not None:
                    sigint_at = min(sigint_at, early[1])
                    kill_at = min(kill_at, early[1] + ABORT_WAIT_S)
            self.target.check()
            busy = self.target.stop_step(now, stop_from, kill_at)
            for prof in self.profilers:
                if prof.child is None:
                    continue
                first_at, last_at = sigint_at, kill_at
                if ended is not None and prof is not self.launcher:
                    # The launched program ended: py-spy --pid stops by itself; a
                    # system-wide sampler is told to. The launcher (nsys writing its
                    # report) keeps the deadline's schedule.
                    first_at = min(first_at, ended + TARGET_END_WAIT_S)
                    last_at = min(last_at, first_at + ABORT_WAIT_S)
                busy = prof.child.stop_step(now, signal.SIGINT, first_at, last_at,
                                            group_first=False) or busy
            if not busy:
                break
            if now >= kill_at + 2.0:
                self.log("stop: some processes survived SIGKILL; giving up waiting")
                break
            time.sleep(STOP_POLL_S)
        self.target.check()
        self.kill_everything()  # a last sweep: nothing the runner started outlives it
        if self.started_at is not None:
            stops = [p.child.stopped_at or time.time() for p in self.profilers if p.child]
            stops += [p.sampler.stopped_at or time.time() for p in self.profilers if p.sampler]
            self.stopped_at = max(stops) if stops else time.time()
        if self.watchdog_fired_at is not None:
            self.log("watchdog: hard deadline reached, killed every process group left")
        if self.children:
            self.log("stop: done")

    # ------------------------------------------------------------------ results

    def outcome(self, profilers: Dict[str, Dict[str, Any]]) -> Tuple[str, Optional[str]]:
        """The session's status and one-line reason, from everything that happened."""
        if self.busy is not None:
            return "busy", self.busy.reason
        if self.failure:
            return "failed", self.failure
        planned = [(name, e) for name, e in profilers.items() if e["status"] != "skipped"]
        reasons = [self.disk_stop[0]] if self.disk_stop else []  # type: List[str]
        if self.runner_error:
            reasons.append(self.runner_error)
        if self.probe is not None:
            # A probe session is ok when its benchmarks ran; profilers are extras.
            if not self.probe.ran():
                reasons.append("no probe benchmark ran: " + (
                    "; ".join(self.probe.problems()) or "nothing was measured"))
                return "failed", "; ".join(reasons)
            reasons.extend(self.probe.problems())
        elif not any(e["status"] in ("ok", "partial") for _, e in planned):
            reasons.append("no profiler produced output: " + "; ".join(
                "%s: %s" % (name, e["reason"]) for name, e in planned))
            return "failed", "; ".join(reasons)
        if self.abort is not None:
            reasons.append("runner stopped by %s at %s"
                           % (self.abort[0], self.clock.since_t0(self.abort[1])))
        target = self.target
        # A launched program that failed did so whenever it ended by itself; an attached
        # process that ended is news only well before the deadline.
        failed = (target.mode == "launch" and target.exited_at is not None
                  and not target.stopped_by_runner and not target.finished())
        if failed or (target.mode != "launch" and target.exited_at is not None
                      and target.ended_early(self.clock.deadline)):
            reasons.append("target exited at %s%s" % (
                self.clock.since_t0(target.exited_at),
                " with code %d" % target.exit_code if target.exit_code is not None else ""))
        reasons.extend("%s %s: %s" % (name, e["status"], e["reason"])
                       for name, e in planned if e["status"] != "ok")
        return ("partial", "; ".join(reasons)) if reasons else ("ok", None)

    def manifest(self) -> Dict[str, Any]:
        """The manifest (fleetprof.manifest/1). Call once: it caps outputs and logs."""
        clock = self.clock
        busy = self.busy.reason if self.busy is not None else None
        profilers = dict((p.name, p.entry(self.workdir, clock, self.failure,
                                          self.watchdog_fired_at is not None, self.log, busy))
                         for p in self.profilers)
        if self.target.child is not None:
            for name in ("target.stdout", "target.stderr"):
                keep_tail(os.path.join(self.workdir, name))
        status, reason = self.outcome(profilers)
        plan = self.plan
        return {
            "schema": MANIFEST_SCHEMA,
            "campaign": plan["campaign"], "run_id": plan["run_id"], "host": plan["host"],
            "status": status,
            "reason": shorten(reason, 1000) if reason else None,
            "clock_offset_s": clock.offset,
            "t0_device": clock.t0, "deadline_device": clock.deadline, "grace_s": clock.grace,
            "started_at_device": self.started_at,
            "started_at_controller": clock.controller(self.started_at),
            "stopped_at_device": self.stopped_at,
            "stopped_at_controller": clock.controller(self.stopped_at),
            "late_by_s": self.late_by_s,
            "window": {
                "started_at_device": self.started_at,
                "ended_at_device": self.window_end[0] if self.window_end else None,
                "ended_by": self.window_end[1] if self.window_end else None,
            },
            "target": self.target.entry(clock, self.workdir),
            "profilers": profilers,
            "locks": {"host": self.host_lock, "target": self.target_lock_path},
            "busy": None if self.busy is None else {
                "lock": self.busy.path, "holder": self.busy.holder},
            "disk": self.disk.entry(clock),
            "runner": {
                "python": platform.python_version(), "pid": os.getpid(),
                "version": RUNNER_VERSION,
                "stopped_by_signal": self.abort[0] if self.abort else None,
                "watchdog_fired_at_device": self.watchdog_fired_at,
            },
        }


# =========================================================================== files


def post_problems(steps: List[Dict[str, Any]]) -> List[str]:
    """One phrase per failed post step that no fallback step after it took over from."""
    problems = []
    for index, step in enumerate(steps):
        rescued = index + 1 < len(steps) and steps[index + 1]["fallback"]
        if step["status"] == "failed" and not rescued:
            problems.append("post step %d (%s) failed: %s"
                            % (index, shorten_cmdline(step["argv"], 80), step["reason"]))
    return problems


def file_tail(path: str, limit: int = TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def last_line(*texts: str) -> Optional[str]:
    for text in texts:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return shorten(lines[-1], 200)
    return None


def keep_tail(path: str, limit: int = LOG_CAP_BYTES) -> bool:
    """Cut a log file to its last ``limit`` bytes; True when it was cut."""
    try:
        if os.path.getsize(path) <= limit:
            return False
        with open(path, "rb") as handle:
            handle.seek(-limit, os.SEEK_END)
            tail = handle.read()
        with open(path, "wb") as handle:
            handle.write(tail)
        return True
    except OSError:
        return False


def cap_output(path: str, max_bytes: int) -> Tuple[int, int]:
    """Truncate ``path`` to at most max_bytes -> (bytes now, bytes before).

    Outputs are mostly line-oriented (folded stacks, iotop batches): the cut goes after
    the last line end before max_bytes when one is near, so no half line reads as data.
    """
    size = os.path.getsize(path)
    if size <= max_bytes:
        return size, size
    start = max(0, max_bytes - TRUNCATE_LOOKBACK)
    with open(path, "rb") as handle:
        handle.seek(start)
        newline = handle.read(max_bytes - start).rfind(b"\n")
    cut = start + newline + 1 if newline >= 0 else max_bytes
    os.truncate(path, cut)
    return cut, size


def sampling_quality(paths: List[str], argv: List[str], ran_s: Optional[float]
                     ) -> Dict[str, Any]:
    """py-spy's own words about how well it sampled (it prints them on stdout).

    "1.23s behind in sampling" lines are counted (with the largest lag); the final
    "Samples: N Errors: M" is kept as said. N counts thread samples (one per kept thread
    per tick), not ticks, so it is no sampling rate: the controller counts ticks from the
    folded stacks' thread frames. "Stopped sampling because process exited" says the
    target ended while py-spy sampled it.
    """
    behind = 0
    max_lag = 0.0
    exited = False
    samples = errors = None  # type: Optional[int]
    for line in _lines(paths):
        match = BEHIND_RE.search(line)
        if match:
            behind += 1
            max_lag = max(max_lag, float(match.group(1)) * LAG_UNITS[match.group(2)])
        match = SAMPLES_RE.search(line)
        if match:
            samples, errors = int(match.group(1)), int(match.group(2))
        exited = exited or "Stopped sampling because process exited" in line
    quality = {"behind_warnings": behind,
               "max_lag_s": round(max_lag, 3) if behind else None}  # type: Dict[str, Any]
    if samples is not None:
        quality["samples"], quality["errors"] = samples, errors
    if exited:
        quality["target_exited"] = True
    if ran_s:
        quality["ran_s"] = round(ran_s, 3)
    rate = _option_value(argv, ("--rate", "-r"))
    if rate is not None:
        quality["requested_rate_hz"] = rate
    return quality


def _lines(paths: List[str]) -> Iterator[str]:
    for path in paths:
        try:
            with open(path, "rb") as handle:
                for raw in handle:
                    yield raw.decode("utf-8", "replace")
        except OSError:
            continue


def _option_value(argv: List[str], names: Tuple[str, ...]) -> Optional[float]:
    for index, arg in enumerate(argv):
        value = None
        if arg in names and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--") and arg.split("=", 1)[0] in names and "=" in arg:
            value = arg.split("=", 1)[1]
        if value is not None:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def prepare_workdir(plan: Dict[str, Any]) -> None:
    """Create workdir (0700) and remove what an earlier run of this plan left in it."""
    workdir = plan["workdir"]
    if os.path.islink(workdir):
        raise InvocationError("workdir %s is a symlink" % workdir)
    names = list(RESERVED_FILES)
    for prof in plan["profilers"]:
        names += [prof["name"] + ".stdout", prof["name"] + ".stderr"]
        names += list(prof.get("outputs") or [])
        names += list((prof.get("options") or {}).get("discard") or [])
        for index in range(len(prof.get("post_argv") or [])):
            names += ["%s.post%d.%s" % (prof["name"], index, ext) for ext in ("stdout", "stderr")]
    try:
        make_private_dir(workdir, tighten=True)
        os.chmod(workdir, 0o700)
        for name in names:
            path = os.path.join(workdir, name)
            if os.path.lexists(path) and not os.path.isdir(path):
                os.unlink(path)
        probe = os.path.join(workdir, ".write-test")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise InvocationError("cannot prepare workdir %s: %s"
                              % (workdir, os_error_text(exc))) from None
    make_reserve(os.path.join(workdir, RESERVE_FILE), RESERVE_BYTES)


# The disk reserve: a file of RESERVE_BYTES really allocated in the workdir when it is
# prepared, never packed. A disk that fills in the window (another process, the
# profilers) cannot take that space: at the end the runner shrinks it to RESERVE_KEEP_BYTES
# before it writes the manifest and packs, and removes it just before it exits, which
# leaves room for the job status file Ansible's async wrapper writes next to it (in the
# same home on most devices) once the module has returned.
RESERVE_FILE = ".reserve"
RESERVE_BYTES = 2 * MIB
RESERVE_KEEP_BYTES = 256 * 1024
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def make_reserve(path: str, size: int) -> Optional[str]:
    """Allocate ``size`` bytes at ``path`` (posix_fallocate, else written zeros) -> None,
    or why not (the file is then removed: a session goes on without its reserve)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0),
                     0o600)
    except OSError as exc:
        return os_error_text(exc)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except (AttributeError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno in NO_SPACE:
                raise
            block = b"\0" * (64 * 1024)  # a file system without fallocate: real zeros
            for _ in range(0, size, len(block)):
                os.write(fd, block)
            os.fsync(fd)
        return None
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return os_error_text(exc)
    finally:
        os.close(fd)


def release_reserve(workdir: str, keep: int = 0) -> None:
    """Give the reserve's space back to the file system, all but ``keep`` bytes of it."""
    path = os.path.join(workdir, RESERVE_FILE)
    with contextlib.suppress(OSError):
        if keep > 0 and os.path.getsize(path) > keep:
            os.truncate(path, keep)
        elif keep <= 0:
            os.unlink(path)


def write_json(path: str, data: Dict[str, Any]) -> None:
    """``data`` as JSON at ``path``, atomically; on any failure the temp file is removed."""
    temp = path + ".tmp"
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def pack_archive(workdir: str, archive: str) -> List[str]:
    """Regular files of workdir -> archive (tar.gz, flat, manifest.json first), atomically."""
    parent = os.path.dirname(archive)
    make_private_dir(parent, tighten=False)
    temp = "%s.tmp-%d" % (archive, os.getpid())
    inside = os.path.normpath(parent) == os.path.normpath(workdir)
    skip = (os.path.basename(archive), os.path.basename(temp)) if inside else ()
    skip += (RESERVE_FILE,)
    names = []
    for name in sorted(os.listdir(workdir)):
        with contextlib.suppress(OSError):
            if name not in skip and stat.S_ISREG(os.lstat(os.path.join(workdir, name)).st_mode):
                names.append(name)
    names.sort(key=lambda name: name != "manifest.json")
    try:
        with tarfile.open(temp, "w:gz") as tar:
            for name in names:
                path = os.path.join(workdir, name)
                info = tar.gettarinfo(path, arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
        os.chmod(temp, 0o600)
        os.replace(temp, archive)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return names


# =========================================================================== main


def run_session(plan: Dict[str, Any], host_lock: str,
                busy: Optional[BusyError] = None) -> Dict[str, Any]:
    """Run the plan's session; the module result (failed only when nothing could be packed).

    ``host_lock``: the path of the host lock main() holds. ``busy``: main() could not have
    it; then nothing is started and the archive holds only the manifest and runner.log.
    """
    workdir, archive = plan["workdir"], plan["archive"]
    log = RunnerLog(os.path.join(workdir, "runner.log"), float(plan["t0_device"]))
    log("runner %s (python %s, pid %d): %s/%s on %s"
        % (RUNNER_VERSION, platform.python_version(), os.getpid(), plan["campaign"],
           plan["run_id"], plan["host"]))
    if os.path.isfile(os.path.join(workdir, RESERVE_FILE)):
        log("reserve: %d KiB kept for the manifest and archive" % (RESERVE_BYTES // 1024))
    else:
        log("reserve: none could be made in %s: a full disk may cost the archive" % workdir)
    session = Session(plan, log)
    session.host_lock = host_lock
    try:
        if busy is not None:
            session.set_busy(busy)
        else:
            log("lock: holding %s" % host_lock)
            _run_guarded(session, log)
        return _finish(session, log, workdir, archive)
    finally:
        session.release_target()  # after packing: the target is free for the next session


def _run_guarded(session: Session, log: RunnerLog) -> None:
    session.install_guards()
    try:
        session.run()
    except Exception as exc:  # a runner bug must still leave a manifest behind
        session.runner_error = "runner error: %s: %s" % (type(exc).__name__, exc)
        log("runner error:\n" + traceback.format_exc())
        session.kill_everything()  # run() tried to stop things gently; this cannot fail
    finally:
        session.disarm_watchdog()


def _finish(session: Session, log: RunnerLog, workdir: str, archive: str) -> Dict[str, Any]:
    """Write the manifest, pack the archive -> the module result.

    The reserve's space is given back first (the manifest caps outputs and logs, then is
    written, then packed). An archive that cannot be made (a full disk) is removed, and the
    manifest rewritten as partial with the reason: the workdir's files stay for the collect
    play to fetch one by one, and the module does not fail. It fails only when not even the
    manifest could be written.
    """
    release_reserve(workdir, keep=RESERVE_KEEP_BYTES)
    try:
        manifest = session.manifest()
        summary = "session %s%s" % (manifest["status"],
                                    ": " + manifest["reason"] if manifest["reason"] else "")
        log(summary)
        log("archive: packing %s" % archive)
        log.close()
        result = {"changed": True, "failed": False, "archive": archive, "msg": summary,
                  "status": manifest["status"], "reason": manifest["reason"],
                  "manifest": manifest}
        manifest_path = os.path.join(workdir, "manifest.json")
        try:
            _with_room(workdir, lambda: write_json(manifest_path, manifest))
        except OSError as exc:
            return dict(result, failed=True, archive=None,
                        msg="cannot write the manifest %s: %s"
                        % (manifest_path, os_error_text(exc)))
        try:
            pack_archive(workdir, archive)
        except (OSError, tarfile.TarError) as exc:
            return _left_unpacked(result, workdir, archive_problem(archive, exc))
        left = free_bytes(workdir)
        if left is not None and left + RESERVE_KEEP_BYTES < RESERVE_BYTES:
            # The archive is a second copy of the workdir's files: on a disk it filled,
            # it goes, and collect fetches the files themselves.
            with contextlib.suppress(OSError):
                os.unlink(archive)
            return _left_unpacked(result, workdir, (
                "device disk full: the archive %s was not kept: it left %d KiB free"
                % (archive, left // 1024)))
        return result
    finally:
        release_reserve(workdir)  # the async wrapper's job file comes next


def _with_room(workdir: str, write: Callable[[], None]) -> None:
    """``write()``; when the disk is full, once more with the whole reserve given back."""
    try:
        write()
    except OSError as exc:
        if exc.errno not in NO_SPACE or not os.path.exists(os.path.join(workdir, RESERVE_FILE)):
            raise
        release_reserve(workdir)
        write()


def free_bytes(path: str) -> Optional[int]:
    """Bytes this user may still write on path's file system (root: the blocks kept
    back for root too), or None when it cannot be read."""
    try:
        info = os.statvfs(path)
    except OSError:
        return None
    blocks = info.f_bfree if os.geteuid() == 0 else info.f_bavail
    return blocks * info.f_frsize


def archive_problem(archive: str, exc: BaseException) -> str:
    """Why the archive was not made, in one phrase (a full disk said so plainly)."""
    full = isinstance(exc, OSError) and exc.errno in NO_SPACE
    return "%sthe archive %s could not be made (%s)" % (
        "device disk full: " if full else "", archive, shorten(os_error_text(exc), 200))


def _left_unpacked(result: Dict[str, Any], workdir: str, problem: str) -> Dict[str, Any]:
    """No archive (pack_archive removed its temp file): the manifest says why, the
    session is partial (or stays failed/busy), and collect fetches the workdir's files
    one by one."""
    manifest = dict(result["manifest"])
    manifest["archive_error"] = problem
    if manifest["status"] == "ok":
        manifest["status"] = "partial"
    manifest["reason"] = shorten("; ".join(r for r in (manifest["reason"], problem) if r), 1000)
    note = "archive: not made: %s; the workdir's files are left for collect" % problem
    msg = "session %s: %s" % (manifest["status"], manifest["reason"])
    try:
        _with_room(workdir, lambda: write_json(os.path.join(workdir, "manifest.json"), manifest))
    except OSError as exc2:
        # The manifest written before packing stays (with its first status): collect
        # still brings the files back.
        msg += "; the manifest could not be rewritten: %s" % os_error_text(exc2)
    with contextlib.suppress(OSError):
        with open(os.path.join(workdir, "runner.log"), "a", encoding="utf-8") as handle:
            handle.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), note))
    return dict(result, archive=None, workdir=workdir, status=manifest["status"],
                reason=manifest["reason"], manifest=manifest, msg=msg)


def finished_session(plan: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The result of this very plan's session when its archive already holds it, else None.

    A plan runs once: its window is over once it has run. Applying it again (the session
    play re-run after a lost controller, an idempotence check) reports the packed session
    with changed: false instead of running again and replacing an archive that collect
    may not have fetched yet. A new plan for the same run (a fresh T0) is another plan
    and runs.
    """
    archive = plan["archive"]
    where = archive  # type: Optional[str]
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.loads(member.read().decode("utf-8")) if member else None
    except (OSError, KeyError, ValueError, tarfile.TarError):
        # No archive: a session whose archive could not be made (a full disk) left its
        # manifest and files in the workdir, for collect to fetch one by one.
        where, manifest = None, _workdir_manifest(plan["workdir"])
    keys = ("campaign", "run_id", "host", "t0_device", "deadline_device")
    if (not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA
            or any(manifest.get(key) != plan[key] for key in keys)):
        return None
    result = {"changed": False, "failed": False, "archive": where,
              "status": manifest.get("status"), "reason": manifest.get("reason"),
              "manifest": manifest,
              "msg": "session already ran: %s holds its manifest (status %s)"
                     % (where or plan["workdir"], manifest.get("status"))}
    if where is None:
        result["workdir"] = plan["workdir"]
    return result


def _workdir_manifest(workdir: str) -> Optional[Dict[str, Any]]:
    """The manifest.json a finished session left in its workdir (a regular file of at
    most 16 MiB), or None."""
    path = os.path.join(workdir, "manifest.json")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            data = json.loads(handle.read(16 * MIB + 1).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def same_session(plan: Dict[str, Any], holder: Optional[Dict[str, Any]]) -> bool:
    """Whether the lock's holder runs this very plan's workdir or archive (the same plan
    applied twice at once): then the busy runner must not touch either."""
    if holder is None:
        # Who holds it is unknown: only the workdir's own manifest could tell, so stay off
        # a workdir that exists (a different run's workdir is new: another run id).
        return os.path.lexists(plan["workdir"])
    return any(isinstance(holder.get(key), str)
               and os.path.normpath(holder[key]) == os.path.normpath(plan[key])
               for key in ("workdir", "archive"))


def main(argv: Optional[List[str]] = None) -> int:
    """Run the module; returns the exit code (no sys.exit, so linters may import and call it)."""
    argv = sys.argv[1:] if argv is None else argv
    nothing = {"changed": False, "archive": None, "manifest": None}  # type: Dict[str, Any]
    try:
        plan, check_mode = load_args(argv)
        validate_plan(plan)
        if check_mode:
            return emit(dict(nothing, skipped=True, status=None, reason=None,
                             msg="check mode: the plan is valid, nothing ran"))
        done = finished_session(plan)
        if done is not None:
            return emit(done)
        lock_path = prepare_home(plan)
        try:
            # Held until the runner exits: the kernel releases it however that happens.
            host_lock = SessionLock.acquire(lock_path, "the host lock %s" % lock_path,
                                            lock_holder(plan, private=True), shared=False)
        except BusyError as busy:
            if same_session(plan, busy.holder):
                return emit(dict(nothing, status="busy", reason=busy.reason, msg=(
                    "%s: this very plan's session is running; its workdir and archive are "
                    "left to it" % busy.reason)))
            prepare_workdir(plan)
            return emit(run_session(plan, lock_path, busy))
        except OSError as exc:
            raise InvocationError("cannot take the host lock %s: %s"
                                  % (lock_path, os_error_text(exc))) from None
        prepare_workdir(plan)
        result = run_session(plan, host_lock.path)
    except InvocationError as exc:
        return emit(dict(nothing, failed=True, status="failed", reason=str(exc), msg=str(exc)))
    except Exception as exc:  # never end without one JSON object on stdout
        return emit(dict(nothing, failed=True, status="failed", reason="runner crashed: %s" % exc,
                         msg="runner crashed: %s" % traceback.format_exc()))
    return emit(result)


def emit(result: Dict[str, Any]) -> int:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 1 if result.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
