"""Scheduling the nightly check: one ``fleetprof check`` command line -> a systemd timer or a
crontab line, and the inverse (list and remove what fleetprof installed).

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

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from orchestrator.campaign.loader import load_campaign
from orchestrator.campaign.messages import CampaignError
from orchestrator.stages.ansible import REPO_ROOT

__all__ = [
    "CRON_D",
    "MARKER",
    "InstallResult",
    "Installed",
    "ScheduleError",
    "ScheduleSpec",
    "check_argv",
    "cron_quote",
    "default_unit_dir",
    "install",
    "list_schedules",
    "parse_cron_line",
    "remove",
    "render_cron",
    "render_service",
    "render_timer",
    "systemd_quote",
    "systemd_running",
    "systemd_split",
]

Kind = Literal["systemd", "cron"]

MARKER = "# fleetprof schedule: "
CRON_D = Path("/etc/cron.d")
SYSTEMD_RUNTIME = Path("/run/systemd/system")
# A nightly check of a large fleet, with its re-measure, can take a while; a hung one must
# not block the next night's.
TIMEOUT_START = "2h"
# Debian's cron (vixie cron 3.0) rejects longer commands; cronie allows more.
CRON_MAX_COMMAND = 1000
# Unit names are at most 255 characters including ".service".
MAX_NAME = 200

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_AT_RE = re.compile(r"(\d{1,2}):(\d{2})")
_MARKER_RE = re.compile(re.escape(MARKER) + r"([A-Za-z0-9_.-]+)\s*$")
_ON_CALENDAR_RE = re.compile(r"\*-\*-\* (\d{2}):(\d{2}):00")
_DAILY_RE = re.compile(r"(\d{1,2}) (\d{1,2}) \* \* \*")
_CRON_LINE_RE = re.compile(
    r"(?P<when>(?:\S+\s+){5})(?:(?P<user>\S+)\s+)?(?P<cmd>cd\s.*?)\s*"
    + re.escape(MARKER)
    + r"(?P<name>[A-Za-z0-9_.-]+)\s*$"
)
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
_NO_CRONTAB = "no crontab for"


class ScheduleError(Exception):
    """A schedule that cannot be written, read back or removed; the text says why and where."""


@dataclass(frozen=True, kw_only=True)
class ScheduleSpec:
    """What to run when: one nightly ``fleetprof check``.

    Paths are made absolute against the current directory on construction (the timer runs
    elsewhere); ``name`` left empty becomes ``fleetprof-<campaign name>``, read from the
    campaign file (which is validated on the way).
    """

    campaign: Path
    at: str
    inventory: str | None = None
    out_root: Path = Path("reports")
    user: bool = False
    extra: tuple[str, ...] = ()
    workdir: Path = REPO_ROOT
    name: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "campaign", _absolute(self.campaign))
        set_(self, "out_root", _absolute(self.out_root))
        set_(self, "workdir", _absolute(self.workdir))
        if self.inventory is not None and Path(self.inventory).exists():
            set_(self, "inventory", str(_absolute(Path(self.inventory))))
        set_(self, "extra", tuple(self.extra))
        set_(self, "at", _parse_at(self.at))
        if not self.name:
            set_(self, "name", f"fleetprof-{_campaign_name(self.campaign)}")
        _check_name(self.name)


@dataclass(frozen=True)
class InstallResult:
    """What ``install`` did: the files written, whether the timer was started, what is left."""

    kind: Kind
    paths: list[Path]
    activated: bool
    hints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Installed:
    """One schedule found on this machine, read back from its unit files or crontab line."""

    name: str
    kind: Kind
    at: str
    command: list[str]
    paths: list[Path]
    workdir: Path | None = None


# --- the command ---------------------------------------------------------------------------


def check_argv(spec: ScheduleSpec, fleetprof: Path) -> list[str]:
    """The ``fleetprof check`` command line the schedule runs; ``fleetprof`` is absolute."""
    if not fleetprof.is_absolute():
        raise ScheduleError(f"the fleetprof executable must be an absolute path, got {fleetprof}")
    argv = [str(fleetprof), "check", str(spec.campaign)]
    if spec.inventory is not None:
        argv += ["-i", spec.inventory]
    return [*argv, "-o", str(spec.out_root), *spec.extra]


# --- systemd -------------------------------------------------------------------------------


def systemd_quote(arg: str) -> str:
    """One ``ExecStart=`` argument that systemd reads back as exactly ``arg``."""
    _check_line_safe(arg, "argument")
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
        words.append(_unsubstitute(_unspecify(text)))


def render_service(spec: ScheduleSpec, argv: Sequence[str]) -> str:
    """The oneshot service that runs ``argv`` once, in ``spec.workdir``."""
    if not argv:
        raise ScheduleError("the scheduled command is empty")
    _check_executable(argv[0])
    network = "" if spec.user else "Wants=network-online.target\nAfter=network-online.target\n"
    exec_start = " ".join(systemd_quote(arg) for arg in argv)
    return (
        f"{MARKER}{spec.name}\n"
        "[Unit]\n"
        f"Description={_plain(f'fleetprof check of {spec.campaign}', 'campaign path')}\n"
        f"{network}"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"WorkingDirectory={_plain_path(spec.workdir, 'working directory')}\n"
        "Environment=NO_COLOR=1\n"
        f"ExecStart={exec_start}\n"
        f"TimeoutStartSec={TIMEOUT_START}\n"
    )


def render_timer(spec: ScheduleSpec) -> str:
    """The timer that starts ``<name>.service`` every day at ``spec.at`` (local time)."""
    return (
        f"{MARKER}{spec.name}\n"
        "[Unit]\n"
        f"Description={_plain(f'fleetprof check of {spec.campaign} at {spec.at}', 'campaign')}\n"
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


def systemd_running() -> bool:
    """Whether systemd is this machine's init (``sd_booted``'s test)."""
    return SYSTEMD_RUNTIME.is_dir()


def default_unit_dir(user: bool) -> Path:
    """Where administrators' (or the user's own) unit files go."""
    if user:
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config) / "systemd" / "user"
    return Path("/etc/systemd/system")


# --- cron ----------------------------------------------------------------------------------


def cron_quote(arg: str) -> str:
    """One word of a crontab command that cron and then ``/bin/sh`` turn back into ``arg``."""
    _check_line_safe(arg, "argument")
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
        words = shlex.split(_cron_unescape(match["cmd"]))
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
    for old in _lines(text):
        if _marker_name(old) == name:
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
    lines = _lines(text)
    kept = [line for line in lines if _marker_name(line) != name]
    return "".join(f"{each}\n" for each in kept), len(kept) != len(lines)


# --- the edges: install, list, remove ------------------------------------------------------


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
    if unit_dir is not None or (cron_file is None and systemd_running()):
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
        found += _list_units(unit_dir or default_unit_dir(user))
    if cron_file is not None:
        found += _list_cron_file(cron_file)
    elif not explicit:
        if not user:
            for path in _cron_d_files():
                found += _list_cron_file(path)
        if shutil.which("crontab"):
            found += [entry for line in _lines(_crontab_read()) if (entry := parse_cron_line(line))]
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
        directory = unit_dir or default_unit_dir(user)
        units = [path for path in _unit_files(directory) if _file_marker(path) == name]
        if units:
            found = True
            active = _default_activate(activate, directory, user)
            if active:
                _systemctl(user, "disable", "--now", "--", f"{name}.timer")
            for path in units:
                _delete(path)
                touched.append(path)
            if active:
                _systemctl(user, "daemon-reload")
    if cron_file is not None:
        found |= _drop_from_file(cron_file, name, touched, delete_empty=False)
    elif not explicit:
        if not user:
            for path in _cron_d_files():
                found |= _drop_from_file(path, name, touched, delete_empty=True)
        if shutil.which("crontab"):
            text, dropped = drop_cron(_crontab_read(), name)
            if dropped:
                _crontab_write(text)
                found = True
    if not found:
        raise ScheduleError(f"no fleetprof schedule named {name!r} (see: fleetprof schedule list)")
    return touched


# --- helpers -------------------------------------------------------------------------------


def _absolute(path: Path) -> Path:
    # abspath, not resolve: '..' is folded but a symlinked checkout keeps the name it was given.
    return Path(os.path.abspath(path))


def _parse_at(at: str) -> str:
    match = _AT_RE.fullmatch(at.strip())
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ScheduleError(f"--at {at!r}: expected a time of day HH:MM, 00:00 to 23:59")
    return f"{int(match[1]):02d}:{match[2]}"


def _campaign_name(campaign: Path) -> str:
    try:
        return load_campaign(campaign).name
    except CampaignError as err:
        raise ScheduleError(str(err)) from err


def _check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        raise ScheduleError(
            f"schedule name {name!r}: use letters, digits, '_', '.' and '-' (not first: '.' "
            f"or '-'), at most {MAX_NAME} characters"
        )


def _check_line_safe(text: str, what: str) -> None:
    for bad, label in (("\n", "a newline"), ("\r", "a carriage return"), ("\0", "a NUL")):
        if bad in text:
            raise ScheduleError(f"{what} {text!r} contains {label}; a schedule cannot hold it")
    try:
        text.encode()
    except UnicodeEncodeError as err:
        raise ScheduleError(f"{what} {text!r} is not valid Unicode text") from err


def _check_executable(path: str) -> None:
    # systemd takes the executable without environment substitution and refuses quotes,
    # backslashes and control characters in it (string_is_safe).
    _check_line_safe(path, "executable")
    if not path.startswith("/") or any(c in path for c in "\"'\\$") or not path.isprintable():
        raise ScheduleError(
            f"executable {path!r}: systemd needs an absolute path without quotes, "
            "backslashes, '$' or control characters"
        )


def _plain(text: str, what: str) -> str:
    """A unit setting value that is taken whole (no quoting), with specifiers escaped."""
    _check_line_safe(text, what)
    if not text.isprintable() or text != text.strip() or text.endswith("\\"):
        raise ScheduleError(
            f"{what} {text!r}: control characters, surrounding blanks or a "
            "final backslash cannot be written to a unit file"
        )
    return text.replace("%", "%%")


def _plain_path(path: Path, what: str) -> str:
    if not path.is_absolute():
        raise ScheduleError(f"{what} {path} must be absolute")
    return _plain(str(path), what)


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


def _unspecify(text: str) -> str:
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


def _cron_unescape(command: str) -> str:
    """The text cron hands to /bin/sh: ``\\%`` -> ``%``, stop at an unescaped ``%``."""
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
            break
        out.append(char)
        escaped = char == "\\"
    return "".join(out)


def _lines(text: str) -> list[str]:
    # Not splitlines(): that would also split on form feeds and U+2028 inside an argument.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _read_text(path: Path) -> str:
    """A crontab file's text; empty when there is no such file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as err:
        raise ScheduleError(f"cannot read {path}: {err}") from err


