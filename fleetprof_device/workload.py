"""The workload's own numbers: where a launched program appends them, and the cap on them.

The runner sets WORKLOAD_METRICS_ENV in the launched program's environment to a file in the
session's workdir; the program may append JSON lines to it (the controller reads them,
orchestrator/stages/workload.py). A program that floods the file is cut: the runner keeps
the first WORKLOAD_METRICS_MAX_BYTES, whole lines, checking it with the disk in the window
and once after it.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from .contract import WORKLOAD_METRICS_ENV, WORKLOAD_METRICS_FILE, WORKLOAD_METRICS_MAX_BYTES


def metrics_path(workdir: str) -> str:
    return os.path.join(workdir, WORKLOAD_METRICS_FILE)


def with_metrics_file(env: Dict[str, str], workdir: str) -> Dict[str, str]:
    """The launched program's environment with the metrics file's path (the campaign's
    own value for the variable, if it set one, is replaced: the runner keeps only its file)."""
    out = dict(env)
    out[WORKLOAD_METRICS_ENV] = metrics_path(workdir)
    return out


class MetricsFile:
    """The cap on the workload's file: the first ``max_bytes`` kept, cut after a newline."""

    def __init__(self, workdir: str, max_bytes: int = WORKLOAD_METRICS_MAX_BYTES) -> None:
        self.path = metrics_path(workdir)
        self.max_bytes = max_bytes
        self.cut_at: Optional[int] = None  # where the kept part ends, once it was cut
        self.cut_bytes = 0  # how many bytes were dropped, over every cut

    def enforce(self) -> None:
        """Cut the file back to its cap when it grew past it (never follows a link)."""
        try:
            st = os.lstat(self.path)
        except OSError:
            return
        limit = self.cut_at if self.cut_at is not None else self.max_bytes
        if st.st_size <= limit:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return
        try:
            if self.cut_at is None:
                head = os.pread(fd, self.max_bytes, 0)
                newline = head.rfind(b"\n")
                self.cut_at = newline + 1 if newline >= 0 else 0
            size = os.fstat(fd).st_size
            if size > self.cut_at:
                os.ftruncate(fd, self.cut_at)
                self.cut_bytes += size - self.cut_at
        except OSError:
            pass
        finally:
            os.close(fd)

    def entry(self) -> Optional[Dict[str, Any]]:
        """The manifest's ``workload_metrics``: None when the program wrote nothing."""
        try:
            size = os.lstat(self.path).st_size
        except OSError:
            return None
        return {
            "file": WORKLOAD_METRICS_FILE,
            "bytes": size,
            "max_bytes": self.max_bytes,
            "cut_bytes": self.cut_bytes,
        }
