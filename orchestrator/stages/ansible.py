"""The one place that calls ansible-runner: run a stage's playbook, turn events into results.

Each stage is one playbook run in the campaign's own private data directory
(``RUN_DIR/ansible``), one ``ident`` per stage. The event handler keeps what the stages
need (per host: reachable or not, the failure message, the results of a few named module
actions with their controller-side timestamps) and returns ``False`` so runner writes no
file per event: at fleet scale per-event files dominate (AWX does the same).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ansible_runner

from orchestrator import device_bundle
from orchestrator.atomic import write_atomic
from orchestrator.paths import ANSIBLE_CFG, PLAYBOOKS_DIR, ROLES_DIR, WATCHDOG_DIR


@dataclass
class Capture:
    """One module result we asked for, with when the controller saw it start and end."""

    res: dict[str, Any]
    started: float | None
    finished: float
    # When the device first answered this action: a task asked again (preflight asks for
    # the facts a second time after pushing the device package) keeps its first answer's
    # time, so the push is not taken for the time a play needs to reach the device.
    first_finished: float | None = None


@dataclass
class HostOutcome:
    unreachable: bool = False
    failed: bool = False
    message: str | None = None
    captures: dict[str, Capture] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.unreachable or self.failed)


@dataclass
class StageResult:
    stage: str
    rc: int
    status: str
    cancelled: bool
    hosts: dict[str, HostOutcome]
    launched_at: float | None = None  # controller clock, just before the play was started
    kept: list[str] = field(default_factory=list)  # hosts the stage left ok (flow sets it)

    def outcome(self, host: str) -> HostOutcome:
        return self.hosts.get(host) or HostOutcome(
            failed=True, message=f"{self.stage}: the host was not in the play"
        )


ProgressFn = Callable[[str, str, str], None]  # (stage, host, event: ok|failed|unreachable)


def _timestamp(event: Mapping[str, Any]) -> float:
    created = event.get("created")
    if isinstance(created, str):
        try:
            return datetime.fromisoformat(created).replace(tzinfo=UTC).timestamp()
        except ValueError:
            pass
    return datetime.now(UTC).timestamp()


def _short_action(action: str) -> str:
    return action.rsplit(".", 1)[-1]


def _failure_message(res: Mapping[str, Any]) -> str:
    for key in ("msg", "stderr", "module_stderr", "reason"):
        value = res.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip().splitlines()[-1][:500] if key != "msg" else value.strip()[:500]
    return "failed without a message"


class _Collector:
    def __init__(self, stage: str, capture: Iterable[str], progress: ProgressFn | None) -> None:
        self.stage = stage
        self.capture = set(capture)
        self.progress = progress
        self.hosts: dict[str, HostOutcome] = {}
        self.seen: set[str] = set()
        self.started: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host")
        if not host or not kind.startswith("runner_on_"):
            return False
        action = _short_action(str(data.get("task_action", "")))
        uuid = str(data.get("task_uuid", ""))
        res = data.get("res") or {}
        with self.lock:
            self.seen.add(host)
            outcome = self.hosts.setdefault(host, HostOutcome())
            if kind == "runner_on_start":
                self.started[(host, uuid)] = _timestamp(event)
            elif kind == "runner_on_ok":
                if action in self.capture:
                    earlier = outcome.captures.get(action)
                    finished = _timestamp(event)
                    outcome.captures[action] = Capture(
                        res=dict(res),
                        started=self.started.get((host, uuid)),
                        finished=finished,
                        first_finished=earlier.first_finished if earlier else finished,
                    )
            elif kind == "runner_on_unreachable":
                outcome.unreachable = True
                outcome.message = _failure_message(res)
                self._tell(host, "unreachable")
            elif kind == "runner_on_failed" and not data.get("ignore_errors"):
                outcome.failed = True
                outcome.message = f"{data.get('task', action)}: {_failure_message(res)}"
                self._tell(host, "failed")
        return False

    def _tell(self, host: str, what: str) -> None:
        if self.progress is not None:
            self.progress(self.stage, host, what)

    def finish(self, hosts: Iterable[str]) -> None:
        for host in hosts:
            outcome = self.hosts.setdefault(host, HostOutcome())
            if outcome.ok:
                self._tell(host, "ok")
            elif host not in self.seen:
                self._tell(host, "failed")


def stage_env() -> dict[str, str]:
    """The environment of every ansible-playbook fleetprof starts (through ansible-runner)."""
    envvars: dict[str, str] = {
        "ANSIBLE_CONFIG": str(ANSIBLE_CFG),
        "ANSIBLE_ROLES_PATH": str(ROLES_DIR),
        # runner turns host key checking off unless told: fleetprof never does.
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_NOCOLOR": "1",
        # FORCE_COLOR wins over NOCOLOR in Ansible, and runner copies the user's environment.
        "ANSIBLE_FORCE_COLOR": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        # Ends the playbook if this process dies without stopping it (SIGKILL).
        "ANSIBLE_CALLBACK_PLUGINS": str(WATCHDOG_DIR),
        "ANSIBLE_CALLBACKS_ENABLED": "fleetprof_watchdog",
    }
    for passthrough in ("SSH_AUTH_SOCK", "HOME"):
        if passthrough in os.environ:
            envvars[passthrough] = os.environ[passthrough]
    # ansible-playbook is installed beside the Python running fleetprof (the venv).
    envvars["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    )
    return envvars


def kill_playbooks() -> int:
    """SIGKILL, now, every process this one started and their descendants (the second
    Ctrl-C): ansible-playbook, and its workers, which Ansible moves into sessions of their
    own. Without this the watchdog ends the playbook, but politely, and its workers when
    they notice: up to 8 s more. Reads /proc (Linux); elsewhere the watchdog alone ends
    them. Returns how many processes were signalled."""
    parents: dict[int, int] = {}
    try:
        entries = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return 0
    for pid in entries:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            parents[pid] = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    # Parents before their children, so none is left to start another.
    order, queue = [], list(children.get(os.getpid(), []))
    while queue:
        pid = queue.pop(0)
        order.append(pid)
        queue.extend(children.get(pid, []))
    for pid in order:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(order)


# ssh refuses a control socket path of 108 bytes or more; Ansible adds "/" and a 10-char
# hash, ssh a ".XXXXXXXXXXXXXXXX" suffix while it creates the socket.
SOCKET_PATH_MAX = 107 - 11 - 17


def control_dir(run_dir: Path) -> Path:
    """Where one run's SSH masters live (``ANSIBLE_SSH_CONTROL_PATH_DIR``).

    Ansible's default directory is shared by every run, and a master still open from an
    earlier run (``ControlPersist``) is reused without checking the host key again: a run
    whose ``known_hosts`` no longer matched a device finished ``ok``. One directory per
    run directory keeps the masters for the run's own stages only. Under ``~/.ansible/cp``
    like Ansible's own; where that path is too long for a socket (a deep ``$HOME``), under
    a directory of this user's own in the temp directory.
    """
    name = "fleetprof-" + hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
    home = Path.home() / ".ansible" / "cp" / name
    if len(os.fsencode(home)) <= SOCKET_PATH_MAX:
        return home
    try:
        return _own_temp_dir() / name
    except OSError:
        return home  # ssh then says "ControlPath too long" for each host, as the reason


def _own_temp_dir() -> Path:
    """``$TMPDIR/fleetprof-cp-<uid>``, 0700 and this user's: never one another user made."""
    base = Path(tempfile.gettempdir()) / f"fleetprof-cp-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    info = base.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise OSError(f"{base} is not a private directory of this user: not used for SSH")
    return base


