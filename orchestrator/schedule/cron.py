"""Crontab lines: one rendered for ``/bin/sh`` after cron's own ``%`` handling, read back,
and merged into or dropped from a crontab's text by fleetprof's marker."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from orchestrator.schedule.model import MARKER, Installed, ScheduleError, ScheduleSpec
from orchestrator.schedule.text import check_line_safe, marker_name, split_lines

# Debian's cron (vixie cron 3.0) rejects longer commands; cronie allows more.
CRON_MAX_COMMAND = 1000
_DAILY_RE = re.compile(r"(\d{1,2}) (\d{1,2}) \* \* \*")
_CRON_LINE_RE = re.compile(
    r"(?P<when>(?:\S+\s+){5})(?:(?P<user>\S+)\s+)?(?P<cmd>cd\s.*?)\s*"
    + re.escape(MARKER)
    + r"(?P<name>[A-Za-z0-9_.-]+)\s*$"
)


def cron_quote(arg: str) -> str:
    """One word of a crontab command that cron and then ``/bin/sh`` turn back into ``arg``."""
    check_line_safe(arg, "argument")
    if arg == "":
        return "''"
    # shlex.quote never ends a piece with a backslash (it is not a safe character, so such a
    # piece is single-quoted and ends with a quote): no "\\%" for cron to misread.
    return "\\%".join(shlex.quote(piece) if piece else "" for piece in arg.split("%"))


def render_cron(spec: ScheduleSpec, argv: Sequence[str], *, system: bool) -> str:
    """One crontab line (no newline); ``system`` adds the user field of /etc/cron.d files."""
    if not argv:
        raise ScheduleError("the scheduled command is empty")
    hour, minute = (int(part) for part in spec.at.split(":"))
    # cron starts in $HOME with a bare environment: the same directory and NO_COLOR as the
    # systemd service, so a campaign's relative paths mean the same under both.
    command = " ".join(
        ["cd", cron_quote(str(spec.workdir)), "&&", "NO_COLOR=1", *map(cron_quote, argv)]
    )
    if len(command) >= CRON_MAX_COMMAND:
        raise ScheduleError(
            f"the crontab command is {len(command)} characters; cron accepts fewer than "
            f"{CRON_MAX_COMMAND}: use shorter paths, or systemd"
        )
    user = "root " if system else ""
    return f"{minute} {hour} * * * {user}{command} {MARKER}{spec.name}"


def parse_cron_line(line: str) -> Installed | None:
    """A crontab line written by ``render_cron`` read back; None for any other line."""
    match = _CRON_LINE_RE.fullmatch(line.strip())
    if match is None:
        return None
    try:
        words = shlex.split(cron_unescape(match["cmd"])[0])
    except ValueError:  # unbalanced quotes: edited by hand, not ours to read
        return None
    if len(words) < 4 or words[0] != "cd" or words[2] != "&&":
        return None
    command = words[3:]
    if command and command[0] == "NO_COLOR=1":
        command = command[1:]
    # A line edited to another schedule (weekdays only, say) shows its cron fields.
    when = " ".join(match["when"].split())
    daily = _DAILY_RE.fullmatch(when)
    return Installed(
        name=match["name"],
        kind="cron",
        at=f"{int(daily[2]):02d}:{int(daily[1]):02d}" if daily else when,
        command=command,
        paths=[],
        workdir=Path(words[1]),
    )


def merge_cron(text: str, name: str, line: str) -> str:
    """A crontab with ``line`` in place of the one marked ``name`` (appended if none)."""
    lines: list[str] = []
    placed = False
    for old in split_lines(text):
        if marker_name(old) == name:
            if not placed:
                lines.append(line)
                placed = True
            continue
        lines.append(old)
    if not placed:
        lines.append(line)
    return "".join(f"{each}\n" for each in lines)


def drop_cron(text: str, name: str) -> tuple[str, bool]:
    """A crontab without the line marked ``name``, and whether there was one."""
    lines = split_lines(text)
    kept = [line for line in lines if marker_name(line) != name]
    return "".join(f"{each}\n" for each in kept), len(kept) != len(lines)


def cron_unescape(command: str) -> tuple[str, bool]:
    """The text cron hands to /bin/sh for a crontab command (``\\%`` -> ``%``), and whether
    an unescaped ``%`` cut it there (cron makes the rest the command's stdin)."""
    out: list[str] = []
    escaped = False
    for char in command:
        if escaped:
            if char == "%":
                out[-1] = "%"
            else:
                out.append(char)
            escaped = False
            continue
        if char == "%":
            return "".join(out), True
        out.append(char)
        escaped = char == "\\"
    return "".join(out), False