def _marker_name(line: str) -> str | None:
    match = _MARKER_RE.search(line)
    return match[1] if match else None


def _file_marker(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.split("\n"):
        if line.startswith(MARKER):
            return _marker_name(line)
    return None


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    try:
        _write_atomic_or_raise(path, text, mode)
    except OSError as err:
        raise ScheduleError(
            f"cannot write {path}: {err.strerror or err}{_as_root_hint(err)}"
        ) from err


def _delete(path: Path) -> None:
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


def _write_atomic_or_raise(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run(argv: list[str], *, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, input=input_text, capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError as err:
        raise ScheduleError(f"{argv[0]} is not installed") from err
    except subprocess.TimeoutExpired as err:
        raise ScheduleError(f"{shlex.join(argv)} did not finish in 60 s") from err


def _systemctl(user: bool, *args: str) -> None:
    argv = ["systemctl", *(["--user"] if user else []), *args]
    proc = _run(argv)
    if proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
        raise ScheduleError(f"{shlex.join(argv)} failed: {detail}")


def _default_activate(activate: bool | None, unit_dir: Path, user: bool) -> bool:
    if activate is not None:
        return activate
    return systemd_running() and _absolute(unit_dir) == _absolute(default_unit_dir(user))


def _install_systemd(
    spec: ScheduleSpec, argv: Sequence[str], unit_dir: Path | None, activate: bool | None
) -> InstallResult:
    directory = _absolute(unit_dir or default_unit_dir(spec.user))
    service = directory / f"{spec.name}.service"
    timer = directory / f"{spec.name}.timer"
    # Render both before writing either: a bad argument leaves nothing behind.
    texts = {service: render_service(spec, argv), timer: render_timer(spec)}
    for path in texts:
        owner = _file_marker(path) if path.exists() else spec.name
        if owner != spec.name:
            raise ScheduleError(f"{path} exists and is not fleetprof schedule {spec.name!r}")
    for path, text in texts.items():
        _write_atomic(path, text)
    ctl = "systemctl --user" if spec.user else "systemctl"
    active = _default_activate(activate, directory, spec.user)
    hints: list[str] = []
    if active:
        _systemctl(spec.user, "daemon-reload")
        _systemctl(spec.user, "enable", "--now", "--", timer.name)
    elif directory == _absolute(default_unit_dir(spec.user)):
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
    if cron_file is None and not spec.user and os.geteuid() == 0 and CRON_D.is_dir():
        # Debian's cron skips /etc/cron.d files whose names contain a dot.
        cron_file = CRON_D / spec.name.replace(".", "_")
    if cron_file is not None:
        line = render_cron(spec, argv, system=_is_system_crontab(cron_file))
        _write_atomic(cron_file, merge_cron(_read_text(cron_file), spec.name, line))
        return InstallResult("cron", [cron_file], True, _cron_hints())
    if not shutil.which("crontab"):
        raise ScheduleError(
            "systemd is not running and crontab is not installed: install cron "
            "(Debian/Ubuntu: apt-get install cron; Fedora/RHEL: dnf install cronie) "
            "or run where systemd is"
        )
    line = render_cron(spec, argv, system=False)
    _crontab_write(merge_cron(_crontab_read(), spec.name, line))
    return InstallResult("cron", [], True, ["installed in your crontab (crontab -l shows it)"])


def _cron_hints() -> list[str]:
    return ["cron must be running for the line to fire (e.g. service cron status)"]


def _is_system_crontab(path: Path) -> bool:
    path = _absolute(path)
    return path.parent == CRON_D or path == Path("/etc/crontab")


def _cron_d_files() -> list[Path]:
    """The /etc/cron.d files holding a fleetprof line (a schedule may have any name)."""
    if not CRON_D.is_dir():
        return []
    found = []
    for path in sorted(CRON_D.iterdir()):
        try:
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
        except (OSError, UnicodeDecodeError):
            continue  # not ours: packages' files are none of our business
        if any(_marker_name(line) for line in _lines(text)):
            found.append(path)
    return found


def _list_cron_file(path: Path) -> list[Installed]:
    found = []
    for line in _lines(_read_text(path)):
        entry = parse_cron_line(line)
        if entry is not None:
            found.append(
                Installed(entry.name, "cron", entry.at, entry.command, [path], entry.workdir)
            )
    return found


def _drop_from_file(path: Path, name: str, touched: list[Path], *, delete_empty: bool) -> bool:
    text, dropped = drop_cron(_read_text(path), name)
    if not dropped:
        return False
    if delete_empty and not text.strip():
        _delete(path)
    else:
        _write_atomic(path, text)
    touched.append(path)
    return True


def _crontab_read() -> str:
    proc = _run(["crontab", "-l"])
    if proc.returncode != 0:
        if _NO_CRONTAB in proc.stderr:
            return ""
        raise ScheduleError(f"crontab -l failed: {proc.stderr.strip()}")
    return proc.stdout


def _crontab_write(text: str) -> None:
    proc = _run(["crontab", "-"], input_text=text)
    if proc.returncode != 0:
        raise ScheduleError(f"crontab - failed: {proc.stderr.strip()}")


def _unit_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(path for suffix in ("service", "timer") for path in directory.glob(f"*.{suffix}"))


def _read_unit(path: Path) -> dict[str, str]:
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


def _list_units(directory: Path) -> list[Installed]:
    by_name: dict[str, list[Path]] = {}
    for path in _unit_files(directory):
        name = _file_marker(path)
        if name is not None:
            by_name.setdefault(name, []).append(path)
    found = []
    for name, paths in by_name.items():
        at = ""
        command: list[str] = []
        workdir: Path | None = None
        for path in paths:
            try:
                unit = _read_unit(path)
                if path.suffix == ".timer":
                    calendar = unit.get("Timer.OnCalendar", "")
                    match = _ON_CALENDAR_RE.fullmatch(calendar)
                    at = f"{match[1]}:{match[2]}" if match else calendar
                else:
                    command = systemd_split(unit.get("Service.ExecStart", ""))
                    if "Service.WorkingDirectory" in unit:
                        workdir = Path(_unspecify(unit["Service.WorkingDirectory"]))
            except (OSError, UnicodeDecodeError) as err:
                raise ScheduleError(f"{path}: cannot read: {err}") from err
            except ScheduleError as err:
                raise ScheduleError(f"{path}: {err}") from err
        found.append(Installed(name, "systemd", at, command, paths, workdir))
    return found