def close_masters(run_dir: Path) -> None:
    """End the SSH masters this run opened (each would linger ``ControlPersist``) and
    remove its control directory; best effort, a few seconds at most."""
    directory = control_dir(run_dir)
    try:
        sockets = [p for p in directory.iterdir() if p.is_socket()]
    except OSError:
        return
    for socket in sockets:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "fleetprof-master"],
                capture_output=True,
                timeout=5,
                check=False,
            )
    with contextlib.suppress(OSError):
        for leftover in directory.iterdir():
            leftover.unlink(missing_ok=True)
        directory.rmdir()


def run_stage(
    stage: str,
    *,
    run_dir: Path,
    inventory: str,
    hosts: list[str],
    extravars: Mapping[str, Any] | None = None,
    forks: int | None = None,
    capture: Iterable[str] = (),
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> StageResult:
    """Run ``playbooks/<stage>.yml`` on exactly ``hosts`` and report per host."""
    if not hosts:
        return StageResult(stage=stage, rc=0, status="successful", cancelled=False, hosts={})
    private = run_dir / "ansible"
    private.mkdir(parents=True, exist_ok=True)
    collector = _Collector(stage, capture, progress)
    cancel = cancel or threading.Event()
    # Every play gets the device package (fleetprof_device_bundle): preflight pushes it.
    variables = {
        "fleetprof_run_dir": str(run_dir.resolve()),
        **device_bundle.extravars(),
        **(extravars or {}),
    }
    envvars = stage_env()
    masters = control_dir(run_dir)
    masters.mkdir(mode=0o700, parents=True, exist_ok=True)
    envvars["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(masters)
    command_file = private / "artifacts" / stage / "command"

    def scrub_on_start(status: Mapping[str, Any], runner_config: Any) -> None:
        if status.get("status") == "running":  # runner wrote the command file just before
            scrub_command_artifact(command_file, envvars)

    launched_at = time.time()
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(PLAYBOOKS_DIR),
            playbook=str(PLAYBOOKS_DIR / f"{stage}.yml"),
            inventory=[inventory],
            limit=",".join(hosts),
            extravars=variables,
            envvars=envvars,
            forks=forks,
            ident=stage,
            event_handler=collector,
            cancel_callback=cancel.is_set,
            quiet=True,
            suppress_env_files=True,
            status_handler=scrub_on_start,
        )
    finally:
        scrub_command_artifact(command_file, envvars)
    result = StageResult(
        stage=stage,
        rc=int(runner.rc if runner.rc is not None else -1),
        status=str(runner.status),
        cancelled=runner.status == "canceled",
        hosts=collector.hosts,
        launched_at=launched_at,
    )
    if result.rc != 0 and not result.cancelled:
        # A host the play never reached (syntax error, missing tool, runner error) gets
        # the playbook's own last words instead of a silent "ok".
        reason = _stdout_tail(private / "artifacts" / stage / "stdout")
        for host in hosts:
            if host not in collector.seen:
                outcome = result.hosts.setdefault(host, HostOutcome())
                outcome.failed = True
                outcome.message = f"{stage} did not run (rc {result.rc}): {reason}"
    collector.finish(hosts)
    return result


def scrub_command_artifact(path: Path, envvars: Mapping[str, str]) -> None:
    """ansible-runner writes ``artifacts/<stage>/command`` with the controller's whole
    environment (tokens, passwords): keep the command, and of the environment only what
    fleetprof itself set. The run directory is what people archive and share."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(data, dict):
        return
    env = data.get("env")
    data["env"] = {k: v for k, v in env.items() if k in envvars} if isinstance(env, dict) else {}
    write_atomic(path, json.dumps(data))


def _stdout_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "no output"
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(tail)[:500] or "no output"
