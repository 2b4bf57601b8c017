"""Scheduling the nightly check (cron and systemd, not the T0 of a run): one ``fleetprof check``
command line -> a systemd timer or a crontab line, and back (list and remove what fleetprof
installed). Modules: model, text checks, systemd, cron, this machine, install/list/remove.

Rendering and reading back are pure functions of text; the edges are the few functions that
write files or call ``systemctl`` / ``crontab`` (argv lists, never a shell). Every unit and
every crontab line fleetprof writes carries the comment ``# fleetprof schedule: <name>``;
that marker, not the file name, is how ``list_schedules`` and ``remove`` recognise their own.

Quoting follows the consumers' own rules, so the argv read back is the argv written:

- systemd ``ExecStart=``: each argument in C-style double quotes (``\\\\``, ``\\"``, ``\\xNN``
  for control characters), ``%`` doubled (unit specifiers are resolved at load time) and
  ``$`` doubled (environment variables are substituted at exec time).
- cron: the line goes through ``/bin/sh``, so each argument is ``shlex.quote``-d; before
  that, cron itself turns an unescaped ``%`` into a newline (the rest becomes stdin) and
  ``\\%`` into ``%``, so every ``%`` is written as ``\\%`` and never right after a backslash of
  the argument (a quote break is put between them).
"""

from __future__ import annotations

from orchestrator.schedule.cron import (
    CRON_MAX_COMMAND,
    cron_quote,
    cron_unescape,
    drop_cron,
    merge_cron,
    parse_cron_line,
    render_cron,
)
from orchestrator.schedule.install import install, list_schedules, remove
from orchestrator.schedule.machine import CRON_D, SYSTEMD_RUNTIME, default_unit_dir, systemd_running
from orchestrator.schedule.model import (
    MARKER,
    MAX_NAME,
    Installed,
    InstallResult,
    Kind,
    ScheduleError,
    ScheduleSpec,
    check_argv,
)
from orchestrator.schedule.systemd import (
    TIMEOUT_START,
    render_service,
    render_timer,
    systemd_quote,
    systemd_split,
)

__all__ = [
    "CRON_D",
    "CRON_MAX_COMMAND",
    "MARKER",
    "MAX_NAME",
    "SYSTEMD_RUNTIME",
    "TIMEOUT_START",
    "InstallResult",
    "Installed",
    "Kind",
    "ScheduleError",
    "ScheduleSpec",
    "check_argv",
    "cron_quote",
    "cron_unescape",
    "default_unit_dir",
    "drop_cron",
    "install",
    "list_schedules",
    "merge_cron",
    "parse_cron_line",
    "remove",
    "render_cron",
    "render_service",
    "render_timer",
    "systemd_quote",
    "systemd_running",
    "systemd_split",
]
