"""This machine's side: whether systemd runs, where units and /etc/cron.d are, and the
edges that touch it (files written whole, ``systemctl`` and ``crontab`` as argv lists)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from orchestrator.atomic import write_atomic
from orchestrator.schedule.model import ScheduleError

CRON_D = Path("/etc/cron.d")
SYSTEMD_RUNTIME = Path("/run/systemd/system")
_NO_CRONTAB = "no crontab for"


def systemd_running() -> bool:
    """Whether systemd is this machine's init (``sd_booted``'s test)."""
    return SYSTEMD_RUNTIME.is_dir()


def default_unit_dir(user: bool) -> Path:
    """Where administrators' (or the user's own) unit files go."""
    if user:
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config) / "systemd" / "user"
    return Path("/etc/systemd/system")


def read_text(path: Path) -> str:
    """A crontab file's text; empty when there is no such file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as err:
        raise ScheduleError(f"cannot read {path}: {err}") from err


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    try:
        write_atomic(path, text, mode=mode)
    except OSError as err:
        raise ScheduleError(
            f"cannot write {path}: {err.strerror or err}{_as_root_hint(err)}"
        ) from err


def delete(path: Path) -> None:
    try:
        path.unlink()
    except OSError as err:
        raise ScheduleError(
            f"cannot delete {path}: {err.strerror or err}{_as_root_hint(err)}"
        ) from err


def _as_root_hint(err: OSError) -> str:
    if isinstance(err, PermissionError) and os.geteuid() != 0:
        return " (run as root, or schedule for your user with --user)"
    return ""


def run(argv: list[str], *, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, input=input_text, capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError as err:
        raise ScheduleError(f"{argv[0]} is not installed") from err
    except subprocess.TimeoutExpired as err:
        raise ScheduleError(f"{shlex.join(argv)} did not finish in 60 s") from err


def systemctl(user: bool, *args: str) -> None:
    argv = ["systemctl", *(["--user"] if user else []), *args]
    proc = run(argv)
    if proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
        raise ScheduleError(f"{shlex.join(argv)} failed: {detail}")


def crontab_read() -> str:
    proc = run(["crontab", "-l"])
    if proc.returncode != 0:
        if _NO_CRONTAB in proc.stderr:
            return ""
        raise ScheduleError(f"crontab -l failed: {proc.stderr.strip()}")
    return proc.stdout


def crontab_write(text: str) -> None:
    proc = run(["crontab", "-"], input_text=text)
    if proc.returncode != 0:
        raise ScheduleError(f"crontab - failed: {proc.stderr.strip()}")
