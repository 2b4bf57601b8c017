# Copyright: fleetprof contributors
# License: Apache-2.0
"""The end of a background session, seen from the controller, with no Python started on
the device: wait out the window on the controller's clock, read the background job's
status file until the runner is done, fetch the session's tarball and remove the session's
files.

Each of those used to be a module run (``wait_for`` on the controller, then
``async_status``, ``fetch`` with its remote ``stat``, and ``command: rm``), and each module
run starts a Python on the device: on a small board 2.5 s apiece (docs/performance.md).
Here the status file is read with ``cat`` and the files removed with ``rm``, both one
command over the SSH connection Ansible already holds, and the tarball comes back over that
connection's file transfer (sftp/scp), the way ``fetch`` moves its bytes anyway.

What it does not take on (it returns ``fetched: false`` and the role's collect tasks do it
with Ansible's own modules): a session without an archive (a full disk left the workdir
unpacked), an archive over the cap, and privilege escalation (the session's files would
belong to the become user; ``fetch`` reads them through ``slurp``).

Whatever comes from the device is untrusted: the status file is parsed as JSON only and
capped in size, the archive fetched is the plan's (not a path the device names), its size
is checked against the cap and against what the runner said, and it lands under a temporary
name, owner-only, renamed only when complete. Every command is an argv of fixed words and
the plan's own paths, each quoted for the shell Ansible runs commands through.

Options (the session role's tasks/main.yml passes them):
    jid_file       the background job's status file on the device (the async start's
                   ``results_file``); removed once read finished
    wait_until     the controller time (epoch seconds) the window ends: the deadline (0:
                   it is over, look at once)
    poll_s         seconds between looks once the first few (look_times) found no end
    timeout_s      the most seconds to keep looking after ``wait_until``
    archive        the plan's tarball on the device
    workdir        the plan's workdir on the device
    fetch_to       a file on the controller to fetch the tarball to; empty: no fetch
    max_bytes      the most the tarball may be

Returns the runner module's result (as ``async_status`` gives it, with ``finished``), plus
``fetched`` (the tarball is at ``fetch_to`` and the session's files are gone from the
device) and, when fetched, ``fetched_bytes``.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Iterator
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# The most of a job status file read: the runner's result holds its manifest (a few KiB
# to a few hundred for a long session with many profilers).
STATUS_MAX_BYTES = 16 * 1024 * 1024
# Seconds after the deadline of the first looks (then one every poll_s): on the test fleet
# a runner at 0.4 of a core was done 0.3-0.9 s after its deadline (docs/performance.md).
FIRST_LOOKS_S = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
ARGUMENT_SPEC: dict[str, Any] = {
    "jid_file": {"type": "str", "required": True},
    "wait_until": {"type": "float", "default": 0.0},
    "poll_s": {"type": "float", "default": 1.0},
    "timeout_s": {"type": "float", "required": True},
    "archive": {"type": "str", "required": True},
    "workdir": {"type": "str", "required": True},
    "fetch_to": {"type": "str", "default": ""},
    "max_bytes": {"type": "int", "required": True},
}


def look_times(wait_until: float, poll_s: float, now: float) -> Iterator[float]:
    """When to read the job's status file (controller clock): at once where the window is
    over already, then shortly after the deadline and more often at first (the runner
    stops its profilers, writes its manifest and packs within about a second), then every
    ``poll_s``. Each look is one command over an open connection, not a Python start."""
    base = max(wait_until, now)
    if wait_until <= now:
        yield now
    for offset in FIRST_LOOKS_S:
        yield base + offset
    at = base + FIRST_LOOKS_S[-1]
    while True:
        at += poll_s
        yield at


def command(*argv: str) -> str:
    """One command line from fixed words and paths, each quoted (no shell expansion)."""
    return " ".join(shlex.quote(word) for word in argv)


def absolute_path(value: str, option: str) -> str:
    if not value.startswith("/") or any(ch in value for ch in "\0\n"):
        raise AnsibleActionFail(f"{option}: expected an absolute path on the device, got {value!r}")
    return value


def read_status(text: str) -> dict[str, Any] | None:
    """The job's state from its status file -> its result once finished, else None.

    Ansible's async wrapper writes ``{"started": 1, "finished": 0, ...}`` at the start and
    replaces it (renamed into place) with the module's result when the module ends; the
    module's result has no ``started`` (``async_status`` reads it the same way)."""
    text = text.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        raise AnsibleActionFail(f"the session's job status is not JSON: {text[:200]!r}") from None
    if not isinstance(data, dict):
        raise AnsibleActionFail(f"the session's job status is not a JSON object: {text[:200]!r}")
    if "started" in data:
        return data if data.get("finished") else None
    return dict(data, finished=True)


