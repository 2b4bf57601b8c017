"""The session module's entry point: run one profiling session from its plan.

Given a plan (``fleetprof.plan/1``, see docs/run-directory.md) it finds the target
(attach), waits for T0 on the device clock, starts the target (launch) and every planned
profiler in that instant, stops them all by the deadline (or when a launched program
ends by itself), records what happened in ``manifest.json`` and packs the workdir into
one tarball. It needs nothing from the controller once started: Ansible runs it with
``async`` and ``poll: 0``, so a lost network or a killed controller changes nothing here,
and nothing it started outlives ``deadline + grace_s``.

Why stdlib-only and Python 3.8: this package is copied to every device as is (a zipapp). Edge boards
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

import contextlib
import json
import os
import platform
import shutil
import stat
import sys
import tarfile
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

from .arguments import load_args, validate_plan
from .contract import MANIFEST_SCHEMA, MIB, RUNNER_VERSION
from .dirs import prepare_home
from .errors import BusyError, InvocationError
from .files import (
    NO_SPACE,
    RESERVE_BYTES,
    RESERVE_FILE,
    RESERVE_KEEP_BYTES,
    pack_archive,
    prepare_workdir,
    release_reserve,
    write_json,
)
from .locks import SessionLock, lock_holder
from .procfs import os_error_text, shorten
from .runlog import RunnerLog
from .session import Session


def run_session(
    plan: Dict[str, Any], host_lock: str, busy: Optional[BusyError] = None
) -> Dict[str, Any]:
    """Run the plan's session; the module result (failed only when nothing could be packed).

    ``host_lock``: the path of the host lock main() holds. ``busy``: main() could not have
    it; then nothing is started and the archive holds only the manifest and runner.log.
    """
    workdir, archive = plan["workdir"], plan["archive"]
    log = RunnerLog(os.path.join(workdir, "runner.log"), float(plan["t0_device"]))
    log(
        "runner %s (python %s, pid %d): %s/%s on %s"
        % (
            RUNNER_VERSION,
            platform.python_version(),
            os.getpid(),
            plan["campaign"],
            plan["run_id"],
            plan["host"],
        )
    )
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
        return _tidy_packed(plan, _finish(session, log, workdir, archive))
    finally:
        session.release_target()  # after packing: the target is free for the next session


def _tidy_packed(plan: Dict[str, Any], result: Dict[str, Any]) -> Dict[str, Any]:
    """The archive's size in the result (collect checks it without another look at the
    device), and, where the plan asks, the workdir removed once the archive holds it all:
    collect then has one file to remove. A workdir left unpacked (no archive) stays."""
    archive, workdir = result.get("archive"), plan["workdir"]
    if not archive:
        return result
    with contextlib.suppress(OSError):
        result["archive_bytes"] = os.path.getsize(archive)
    if plan.get("remove_packed_workdir") is True and "archive_bytes" in result:
        shutil.rmtree(workdir, ignore_errors=True)
        result["workdir_removed"] = not os.path.lexists(workdir)
    return result


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
        summary = "session %s%s" % (
            manifest["status"],
            ": " + manifest["reason"] if manifest["reason"] else "",
        )
        log(summary)
        log("archive: packing %s" % archive)
        log.close()
        result = {
            "changed": True,
            "failed": False,
            "archive": archive,
            "msg": summary,
            "status": manifest["status"],
            "reason": manifest["reason"],
            "manifest": manifest,
        }
        manifest_path = os.path.join(workdir, "manifest.json")
        try:
            _with_room(workdir, lambda: write_json(manifest_path, manifest))
        except OSError as exc:
            return dict(
                result,
                failed=True,
                archive=None,
                msg="cannot write the manifest %s: %s" % (manifest_path, os_error_text(exc)),
            )
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
            return _left_unpacked(
                result,
                workdir,
                (
                    "device disk full: the archive %s was not kept: it left %d KiB free"
                    % (archive, left // 1024)
                ),
            )
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
        "device disk full: " if full else "",
        archive,
        shorten(os_error_text(exc), 200),
    )


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
    with contextlib.suppress(OSError), open(
        os.path.join(workdir, "runner.log"), "a", encoding="utf-8"
    ) as handle:
        handle.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), note))
    return dict(
        result,
        archive=None,
        workdir=workdir,
        status=manifest["status"],
        reason=manifest["reason"],
        manifest=manifest,
        msg=msg,
    )


def finished_session(plan: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The result of this very plan's session when its archive already holds it, else None.

    A plan runs once: its window is over once it has run. Applying it again (the session
    play re-run after a lost controller, an idempotence check) reports the packed session
    with changed: false instead of running again and replacing an archive that collect
    may not have fetched yet. A new plan for the same run (a fresh T0) is another plan
    and runs.
    """
    archive = plan["archive"]
    where: Optional[str] = archive
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.loads(member.read().decode("utf-8")) if member else None
    except (OSError, KeyError, ValueError, tarfile.TarError):
        # No archive: a session whose archive could not be made (a full disk) left its
        # manifest and files in the workdir, for collect to fetch one by one.
        where, manifest = None, _workdir_manifest(plan["workdir"])
    keys = ("campaign", "run_id", "host", "t0_device", "deadline_device")
    if (
        not isinstance(manifest, dict)
        or manifest.get("schema") != MANIFEST_SCHEMA
        or any(manifest.get(key) != plan[key] for key in keys)
    ):
        return None
    result = {
        "changed": False,
        "failed": False,
        "archive": where,
        "status": manifest.get("status"),
        "reason": manifest.get("reason"),
        "manifest": manifest,
        "msg": "session already ran: %s holds its manifest (status %s)"
        % (where or plan["workdir"], manifest.get("status")),
    }
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
    return any(
        isinstance(holder.get(key), str)
        and os.path.normpath(holder[key]) == os.path.normpath(plan[key])
        for key in ("workdir", "archive")
    )


