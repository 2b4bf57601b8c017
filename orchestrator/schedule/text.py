"""What a one-line schedule can hold, and finding fleetprof's marker in unit files and
crontab lines: the checks every renderer runs before it writes."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.schedule.model import MARKER, ScheduleError

_MARKER_RE = re.compile(re.escape(MARKER) + r"([A-Za-z0-9_.-]+)\s*$")


def check_line_safe(text: str, what: str) -> None:
    for bad, label in (("\n", "a newline"), ("\r", "a carriage return"), ("\0", "a NUL")):
        if bad in text:
            raise ScheduleError(f"{what} {text!r} contains {label}; a schedule cannot hold it")
    try:
        text.encode()
    except UnicodeEncodeError as err:
        raise ScheduleError(f"{what} {text!r} is not valid Unicode text") from err


def check_executable(path: str) -> None:
    # systemd takes the executable without environment substitution and refuses quotes,
    # backslashes and control characters in it (string_is_safe).
    check_line_safe(path, "executable")
    if not path.startswith("/") or any(c in path for c in "\"'\\$") or not path.isprintable():
        raise ScheduleError(
            f"executable {path!r}: systemd needs an absolute path without quotes, "
            "backslashes, '$' or control characters"
        )


def plain(text: str, what: str) -> str:
    """A unit setting value that is taken whole (no quoting), with specifiers escaped."""
    check_line_safe(text, what)
    if not text.isprintable() or text != text.strip() or text.endswith("\\"):
        raise ScheduleError(
            f"{what} {text!r}: control characters, surrounding blanks or a "
            "final backslash cannot be written to a unit file"
        )
    return text.replace("%", "%%")


def plain_path(path: Path, what: str) -> str:
    if not path.is_absolute():
        raise ScheduleError(f"{what} {path} must be absolute")
    return plain(str(path), what)


def split_lines(text: str) -> list[str]:
    # Not splitlines(): that would also split on form feeds and U+2028 inside an argument.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def marker_name(line: str) -> str | None:
    match = _MARKER_RE.search(line)
    return match[1] if match else None


def file_marker(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.split("\n"):
        if line.startswith(MARKER):
            return marker_name(line)
    return None
