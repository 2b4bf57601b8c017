"""The workdir's files: preparing it, the disk reserve, capping outputs and logs, the
manifest's atomic write and the flat tar.gz archive.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tarfile
from typing import Any, Dict, List, Optional, Tuple

from .contract import MIB, RESERVED_FILES
from .dirs import make_private_dir
from .errors import InvocationError
from .procfs import os_error_text, shorten, shorten_cmdline

TAIL_BYTES = 4096
LOG_CAP_BYTES = 1 << 20  # profiler and target stdout/stderr files keep their last MiB
TRUNCATE_LOOKBACK = 64 * 1024  # cut a too-large output at a line end found this far back


def post_problems(steps: List[Dict[str, Any]]) -> List[str]:
    """One phrase per failed post step that no fallback step after it took over from."""
    problems = []
    for index, step in enumerate(steps):
        rescued = index + 1 < len(steps) and steps[index + 1]["fallback"]
        if step["status"] == "failed" and not rescued:
            problems.append(
                "post step %d (%s) failed: %s"
                % (index, shorten_cmdline(step["argv"], 80), step["reason"])
            )
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
        raise InvocationError(
            "cannot prepare workdir %s: %s" % (workdir, os_error_text(exc))
        ) from None
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
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600
        )
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
    skip: Tuple[str, ...] = (os.path.basename(archive), os.path.basename(temp)) if inside else ()
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
