"""The session module's arguments: the ARGS_FILE Ansible hands a WANT_JSON module, and the
checks that a plan is a ``fleetprof.plan/1`` this runner can run (every problem listed).
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Dict, List, Tuple, cast

from .contract import (
    BUILTINS,
    DEVICE_BUNDLE_ARG,
    MAX_SAMPLE_INTERVAL_S,
    MIN_SAMPLE_INTERVAL_S,
    OPEN_FILES,
    PLAN_SCHEMA,
    PROBE_KINDS,
    PROBE_MAX_REPS,
    RESERVED_FILES,
    TRACEMALLOC,
)
from .errors import InvocationError
from .fds import option_errors as fds_option_errors
from .flag_check import option_errors as flag_option_errors
from .inprogram import option_errors
from .module_check import option_errors as module_option_errors

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")  # \Z: no trailing newline
SHA256_RE = re.compile(r"^[0-9A-Fa-f]{64}\Z")


def load_args(argv: List[str]) -> Tuple[Dict[str, Any], bool]:
    """ARGS_FILE -> (plan, check_mode). Ansible's own keys (``_ansible_*``) are accepted."""
    if len(argv) != 1:
        raise InvocationError("usage: fleetprof_session.py ARGS_FILE (JSON holding a 'plan' key)")
    try:
        with open(argv[0], encoding="utf-8") as handle:
            args = json.load(handle)
    except (OSError, ValueError) as exc:
        raise InvocationError("cannot read the arguments file %s: %s" % (argv[0], exc)) from None
    if not isinstance(args, dict):
        raise InvocationError("the arguments file must hold a JSON object")
    # DEVICE_BUNDLE_ARG: where the module found this package (read by the module itself).
    known = ("plan", DEVICE_BUNDLE_ARG)
    unknown = sorted(k for k in args if k not in known and not str(k).startswith("_ansible_"))
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


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def validate_plan(plan: Dict[str, Any]) -> None:
    """Raise InvocationError listing every way the plan breaks fleetprof.plan/1.

    Unknown keys are allowed: the controller may add fields this runner does not need.
    """
    if plan.get("schema") != PLAN_SCHEMA:
        raise InvocationError(
            "plan schema is %r, this runner reads %r" % (plan.get("schema"), PLAN_SCHEMA)
        )
    errors: List[str] = []
    for key in ("campaign", "run_id", "host"):
        if not isinstance(plan.get(key), str):
            errors.append("%s must be a string" % key)
    for key in ("workdir", "archive"):
        value = plan.get(key)
        if not (isinstance(value, str) and os.path.isabs(value) and value.strip("/")):
            errors.append("%s must be an absolute path other than /" % key)
    for key in ("t0_device", "deadline_device", "grace_s", "clock_offset_s"):
        if not is_number(plan.get(key)):
            errors.append("%s must be a number" % key)
    if not errors:
        if plan["deadline_device"] <= plan["t0_device"]:
            errors.append("deadline_device must be after t0_device")
        if plan["grace_s"] < 0:
            errors.append("grace_s must not be negative")
        if os.path.normpath(plan["archive"]) == os.path.normpath(plan["workdir"]):
            errors.append("archive must not be the workdir")
    floor = plan.get("min_free_mb")
    if floor is not None and not (is_number(floor) and math.isfinite(floor) and floor >= 0):
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
            return [] if is_positive_int(value) else ["target.pid must be a positive integer"]
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
        if not (is_str_list(target.get("command")) and target["command"]):
            errors.append("launch target needs command, a non-empty list of strings")
        if target.get("cwd") is not None and not isinstance(target["cwd"], str):
            errors.append("target.cwd must be a string")
        env = target.get("env") or {}
        if not (
            isinstance(env, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            errors.append("target.env must map strings to strings")
        if not isinstance(target.get("via_profiler", False), bool):
            errors.append("target.via_profiler must be a boolean")
        interrupt = target.get("interrupt_s")
        if interrupt is not None and not (is_number(interrupt) and 0 <= interrupt <= 60):
            errors.append("target.interrupt_s must be a number of seconds from 0 to 60")
        return errors
    if mode == "probe":
        kinds = target.get("probe")
        errors = []
        if not (
            is_str_list(kinds)
            and kinds
            and len(set(kinds)) == len(kinds)
            and all(k in PROBE_KINDS for k in kinds)
        ):
            errors.append(
                "probe target needs probe, a non-empty list of distinct benchmarks "
                "from %s" % ", ".join(PROBE_KINDS)
            )
        seconds = target.get("probe_seconds")
        if seconds is not None and not (is_number(seconds) and 0 < seconds <= 3600):
            errors.append("target.probe_seconds must be a number of seconds, more than 0")
        repeats = target.get("probe_repeats")
        if repeats is not None and not (is_positive_int(repeats) and repeats <= PROBE_MAX_REPS):
            errors.append("target.probe_repeats must be an integer from 1 to %d" % PROBE_MAX_REPS)
        return errors
    return ["target.mode must be 'attach', 'launch' or 'probe', got %r" % (mode,)]


def _profilers_errors(profilers: Any) -> List[str]:
    if not isinstance(profilers, list):
        return ["profilers must be a list"]
    errors: List[str] = []
    names: List[str] = []
    for index, prof in enumerate(profilers):
        if not isinstance(prof, dict):
            errors.append("profilers[%d] must be a dict" % index)
            continue
        name = prof.get("name")
        if not (isinstance(name, str) and NAME_RE.match(name)) or name == "target":
            errors.append(
                "profilers[%d].name must be a plain name ([A-Za-z0-9._-], not 'target')" % index
            )
            continue
        names.append(name)
        errors.extend("profiler %s: %s" % (name, e) for e in _profiler_errors(prof))
    duplicates = sorted(set(n for n in names if names.count(n) > 1))
    if duplicates:
        errors.append("profiler names must be unique: %s" % ", ".join(duplicates))
    return errors


def _profiler_errors(prof: Dict[str, Any]) -> List[str]:
    errors: List[str] = []
    if prof.get("status") not in ("planned", "skipped"):
        errors.append("status must be 'planned' or 'skipped'")
    for key in ("argv", "launch_argv", "outputs"):
        if not is_str_list(prof.get(key, [])):
            errors.append("%s must be a list of strings" % key)
    builtin = prof.get("builtin")
    if builtin is not None:
        errors.extend(_builtin_errors(prof, builtin))
    elif prof.get("in_target"):
        if prof.get("argv") or prof.get("launch_argv"):
            errors.append("a profiler inside the target takes no argv")
        if isinstance(prof.get("options"), dict):
            errors.extend(module_option_errors(prof["options"]))
    elif prof.get("status") == "planned" and not (prof.get("argv") or prof.get("launch_argv")):
        errors.append("a planned profiler needs an argv")
    errors.extend(_post_errors(prof))
    if isinstance(prof.get("options"), dict):
        errors.extend(flag_option_errors(prof["options"]))
    for output in prof.get("outputs") or []:
        if not isinstance(output, str):
            continue
        if not output or "/" in output or "\0" in output or output in (".", ".."):
            errors.append(
                "output %r must be a plain file name in workdir (the archive is flat)" % output
            )
        elif output == "%s.stdout" % prof.get("name"):
            continue  # a sampler that prints its samples (iotop, nvidia-smi): stdout is its output
        elif output in RESERVED_FILES or output.endswith((".stdout", ".stderr")):
            errors.append("output %r collides with the runner's own files" % output)
    if not is_positive_int(prof.get("max_bytes")):
        errors.append("max_bytes must be a positive integer")
    digest = prof.get("tool_sha256")
    if digest is not None and not (isinstance(digest, str) and SHA256_RE.match(digest)):
        errors.append("tool_sha256 must be a sha256 in hex, 64 digits (or null)")
    return errors


def _builtin_errors(prof: Dict[str, Any], builtin: Any) -> List[str]:
    """A sampler the runner runs itself: a known kind, an interval, one output file."""
    if builtin not in BUILTINS:
        return ["builtin must be one of %s, got %r" % (", ".join(BUILTINS), builtin)]
    errors: List[str] = []
    options = prof.get("options") or {}
    interval = options.get("interval_s", 1.0) if isinstance(options, dict) else None
    if not (
        is_number(interval)
        and MIN_SAMPLE_INTERVAL_S <= cast(float, interval) <= MAX_SAMPLE_INTERVAL_S
    ):
        errors.append(
            "options.interval_s must be a number from %g to %g"
            % (MIN_SAMPLE_INTERVAL_S, MAX_SAMPLE_INTERVAL_S)
        )
    if builtin == TRACEMALLOC and isinstance(options, dict):
        errors.extend(option_errors(options))
    if builtin == OPEN_FILES and isinstance(options, dict):
        errors.extend(fds_option_errors(options))
    if prof.get("argv") or prof.get("launch_argv"):
        errors.append("a builtin sampler takes no argv")
    if len(prof.get("outputs") or []) != 1:
        errors.append("a builtin sampler writes exactly one output")
    return errors


def _post_errors(prof: Dict[str, Any]) -> List[str]:
    """post_argv (argv lists run after the profiler stopped) and the options that go with it:
    post_fallback (indices of steps that run only when the step before failed),
    optional_outputs (outputs that may be missing) and discard (files deleted before packing)."""
    errors: List[str] = []
    post = prof.get("post_argv", [])
    if not isinstance(post, list) or not all(is_str_list(a) and a for a in post):
        return ["post_argv must be a list of non-empty lists of strings"]
    options = prof.get("options") or {}
    if not isinstance(options, dict):
        return ["options must be a dict"]
    fallback = options.get("post_fallback", [])
    if not (
        isinstance(fallback, list)
        and all(
            isinstance(i, int) and not isinstance(i, bool) and 1 <= i < len(post) for i in fallback
        )
    ):
        errors.append("options.post_fallback must list post_argv indices from 1")
    outputs = prof.get("outputs") or []
    optional = options.get("optional_outputs", [])
    if not (is_str_list(optional) and all(name in outputs for name in optional)):
        errors.append("options.optional_outputs must list some of the outputs")
    discard = options.get("discard", [])
    if not is_str_list(discard) or any(
        not NAME_RE.match(name)
        or name in RESERVED_FILES
        or name in outputs
        or name.endswith((".stdout", ".stderr"))
        for name in discard
    ):
        errors.append("options.discard must list plain file names that are not outputs")
    return errors
