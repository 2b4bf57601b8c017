"""The cache itself: where it lives, its verified entries (binary + ``tool.json`` sidecar),
and filling one under a lock with a verified binary swapped in whole."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.atomic import fsync_dir
from orchestrator.toolcache import index, pipconfig, wheel
from orchestrator.toolcache.model import (
    ELF_MACHINE,
    PLATFORM_TAGS,
    PYSPY,
    PYSPY_DIST,
    PYSPY_VERSION,
    SUPPORTED_ARCHES,
    CachedTool,
    Log,
    ToolCacheError,
    ToolUnavailable,
    Unreachable,
    normalize_arch,
)

SIDECAR = "tool.json"
SIDECAR_SCHEMA = "fleetprof.toolcache/1"

_MAX_BINARY_BYTES = 64 * 1024 * 1024  # py-spy is ~8 MiB; anything far larger is not py-spy
_VERSION_RE = re.compile(r"[0-9][0-9A-Za-z._+-]{0,63}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def cache_dir() -> Path:
    """The tool cache: ``$FLEETPROF_CACHE_DIR``, else ``$XDG_CACHE_HOME/fleetprof/tools``,
    else ``~/.cache/fleetprof/tools``."""
    explicit = os.environ.get("FLEETPROF_CACHE_DIR", "").strip()
    if explicit:
        # Absolute, because the path is handed to Ansible, which runs from elsewhere.
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "fleetprof" / "tools"
    return Path.home() / ".cache" / "fleetprof" / "tools"


def ensure_pyspy(
    arch: str,
    version: str | None = None,
    cache: Path | None = None,
    log: Log | None = None,
) -> CachedTool:
    """Return the verified py-spy binary for ``arch``, downloading it into the cache if needed.

    ``version`` defaults to ``$FLEETPROF_PYSPY_VERSION``, else :data:`PYSPY_VERSION`.
    Raises :class:`ToolUnavailable` when py-spy has no build for the architecture and
    :class:`ToolCacheError` when it cannot be downloaded or verified.
    """
    version = _resolve_version(version)
    norm = normalize_arch(arch)
    if norm not in PLATFORM_TAGS:
        raise ToolUnavailable(
            f"py-spy {version} publishes no build for {norm or 'an unknown architecture'}"
        )
    root = (cache if cache is not None else cache_dir()).expanduser().absolute()
    entry = root / PYSPY / version / norm
    found = _load_entry(entry, PYSPY, version, norm)
    if found is not None:
        return found

    say = log or _quiet
    version_dir = entry.parent
    try:
        version_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolCacheError(
            f"cannot create the tool cache directory {version_dir}: {exc.strerror or exc}; "
            "set FLEETPROF_CACHE_DIR to a writable directory"
        ) from exc
    with _locked(version_dir / f".{norm}.lock", say, f"py-spy {version} for {norm}"):
        # Another process may have filled the entry while this one waited for the lock.
        found = _load_entry(entry, PYSPY, version, norm)
        if found is not None:
            return found
        if entry.exists() or entry.is_symlink():
            say(f"cached py-spy {version} for {norm} failed verification; downloading it again")
        _fill_pyspy(entry, version, norm, root, say)
        found = _load_entry(entry, PYSPY, version, norm)
    if found is None:
        raise ToolCacheError(
            f"py-spy {version} for {norm} was written to {entry} but does not verify; "
            "check the disk and remove that directory"
        )
    return found


def fill_pyspy_cache(
    arches: Iterable[str] = SUPPORTED_ARCHES,
    version: str | None = None,
    cache: Path | None = None,
    log: Log | None = None,
) -> dict[str, CachedTool | ToolUnavailable]:
    """Fill the cache for several architectures (``fleetprof tools fetch``).

    Architectures without a build map to their :class:`ToolUnavailable`; any other
    failure raises.
    """
    results: dict[str, CachedTool | ToolUnavailable] = {}
    for arch in arches:
        try:
            results[normalize_arch(arch)] = ensure_pyspy(arch, version, cache, log)
        except ToolUnavailable as exc:
            results[normalize_arch(arch)] = exc
    return results


def _fill_pyspy(entry: Path, version: str, arch: str, root: Path, say: Log) -> None:
    pip = pipconfig.pip_index()
    try:
        files = index.fetch_published_files(PYSPY, pip)
    except Unreachable as exc:
        raise ToolCacheError(f"{exc}. {_offline_hint(root)}") from exc
    chosen = wheel.select_wheel(files, version, arch, pip.url)
    if not chosen.sha256 or not _SHA256_RE.fullmatch(chosen.sha256):
        raise ToolCacheError(
            f"the package index {index.redact(pip.url)} publishes no sha256 for "
            f"{chosen.filename}; fleetprof will not use an unverified wheel"
        )

    say(f"downloading py-spy {version} for {arch}")
    with tempfile.TemporaryDirectory(prefix=f".fill-{arch}-", dir=entry.parent) as scratch:
        work = Path(scratch)
        (work / "wheel").mkdir()
        try:
            saved = wheel.download_wheel(chosen, arch, work / "wheel")
        except Unreachable as exc:
            raise ToolCacheError(f"{exc}. {_offline_hint(root)}") from exc

        by_name = {f.filename: f for f in files}
        published = by_name.get(saved.name)
        if published is None or not published.sha256:
            raise ToolCacheError(
                f"pip saved {saved.name}, which the index lists without a sha256; refusing it"
            )
        actual = wheel.sha256_file(saved)
        if actual != published.sha256:
            raise ToolCacheError(
                f"sha256 mismatch for {saved.name}: the index {index.redact(pip.url)} publishes "
                f"{published.sha256} but the download is {actual}. The file was altered on "
                "the way or in a cache/mirror; nothing was written to the tool cache. "
                "Retry, or check the proxy/mirror between this machine and the index."
            )

        stage = work / "entry"
        stage.mkdir(mode=0o755)
        binary = stage / PYSPY
        dist, wheel_version, _ = wheel.wheel_parts(saved.name) or (PYSPY_DIST, version, ())
        member = f"{dist}-{wheel_version}.data/scripts/{PYSPY}"
        wheel.extract_member(saved, member, binary, _MAX_BINARY_BYTES)
        machine = wheel.elf_machine(binary)
        if machine != ELF_MACHINE[arch]:
            raise ToolCacheError(
                f"{saved.name}: {member} is not an {arch} executable (ELF machine {machine})"
            )
        binary.chmod(0o755)
        sidecar = {
            "schema": SIDECAR_SCHEMA,
            "name": PYSPY,
            "version": version,
            "arch": arch,
            "file": PYSPY,
            "sha256": wheel.sha256_file(binary),
            "size": binary.stat().st_size,
            "wheel": {
                "filename": saved.name,
                "sha256": actual,
                "url": index.redact(published.url),
                "index": index.redact(pip.url),
            },
            "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_file(stage / SIDECAR, (json.dumps(sidecar, indent=2) + "\n").encode())
        fsync_dir(stage)
        _install(stage, entry, work / "replaced")


def _write_file(path: Path, data: bytes) -> None:
    with path.open("xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    path.chmod(0o644)


def _install(stage: Path, entry: Path, trash: Path) -> None:
    """Swap ``stage`` in as ``entry``; a reader never sees a half-written entry."""
    if entry.exists() or entry.is_symlink():
        os.rename(entry, trash)  # the scratch directory's cleanup removes it
    os.rename(stage, entry)
    fsync_dir(entry.parent)


def _offline_hint(root: Path) -> str:
    return (
        "If this machine cannot reach the index, run `fleetprof tools fetch` on one that "
        f"can and copy its tool cache to {root} here (or point FLEETPROF_CACHE_DIR at the "
        "copy); pip's index is set with `pip config set global.index-url URL` or "
        "PIP_INDEX_URL."
    )


def _load_entry(entry: Path, name: str, version: str, arch: str) -> CachedTool | None:
    """The entry's tool if its binary matches its sidecar, else None."""
    binary = entry / name
    try:
        meta: Any = json.loads((entry / SIDECAR).read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            return None
        expected = meta.get("sha256")
        if (
            meta.get("name") != name
            or meta.get("version") != version
            or meta.get("arch") != arch
            or not isinstance(expected, str)
            or not _SHA256_RE.fullmatch(expected)
        ):
            return None
        info = binary.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size != meta.get("size"):
            return None
        if wheel.sha256_file(binary) != expected:
            return None
    except (OSError, ValueError):
        return None
    if stat.S_IMODE(info.st_mode) != 0o755:
        # The content is verified; a copy that lost the mode bits is still good.
        with contextlib.suppress(OSError):
            binary.chmod(0o755)
    return CachedTool(name=name, version=version, arch=arch, path=binary, sha256=expected)


@contextlib.contextmanager
def _locked(lock_path: Path, say: Log, what: str) -> Iterator[None]:
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ToolCacheError(
            f"cannot open the lock file {lock_path}: {exc.strerror or exc}; "
            "set FLEETPROF_CACHE_DIR to a writable directory"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            say(f"waiting for another fleetprof that is fetching {what}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _resolve_version(version: str | None) -> str:
    chosen = (version or os.environ.get("FLEETPROF_PYSPY_VERSION") or PYSPY_VERSION).strip()
    if not _VERSION_RE.fullmatch(chosen) or ".." in chosen:
        raise ToolCacheError(
            f"py-spy version {chosen!r} is not a version number (e.g. {PYSPY_VERSION}); "
            "check FLEETPROF_PYSPY_VERSION"
        )
    return chosen


def _quiet(_message: str) -> None:
    return None
