"""The edges: install, list and remove a schedule, with systemd where it runs (or a unit
directory is given) and cron elsewhere; what to run by hand when nothing was activated."""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

from orchestrator.schedule import machine
from orchestrator.schedule.cron import drop_cron, merge_cron, parse_cron_line, render_cron
from orchestrator.schedule.machine import (
    crontab_read,
    crontab_write,
    delete,
    read_text,
    systemctl,
    write_file,
)
from orchestrator.schedule.model import (
    Installed,
    InstallResult,
    ScheduleError,
    ScheduleSpec,
    absolute,
)
from orchestrator.schedule.systemd import list_units, render_service, render_timer, unit_files
from orchestrator.schedule.text import file_marker, marker_name, split_lines


def install(
    spec: ScheduleSpec,
    argv: Sequence[str],
    *,
    unit_dir: Path | None = None,
    cron_file: Path | None = None,
    activate: bool | None = None,
) -> InstallResult:
    """Write the schedule: systemd units where systemd runs (or ``unit_dir`` is given), else
    a crontab line. ``cron_file`` forces cron and names the crontab file to edit.

    ``activate`` (default: when systemd runs and the units go to its default directory) runs
    ``systemctl daemon-reload`` and ``enable --now``; otherwise the hints say what to run.
    """
    if unit_dir is not None or (cron_file is None and machine.systemd_running()):
        return _install_systemd(spec, argv, unit_dir, activate)
    return _install_cron(spec, argv, cron_file)


def list_schedules(
    *, unit_dir: Path | None = None, user: bool = False, cron_file: Path | None = None
) -> list[Installed]:
    """Every schedule fleetprof installed, by name. Given ``unit_dir`` or ``cron_file``, only
    those are read; otherwise the default unit directory, /etc/cron.d (unless ``user``) and
    the user's crontab where ``crontab`` is installed.
    """
    explicit = unit_dir is not None or cron_file is not None
    found: list[Installed] = []
    if unit_dir is not None or not explicit:
        found += list_units(unit_dir or machine.default_unit_dir(user))
    if cron_file is not None:
        found += _list_cron_file(cron_file)
    elif not explicit:
        if not user:
            for path in _cron_d_files():
                found += _list_cron_file(path)
        if shutil.which("crontab"):
            found += [
                entry for line in split_lines(crontab_read()) if (entry := parse_cron_line(line))
            ]
    return sorted(found, key=lambda entry: (entry.name, entry.kind))


def remove(
    name: str,
    *,
    unit_dir: Path | None = None,
    user: bool = False,
    cron_file: Path | None = None,
    activate: bool | None = None,
) -> list[Path]:
    """Remove the schedule ``name`` wherever ``list_schedules`` would find it; returns the
    files deleted or edited. With ``activate`` (default as for ``install``) the timer is
    disabled and stopped first, and systemd reloaded after.
    """
    explicit = unit_dir is not None or cron_file is not None
    touched: list[Path] = []
    found = False
    if unit_dir is not None or not explicit:
        directory = unit_dir or machine.default_unit_dir(user)
        units = [path for path in unit_files(directory) if file_marker(path) == name]
        if units:
            found = True
            active = _default_activate(activate, directory, user)
            if active:
                systemctl(user, "disable", "--now", "--", f"{name}.timer")
            for path in units:
                delete(path)
                touched.append(path)
            if active:
                systemctl(user, "daemon-reload")
    if cron_file is not None:
        found |= _drop_from_file(cron_file, name, touched, delete_empty=False)
    elif not explicit:
        if not user:
            for path in _cron_d_files():
                found |= _drop_from_file(path, name, touched, delete_empty=True)
        if shutil.which("crontab"):
            text, dropped = drop_cron(crontab_read(), name)
            if dropped:
                crontab_write(text)
                found = True
    if not found:
        raise ScheduleError(f"no fleetprof schedule named {name!r} (see: fleetprof schedule list)")
    return touched


def _default_activate(activate: bool | None, unit_dir: Path, user: bool) -> bool:
    if activate is not None:
        return activate
    return machine.systemd_running() and absolute(unit_dir) == absolute(
        machine.default_unit_dir(user)
    )


