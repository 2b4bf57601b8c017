"""Unpack a device's result tarball without trusting it.

A device sends back one ``.tar.gz`` per session, and a device may be broken or
compromised. Only regular files and plain directories are written, every name must stay
inside the destination, modes and owners are not taken from the archive, and sizes are
counted from the bytes actually decompressed, so a compression bomb or a lying header
stops at a cap instead of filling the controller's disk or memory.

Links, devices, FIFOs and unsafe names are skipped and reported, so a host's good files
are still kept; anything that makes the archive as a whole untrustworthy (corrupt or
truncated data, too many members, too many bytes) aborts with ``UnsafeArchive`` and
leaves the destination as it was.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

MiB = 1024 * 1024
DEFAULT_MAX_TOTAL_BYTES = 512 * MiB
DEFAULT_MAX_MEMBER_BYTES = 256 * MiB
DEFAULT_MAX_MEMBERS = 10_000

# tarfile reads pax and GNU long-name headers into memory in one piece, before we see the
# member they describe. Between two members it may read at most this much beyond the
# previous member's data; real headers are a few KiB, so this bounds memory and keeps a
# chain of pax headers below tarfile's recursion depth.
_METADATA_ALLOWANCE = 256 * 1024
_CHUNK = 64 * 1024
_NAME_MAX = 255  # bytes in one path component (Linux and macOS)
# A hostile archive may hold thousands of rejected members with 200 KB names: only the
# first few reasons are kept, each cut, so memory stays small whatever the archive holds.
MAX_REJECTED_KEPT = 20
_REJECTED_NAME_CHARS = 120
_REASON_CHARS = 1000
_PATH_MAX = 4096
# The run directory's policy (docs/security.md): owner only.
_FILE_MODE = 0o600
_DIR_MODE = 0o700


class UnsafeArchive(Exception):
    """The archive (or fetched directory) as a whole cannot be trusted; nothing was
    extracted."""


@dataclass(frozen=True)
class ExtractResult:
    files: list[str]
    """Regular files written, as POSIX paths relative to dest, in archive order."""
    total_bytes: int
    """Bytes written to those files."""
    rejected: list[str]
    """A human-readable reason for each of the first ``MAX_REJECTED_KEPT`` skipped members,
    e.g. ``"'x': symbolic link"`` (names and link targets cut)."""
    rejected_count: int = 0
    """How many members were skipped in all."""

    def rejected_summary(self) -> str | None:
        """One line for a host's status: how many members were skipped and the first
        reasons, at most ``_REASON_CHARS`` characters; None when nothing was skipped."""
        if not self.rejected_count:
            return None
        head = "; ".join(self.rejected)
        if self.rejected_count > len(self.rejected):
            head = f"{self.rejected_count} members skipped, the first: {head}"
        return head if len(head) <= _REASON_CHARS else head[: _REASON_CHARS - 1] + "…"


def _cut(text: str, limit: int = _REJECTED_NAME_CHARS) -> str:
    """``repr`` of at most ``limit`` characters of an untrusted name."""
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


class _LimitExceeded(Exception):
    pass


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _BudgetReader:
    """A file object over the decompressed stream that refuses to read past ``limit``."""

    def __init__(self, source: _Readable, limit: int) -> None:
        self._source = source
        self.position = 0
        self.limit = limit

    def read(self, size: int = -1) -> bytes:
        room = self.limit - self.position
        if size < 0 or size > room:
            # Ask for one byte more than allowed: getting it proves the stream is too long.
            size = room + 1
        data = self._source.read(size)
        self.position += len(data)
        if self.position > self.limit:
            raise _LimitExceeded
        return data


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> ExtractResult:
    """Extract the gzip-compressed tar ``archive`` into the directory ``dest``.

    The archive is unpacked into a temporary directory beside ``dest`` and renamed into
    place only when complete, so ``dest`` is never half-written. An existing ``dest`` is
    replaced at that moment; on any error it is left untouched.

    Raises ``UnsafeArchive`` for a corrupt, truncated or non-gzip archive, more than
    ``max_members`` members, a member over ``max_member_bytes`` or more than
    ``max_total_bytes`` of member data in all. ``OSError`` when the archive cannot be
    opened or ``dest`` cannot be written.
    """
    archive = Path(archive)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with archive.open("rb") as raw:
        return _staged(
            dest,
            lambda staging: _extract_all(
                raw,
                str(archive),
                staging,
                max_total_bytes=max_total_bytes,
                max_member_bytes=max_member_bytes,
                max_members=max_members,
            ),
        )


def _staged(dest: Path, fill: Callable[[Path], ExtractResult]) -> ExtractResult:
    """``fill`` a temporary directory beside ``dest``, then rename it into place: ``dest``
    is never half-written, and on any error it is left as it was."""
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        result = fill(staging)
        os.chmod(staging, _DIR_MODE)
        _move_into_place(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _extract_all(
    raw: BinaryIO,
    label: str,
    root: Path,
    *,
    max_total_bytes: int,
    max_member_bytes: int,
    max_members: int,
) -> ExtractResult:
    files: list[str] = []
    rejected: list[str] = []
    rejected_count = 0
    file_names: set[str] = set()
    dir_names: set[str] = set()
    written = 0
    skipped = 0  # declared data of members not written, which tarfile still decompresses
    members = 0

    def fail(reason: str) -> UnsafeArchive:
        return UnsafeArchive(f"{label}: {reason}")

    def reject(member: tarfile.TarInfo, problem: str) -> None:
        nonlocal rejected_count
        rejected_count += 1
        if len(rejected) < MAX_REJECTED_KEPT:
            rejected.append(f"{_cut(member.name)}: {problem}")

    try:
        unzipped = gzip.GzipFile(fileobj=raw, mode="rb")
        reader = _BudgetReader(unzipped, _METADATA_ALLOWANCE)
        # Stream mode reads each member once, in order; the reader only needs read().
        with unzipped, tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                # tarfile keeps every member it read (names, link targets) for later
                # lookups we never make: drop them, or 2,000 long link targets stay in memory.
                tar.members = []
                members += 1
                if members > max_members:
                    raise fail(f"more than {max_members} members (max_members)")
                if member.size < 0:
                    raise fail(f"member {_cut(member.name)} has an invalid size {member.size}")
                if member.size > max_member_bytes:
                    raise fail(
                        f"member {_cut(member.name)} declares {member.size} bytes, over "
                        f"max_member_bytes ({max_member_bytes})"
                    )
                if written + skipped + member.size > max_total_bytes:
                    raise fail(
                        f"member {_cut(member.name)} would take the archive past "
                        f"max_total_bytes ({max_total_bytes})"
                    )
                # Room for this member's data (rounded up to tar blocks) and the next headers.
                reader.limit = reader.position + -(-member.size // 512) * 512 + _METADATA_ALLOWANCE

                problem, parts = _check_member(member)
                name = "/".join(parts)
                if problem is None and not parts and not member.isdir():
                    problem = "no name left after removing '.' components"
                if problem is None and parts:
                    problem = _check_place(parts, member.isdir(), file_names, dir_names)
                if problem is not None:
                    reject(member, problem)
                    skipped += member.size
                    continue
                if not parts:
                    continue  # the archive's own root, "." or "./"
                source = None if member.isdir() else tar.extractfile(member)
                try:
                    target = _make_parents(root, parts, dir_names)
                    if source is None:
                        if name not in dir_names:
                            os.mkdir(target, _DIR_MODE)
                            os.chmod(target, _DIR_MODE)
                            dir_names.add(name)
                        continue
                    size = _copy_capped(
                        source, target, max_member_bytes, max_total_bytes - written - skipped
                    )
                except FileExistsError:
                    # Only on a case-insensitive file system (macOS): "A" after "a".
                    reject(member, "collides with an earlier member")
                    skipped += member.size
                    continue
                if size > max_member_bytes:
                    raise fail(
                        f"member {_cut(member.name)} expands past max_member_bytes "
                        f"({max_member_bytes}); extraction aborted"
                    )
                if written + skipped + size > max_total_bytes:
                    raise fail(
                        f"member {_cut(member.name)} expands past max_total_bytes "
                        f"({max_total_bytes}); extraction aborted"
                    )
                written += size
                files.append(name)
                file_names.add(name)
            # Read to the end of the gzip stream so its CRC and length are checked too.
            reader.limit = reader.position + _METADATA_ALLOWANCE
            while reader.read(_CHUNK):
                pass
    except _LimitExceeded:
        raise fail(
            f"header data or trailing data over {_METADATA_ALLOWANCE // 1024} KiB "
            "(corrupt or hostile archive)"
        ) from None
    except RecursionError:
        raise fail("too many nested extended headers") from None
    except gzip.BadGzipFile as error:
        raise fail(f"not a valid gzip file or corrupt: {error}") from None
    except EOFError as error:
        raise fail(f"truncated archive: {error}") from None
    except zlib.error as error:
        raise fail(f"corrupt compressed data: {error}") from None
    except tarfile.TarError as error:
        raise fail(f"not a valid tar archive: {error}") from None
    return ExtractResult(
        files=files, total_bytes=written, rejected=rejected, rejected_count=rejected_count
    )


def _check_member(member: tarfile.TarInfo) -> tuple[str | None, list[str]]:
    """Why this member is skipped (None when it is fine), and its normalised name parts."""
    if member.issym():
        return f"symbolic link to {_cut(member.linkname)}", []
    if member.islnk():
        return f"hard link to {_cut(member.linkname)}", []
    if member.ischr() or member.isblk():
        return "device file", []
    if member.isfifo():
        return "FIFO", []
    if not (member.isreg() or member.isdir()):
        return f"unsupported member type {member.type!r}", []
    return _check_name(member.name)


def _check_name(name: str) -> tuple[str | None, list[str]]:
    if not name:
        return "empty name", []
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8", []
    if "\x00" in name:
        return "name contains a NUL byte", []
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return "name contains control characters", []
    if "\\" in name:
        return "name contains a backslash", []
    if name.startswith("/"):
        return "absolute path", []
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return "name starts with a drive letter", []
    if len(encoded) > _PATH_MAX:
        return "name too long", []
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        return "name contains a '..' component", []
    if any(len(part.encode("utf-8")) > _NAME_MAX for part in parts):
        return "a name component is too long", []
    return None, parts


def _check_place(
    parts: list[str], is_dir: bool, file_names: set[str], dir_names: set[str]
) -> str | None:
    """Why this path cannot be created next to what was already extracted."""
    for depth in range(1, len(parts)):
        if "/".join(parts[:depth]) in file_names:
            return f"parent {'/'.join(parts[:depth])!r} is a file"
    name = "/".join(parts)
    if name in file_names:
        return "duplicate name (the first member is kept)"
    if not is_dir and name in dir_names:
        return "a directory of that name exists"
    return None


def _make_parents(root: Path, parts: list[str], dir_names: set[str]) -> Path:
    """Create the missing parent directories of ``parts`` and return its full path."""
    current = root
    for depth, part in enumerate(parts[:-1], start=1):
        current = current / part
        if "/".join(parts[:depth]) not in dir_names:
            os.mkdir(current, _DIR_MODE)
            os.chmod(current, _DIR_MODE)
            dir_names.add("/".join(parts[:depth]))
    target = current / parts[-1]
    # Names were checked part by part and nothing but plain directories was created, so
    # this holds; checking the resolved path keeps it true if that logic ever changes.
    resolved_root = os.path.realpath(root)
    if os.path.commonpath([resolved_root, os.path.realpath(target)]) != resolved_root:
        raise UnsafeArchive(f"member path {'/'.join(parts)!r} resolves outside the destination")
    return target


def _copy_capped(source: _Readable, target: Path, member_cap: int, total_room: int) -> int:
    """Copy in chunks, counting the bytes really decompressed (a header can lie).

    Stops as soon as a cap is passed and then returns a size over that cap, having removed
    the partly written file; on any error the file is removed too.
    """
    cap = min(member_cap, total_room)
    # O_EXCL and O_NOFOLLOW: never write through something that is already there.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, _FILE_MODE)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), _FILE_MODE)  # exactly, whatever the umask
            while chunk := source.read(_CHUNK):
                size += len(chunk)
                if size > cap:
                    break
                out.write(chunk)
        if size > cap:
            target.unlink()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return size


def _move_into_place(staging: Path, dest: Path) -> None:
    if not dest.exists() and not dest.is_symlink():
        os.rename(staging, dest)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    old = aside / "old"
    os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except BaseException:
        os.rename(old, dest)
        aside.rmdir()
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(aside)
    else:
        old.unlink()
        aside.rmdir()


def safe_copy_dir(
    source: Path,
    dest: Path,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> ExtractResult:
    """Take the files of the flat directory ``source`` (a device's session fetched file by
    file, when its archive could not be made) into ``dest``, as ``safe_extract`` takes a
    tarball's: regular files only (links, hard links, directories, FIFOs skipped and
    reported), safe names, owner-only modes, the same caps counted from the bytes really
    copied, and ``dest`` replaced only when complete."""
    source = Path(source)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with os.scandir(source) as scan:
        entries = sorted((entry.name for entry in scan), key=str)
    if len(entries) > max_members:
        raise UnsafeArchive(f"{source}: more than {max_members} files (max_members)")
    return _staged(
        dest,
        lambda staging: _copy_files(source, entries, staging, max_total_bytes, max_member_bytes),
    )


def _copy_files(
    source: Path, names: list[str], root: Path, max_total_bytes: int, max_member_bytes: int
) -> ExtractResult:
    files: list[str] = []
    rejected: list[str] = []
    rejected_count = 0
    written = 0
    for name in names:
        problem = _check_name(name)[0] or _loose_problem(source / name)
        if problem is not None:
            rejected_count += 1
            if len(rejected) < MAX_REJECTED_KEPT:
                rejected.append(f"{_cut(name)}: {problem}")
            continue
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(source / name, flags), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise UnsafeArchive(f"{source / name}: changed into a non-regular file")
            size = _copy_capped(handle, root / name, max_member_bytes, max_total_bytes - written)
        if size > max_member_bytes or written + size > max_total_bytes:
            raise UnsafeArchive(
                f"{source}: {_cut(name)} takes it past max_member_bytes ({max_member_bytes}) "
                f"or max_total_bytes ({max_total_bytes}); nothing was taken"
            )
        written += size
        files.append(name)
    return ExtractResult(
        files=files, total_bytes=written, rejected=rejected, rejected_count=rejected_count
    )


def _loose_problem(path: Path) -> str | None:
    """Why a fetched file is not taken (None: it is a plain regular file)."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return "symbolic link"
    if stat.S_ISDIR(info.st_mode):
        return "directory"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_nlink > 1:
        return "hard link"
    return None
