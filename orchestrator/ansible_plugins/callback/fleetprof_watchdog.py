# fleetprof's controller-side watchdog for ansible-playbook (an Ansible callback plugin).
"""ansible-runner starts ansible-playbook in a session and pty of its own. When the
fleetprof process that drives it dies without a chance to stop it (SIGKILL, OOM killer),
nothing tells ansible-playbook: it played on, and stalled for half an hour once its pty
was gone. This plugin, loaded only in the plays fleetprof runs, watches the parent it was
started by and, once that parent is gone (the playbook is re-parented), ends the
playbook's own process group: the main process and its forks, nothing else. Device-side
runners end by their own deadline (docs/faults.md); ``fleetprof collect RUN_DIR`` brings
back what they measured.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: fleetprof_watchdog
type: notification
short_description: end the playbook when the fleetprof controller that started it dies
description:
  - Polls the parent process id; when it changes, the parent died and the playbook's
    process group is terminated (then killed, if it does not end).
requirements: []
"""

POLL_S = 0.5
GRACE_S = 5.0


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "fleetprof_watchdog"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._parent = os.getppid()
        self._group = os.getpgrp()
        # Only where this process leads its own group (ansible-runner's pexpect session):
        # never end a group that is not the playbook's alone.
        if self._group == os.getpid():
            threading.Thread(target=self._watch, name="fleetprof-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while os.getppid() == self._parent:
            time.sleep(POLL_S)
        self._end(signal.SIGTERM)
        time.sleep(GRACE_S)
        self._end(signal.SIGKILL)

    def _end(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._group, signum)
