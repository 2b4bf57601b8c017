"""sha256 of files: the tools a plan names with ``tool_sha256`` are checked before they run
(ToolHashes), and the facts module reports the hashes the controller asks for.
"""

from __future__ import annotations

import hashlib
import os
from typing import Dict, Optional, Tuple

from .procfs import os_error_text

HASH_CHUNK = 1 << 20


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
        self.known: Dict[str, Tuple[Tuple[int, ...], str]] = {}

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
            return (
                "tool %s cannot be read to check its sha256 (%s): not run"
                % (program, os_error_text(exc))
            ), None
        if found != expected.lower():
            return (
                "tool %s sha256 %s does not match the plan's %s: not run"
                % (path, found, expected.lower())
            ), found
        return None, found