def _install_systemd(
    spec: ScheduleSpec, argv: Sequence[str], unit_dir: Path | None, activate: bool | None
) -> InstallResult:
    directory = absolute(unit_dir or machine.default_unit_dir(spec.user))
    service = directory / f"{spec.name}.service"
    timer = directory / f"{spec.name}.timer"
    # Render both before writing either: a bad argument leaves nothing behind.
    texts = {service: render_service(spec, argv), timer: render_timer(spec)}
    for path in texts:
        owner = file_marker(path) if path.exists() else spec.name
        if owner != spec.name:
            raise ScheduleError(f"{path} exists and is not fleetprof schedule {spec.name!r}")
    for path, text in texts.items():
        write_file(path, text)
    ctl = "systemctl --user" if spec.user else "systemctl"
    active = _default_activate(activate, directory, spec.user)
    hints: list[str] = []
    if active:
        systemctl(spec.user, "daemon-reload")
        systemctl(spec.user, "enable", "--now", "--", timer.name)
    elif directory == absolute(machine.default_unit_dir(spec.user)):
        hints += [f"{ctl} daemon-reload", f"{ctl} enable --now {timer.name}"]
    else:
        # systemd does not look in this directory: link the units into its search path.
        hints += [
            f"{ctl} link {shlex.quote(str(service))}",
            f"{ctl} enable --now {shlex.quote(str(timer))}",
        ]
    if spec.user:
        hints.append("user timers run only while you are logged in, unless: loginctl enable-linger")
    return InstallResult("systemd", [service, timer], active, hints)


def _install_cron(spec: ScheduleSpec, argv: Sequence[str], cron_file: Path | None) -> InstallResult:
    if cron_file is None and not spec.user and os.geteuid() == 0 and machine.CRON_D.is_dir():
        # Debian's cron skips /etc/cron.d files whose names contain a dot.
        cron_file = machine.CRON_D / spec.name.replace(".", "_")
    if cron_file is not None:
        line = render_cron(spec, argv, system=_is_system_crontab(cron_file))
        write_file(cron_file, merge_cron(read_text(cron_file), spec.name, line))
        return InstallResult("cron", [cron_file], True, _cron_hints())
    if not shutil.which("crontab"):
        raise ScheduleError(
            "systemd is not running and crontab is not installed: install cron "
            "(Debian/Ubuntu: apt-get install cron; Fedora/RHEL: dnf install cronie) "
            "or run where systemd is"
        )
    line = render_cron(spec, argv, system=False)
    crontab_write(merge_cron(crontab_read(), spec.name, line))
    return InstallResult("cron", [], True, ["installed in your crontab (crontab -l shows it)"])


def _cron_hints() -> list[str]:
    return ["cron must be running for the line to fire (e.g. service cron status)"]


def _is_system_crontab(path: Path) -> bool:
    path = absolute(path)
    return path.parent == machine.CRON_D or path == Path("/etc/crontab")


def _cron_d_files() -> list[Path]:
    """The /etc/cron.d files holding a fleetprof line (a schedule may have any name)."""
    if not machine.CRON_D.is_dir():
        return []
    found = []
    for path in sorted(machine.CRON_D.iterdir()):
        try:
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
        except (OSError, UnicodeDecodeError):
            continue  # not ours: packages' files are none of our business
        if any(marker_name(line) for line in split_lines(text)):
            found.append(path)
    return found


def _list_cron_file(path: Path) -> list[Installed]:
    found = []
    for line in split_lines(read_text(path)):
        entry = parse_cron_line(line)
        if entry is not None:
            found.append(
                Installed(entry.name, "cron", entry.at, entry.command, [path], entry.workdir)
            )
    return found


def _drop_from_file(path: Path, name: str, touched: list[Path], *, delete_empty: bool) -> bool:
    text, dropped = drop_cron(read_text(path), name)
    if not dropped:
        return False
    if delete_empty and not text.strip():
        delete(path)
    else:
        write_file(path, text)
    touched.append(path)
    return True
