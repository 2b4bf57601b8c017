"""The runner's exceptions: a broken invocation, a target not found, another session busy."""

from __future__ import annotations

from typing import Any, Dict, Optional


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
