"""runner.log: one line per step, stamped with UTC time and the offset from T0."""

from __future__ import annotations

import contextlib
import time


class RunnerLog:
    """runner.log: one line per step, stamped with UTC time and the offset from T0."""

    def __init__(self, path: str, t0: float) -> None:
        self.t0 = t0
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    def __call__(self, message: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        with contextlib.suppress(OSError, ValueError):  # a full disk must not stop the run
            self.handle.write(
                "%s.%03dZ T0%+.3fs %s\n" % (stamp, int(now % 1 * 1000), now - self.t0, message)
            )
            self.handle.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()
