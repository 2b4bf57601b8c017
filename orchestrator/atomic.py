"""Writing a file whole: a reader sees the old content or the new, never half of it, and
a crash or power cut just after leaves the new one (file and directory fsync'ed).

The one way fleetprof replaces a file: the run directory's JSON and text files, the
check's JUnit XML, schedule units and crontab files. Cost measured in docs/performance.md.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO, cast

# Owner only, like every file fleetprof writes (docs/security.md); a caller writing for
# another reader (a systemd unit) passes its mode.
DEFAULT_MODE = 0o600


@contextlib.contextmanager
def replacing_text(path: Path, *, mode: int = DEFAULT_MODE) -> Iterator[TextIO]:
    """A UTF-8 text handle whose content replaces ``path`` when the block ends without an
    exception; on an exception ``path`` is left as it was."""
    with _replacing(path, binary=False, mode=mode) as handle:
        yield cast(TextIO, handle)


@contextlib.contextmanager
def replacing_bytes(path: Path, *, mode: int = DEFAULT_MODE) -> Iterator[BinaryIO]:
    """``replacing_text`` for bytes."""
    with _replacing(path, binary=True, mode=mode) as handle:
        yield cast(BinaryIO, handle)


def write_atomic(path: Path, data: str | bytes, *, mode: int = DEFAULT_MODE) -> None:
    """Replace ``path`` with ``data`` (text as UTF-8), whole and durable."""
    with replacing_bytes(path, mode=mode) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable. Best effort: some file systems
    refuse to open or fsync a directory, and the file itself is already synced."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _replacing(path: Path, *, binary: bool, mode: int) -> Iterator[IO[Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary file in the same directory, so the rename stays on one file system.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        handle: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")
        with handle:
            yield handle
            if mode != DEFAULT_MODE:  # mkstemp made it DEFAULT_MODE
                os.fchmod(handle.fileno(), mode)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