def main(argv: Optional[List[str]] = None) -> int:
    """Run the module; returns the exit code (no sys.exit, so linters may import and call it)."""
    argv = sys.argv[1:] if argv is None else argv
    nothing: Dict[str, Any] = {"changed": False, "archive": None, "manifest": None}
    try:
        plan, check_mode = load_args(argv)
        validate_plan(plan)
        if check_mode:
            return emit(
                dict(
                    nothing,
                    skipped=True,
                    status=None,
                    reason=None,
                    msg="check mode: the plan is valid, nothing ran",
                )
            )
        done = finished_session(plan)
        if done is not None:
            return emit(done)
        lock_path = prepare_home(plan)
        try:
            # Held until the runner exits: the kernel releases it however that happens.
            host_lock = SessionLock.acquire(
                lock_path,
                "the host lock %s" % lock_path,
                lock_holder(plan, private=True),
                shared=False,
            )
        except BusyError as busy:
            if same_session(plan, busy.holder):
                return emit(
                    dict(
                        nothing,
                        status="busy",
                        reason=busy.reason,
                        msg=(
                            "%s: this very plan's session is running; its workdir and archive are "
                            "left to it" % busy.reason
                        ),
                    )
                )
            prepare_workdir(plan)
            return emit(run_session(plan, lock_path, busy))
        except OSError as exc:
            raise InvocationError(
                "cannot take the host lock %s: %s" % (lock_path, os_error_text(exc))
            ) from None
        prepare_workdir(plan)
        result = run_session(plan, host_lock.path)
    except InvocationError as exc:
        return emit(dict(nothing, failed=True, status="failed", reason=str(exc), msg=str(exc)))
    except Exception as exc:  # never end without one JSON object on stdout
        return emit(
            dict(
                nothing,
                failed=True,
                status="failed",
                reason="runner crashed: %s" % exc,
                msg="runner crashed: %s" % traceback.format_exc(),
            )
        )
    return emit(result)


def emit(result: Dict[str, Any]) -> int:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 1 if result.get("failed") else 0