def archive_size(result: dict[str, Any], archive: str) -> int | None:
    """The tarball's size as the runner reported it, where it packed the plan's archive."""
    size = result.get("archive_bytes")
    if result.get("archive") != archive or isinstance(size, bool) or not isinstance(size, int):
        return None
    return size if size >= 0 else None


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        jid_file = absolute_path(args["jid_file"], "jid_file")
        archive = absolute_path(args["archive"], "archive")
        workdir = absolute_path(args["workdir"], "workdir")
        poll_s = max(float(args["poll_s"]), 0.1)
        result = self._wait(jid_file, float(args["wait_until"]), poll_s, float(args["timeout_s"]))
        result["fetched"] = False
        size = archive_size(result, archive)
        fetch_to = args["fetch_to"]
        if (
            result.get("failed")
            or not fetch_to
            or size is None
            or size > args["max_bytes"]
            or self._play_context.become
        ):
            # The role's collect tasks take it from here (or a later collect play does).
            self._run(["rm", "-f", "--", jid_file], "remove the job status file")
            return result
        self._fetch(archive, fetch_to, size, args["max_bytes"])
        self._run(["rm", "-rf", "--", workdir, archive, jid_file], "remove the session's files")
        result.update(fetched=True, fetched_bytes=size, changed=True)
        return result

    def _wait(
        self, jid_file: str, wait_until: float, poll_s: float, timeout_s: float
    ) -> dict[str, Any]:
        """The runner module's result, once its job status file says it is done."""
        give_up = max(wait_until, time.time()) + timeout_s
        for at in look_times(wait_until, poll_s, time.time()):
            time.sleep(max(0.0, at - time.time()))
            result = self._look(jid_file)
            if result is not None:
                return result
            if time.time() >= give_up:
                break
        raise AnsibleActionFail(
            f"the session had not finished {timeout_s:g} s after its deadline "
            f"(its job status file {jid_file} still says it runs)"
        )

    def _run(self, argv: list[str], what: str) -> dict[str, Any]:
        done: dict[str, Any] = self._low_level_execute_command(command(*argv), sudoable=True)
        if done.get("rc") != 0:
            raise AnsibleActionFail(
                f"could not {what} on the device (rc {done.get('rc')}): "
                f"{str(done.get('stderr') or done.get('stdout') or '').strip()[-500:]}"
            )
        return done

    def _look(self, jid_file: str) -> dict[str, Any] | None:
        done = self._low_level_execute_command(
            command("head", "-c", str(STATUS_MAX_BYTES), "--", jid_file), sudoable=True
        )
        if done.get("rc") != 0:
            raise AnsibleActionFail(
                f"could not find the session's job status file {jid_file}: "
                f"{str(done.get('stderr') or '').strip()[-500:]}"
            )
        return read_status(str(done.get("stdout") or ""))

    def _fetch(self, archive: str, dest: str, size: int, max_bytes: int) -> None:
        part = f"{dest}.part"
        os.makedirs(os.path.dirname(dest) or ".", mode=0o700, exist_ok=True)
        try:
            self._connection.fetch_file(archive, part)
            os.chmod(part, 0o600)
            got = os.path.getsize(part)
            if got != size or got > max_bytes:
                raise AnsibleActionFail(
                    f"{archive}: fetched {got} bytes where the runner packed {size} "
                    f"(cap {max_bytes}): not kept"
                )
            os.replace(part, dest)
        finally:
            if os.path.lexists(part):
                os.unlink(part)
