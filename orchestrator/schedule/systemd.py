"""systemd units: the oneshot service and its timer rendered, and read back the way systemd
reads them (``ExecStart=`` quoting and C escapes, specifiers, ``$$``), so the argv read back
is the argv written."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from orchestrator.schedule.model import MARKER, Installed, ScheduleError, ScheduleSpec
from orchestrator.schedule.text import (
    check_executable,
    check_line_safe,
    file_marker,
    plain,
    plain_path,
)

# A nightly check of a large fleet, with its re-measure, can take a while; a hung one must
# not block the next night's.
TIMEOUT_START = "2h"
_ON_CALENDAR_RE = re.compile(r"\*-\*-\* (\d{2}):(\d{2}):00")
_SYSTEMD_WHITESPACE = " \t\n\r"
_C_ESCAPES = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
    '"': b'"',
    "'": b"'",
    "s": b" ",
}


def systemd_quote(arg: str) -> str:
    """One ``ExecStart=`` argument that systemd reads back as exactly ``arg``."""
    check_line_safe(arg, "argument")
    out = ['"']
    for char in arg.replace("%", "%%").replace("$", "$$"):
        if char in '\\"':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def systemd_split(value: str) -> list[str]:
    """The argv systemd runs for an ``ExecStart=`` value: the inverse of ``systemd_quote``.

    Words split on whitespace, ``"..."`` / ``'...'`` quoting, C escapes (``\\xNN`` is a byte),
    then ``%%`` -> ``%`` and ``$$`` -> ``$``. Other specifiers cannot be resolved here and are
    an error; other ``$VAR`` references are kept as written.
    """
    words: list[str] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in _SYSTEMD_WHITESPACE:
            i += 1
        if i >= n:
            return words
        word = bytearray()
        quote = ""
        while i < n:
            char = value[i]
            if char == "\\":
                decoded, i = _cunescape_one(value, i + 1)
                word += decoded
                continue
            i += 1
            if quote:
                if char == quote:
                    quote = ""
                else:
                    word += char.encode()
            elif char in "\"'":
                quote = char
            elif char in _SYSTEMD_WHITESPACE:
                break
            else:
                word += char.encode()
        if quote:
            raise ScheduleError(f"ExecStart: unbalanced {quote} in {value!r}")
        try:
            text = word.decode()
        except UnicodeDecodeError as err:
            raise ScheduleError(f"ExecStart: an argument is not UTF-8 in {value!r}") from err
        words.append(_unsubstitute(unspecify(text)))


def render_service(spec: ScheduleSpec, argv: Sequence[str]) -> str:
    """The oneshot service that runs ``argv`` once, in ``spec.workdir``."""
    if not argv:
        raise ScheduleError("the scheduled command is empty")
    check_executable(argv[0])
    network = "" if spec.user else "Wants=network-online.target\nAfter=network-online.target\n"
    exec_start = " ".join(systemd_quote(arg) for arg in argv)
    return (
        f"{MARKER}{spec.name}\n"
        "[Unit]\n"
        f"Description={plain(f'fleetprof check of {spec.campaign}', 'campaign path')}\n"
        f"{network}"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"WorkingDirectory={plain_path(spec.workdir, 'working directory')}\n"
        "Environment=NO_COLOR=1\n"
        f"ExecStart={exec_start}\n"
        f"TimeoutStartSec={TIMEOUT_START}\n"
    )


def render_timer(spec: ScheduleSpec) -> str:
    """The timer that starts ``<name>.service`` every day at ``spec.at`` (local time)."""
    return (
        f"{MARKER}{spec.name}\n"
        "[Unit]\n"
        f"Description={plain(f'fleetprof check of {spec.campaign} at {spec.at}', 'campaign')}\n"
        "\n"
        "[Timer]\n"
        f"OnCalendar=*-*-* {spec.at}:00\n"
        # A night the machine was off still gets its check, at the next boot.
        "Persistent=true\n"
        "RandomizedDelaySec=0\n"
        f"Unit={spec.name}.service\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )


def _cunescape_one(value: str, i: int) -> tuple[bytes, int]:
    """The bytes of the escape after a backslash at ``value[i - 1]``, and the next index."""
    if i >= len(value):
        raise ScheduleError(f"ExecStart: a trailing backslash in {value!r}")
    char = value[i]
    if char in _C_ESCAPES:
        return _C_ESCAPES[char], i + 1
    digits = {"x": (2, 16), "u": (4, 16), "U": (8, 16)}.get(char)
    start = i + 1
    if digits is None and char in "01234567":
        digits, start = (3, 8), i
    if digits is None:
        raise ScheduleError(f"ExecStart: unknown escape \\{char} in {value!r}")
    count, base = digits
    text = value[start : start + count]
    try:
        number = int(text, base) if len(text) == count else -1
    except ValueError:
        number = -1
    if number <= 0 or number > 0x10FFFF or (base == 8 and number > 0xFF):
        raise ScheduleError(f"ExecStart: bad escape \\{char}{text} in {value!r}")
    encoded = bytes([number]) if char in "x01234567" else chr(number).encode()
    return encoded, start + count


def unspecify(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "%":
            if text[i + 1 : i + 2] != "%":
                raise ScheduleError(
                    f"unit specifier {text[i : i + 2]!r} in {text!r} cannot be read back"
                )
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out)


def _unsubstitute(text: str) -> str:
    """``$$`` -> ``$``; any other ``$`` is left as written (a variable we cannot resolve)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        out.append(text[i])
        i += 2 if text[i : i + 2] == "$$" else 1
    return "".join(out)


def unit_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(path for suffix in ("service", "timer") for path in directory.glob(f"*.{suffix}"))


def read_unit(path: Path) -> dict[str, str]:
    """``Section.Key`` -> value of a unit file (the last assignment wins, as in systemd)."""
    values: dict[str, str] = {}
    section = ""
    pending = ""
    for raw in path.read_text(encoding="utf-8").split("\n"):
        line = pending + raw
        if line.endswith("\\"):
            # systemd joins continued lines with a space in place of the backslash.
            pending = line[:-1] + " "
            continue
        pending = ""
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line:
            key, value = line.split("=", 1)
            values[f"{section}.{key.strip()}"] = value.strip()
    return values


def list_units(directory: Path) -> list[Installed]:
    by_name: dict[str, list[Path]] = {}
    for path in unit_files(directory):
        name = file_marker(path)
        if name is not None:
            by_name.setdefault(name, []).append(path)
    found = []
    for name, paths in by_name.items():
        at = ""
        command: list[str] = []
        workdir: Path | None = None
        for path in paths:
            try:
                unit = read_unit(path)
                if path.suffix == ".timer":
                    calendar = unit.get("Timer.OnCalendar", "")
                    match = _ON_CALENDAR_RE.fullmatch(calendar)
                    at = f"{match[1]}:{match[2]}" if match else calendar
                else:
                    command = systemd_split(unit.get("Service.ExecStart", ""))
                    if "Service.WorkingDirectory" in unit:
                        workdir = Path(unspecify(unit["Service.WorkingDirectory"]))
            except (OSError, UnicodeDecodeError) as err:
                raise ScheduleError(f"{path}: cannot read: {err}") from err
            except ScheduleError as err:
                raise ScheduleError(f"{path}: {err}") from err
        found.append(Installed(name, "systemd", at, command, paths, workdir))
    return found
