"""Scheduling the nightly check: what the timer or cron runs is exactly the argv we meant.

Units and crontab lines are written into temporary directories (``unit_dir=`` /
``cron_file=``, never activated) and read back the way their consumers read them: the unit
files are checked by the real ``systemd-analyze verify``, and each crontab command goes
through cron's own ``%`` handling and then the real ``/bin/sh``, running a Python process
that prints the argv it was given.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import schedule
from orchestrator.schedule import (
    MARKER,
    Installed,
    ScheduleError,
    ScheduleSpec,
    check_argv,
    cron_quote,
    install,
    list_schedules,
    parse_cron_line,
    remove,
    render_cron,
    render_service,
    render_timer,
    systemd_quote,
    systemd_split,
)
from tests.support.cron import cron_hands_to_shell

# Every argument a shell, systemd or cron could get wrong.
NASTY = [
    "plain",
    "two words",
    "  padded  ",
    "",
    "'single'",
    '"double"',
    'it\'s "mixed"',
    "100%",
    "%%",
    "%n%h%i",
    "a\\%b",
    "\\%",
    "ends with backslash\\",
    "\\\\server\\share",
    "$HOME",
    "$$",
    "${PATH}",
    "`id`",
    "$(id)",
    "a;b",
    ";",
    "&&",
    "|",
    "# not a comment",
    "*",
    "~",
    "tab\there",
    "bell\a",
    "\x7f",
    "é✓ 名前 🙂",
    "\u2028line separator\u0085",
    "\\x41 is not A",
]

# Printable or not, anything but what a one-line schedule cannot hold.
ARGUMENT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\n\r\0"),
    max_size=30,
)

ECHO_ARGV = "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd()}))"


def spec(tmp_path: Path, name: str = "fleetprof-nightly", at: str = "02:00") -> ScheduleSpec:
    return ScheduleSpec(
        name=name,
        campaign=tmp_path / "nightly.yml",
        inventory="web1,web2,",
        out_root=tmp_path / "reports",
        at=at,
        workdir=tmp_path,
    )


def echo_argv(*args: str) -> list[str]:
    """A command that prints the arguments it received and its directory, as JSON."""
    return [sys.executable, "-c", ECHO_ARGV, *args]


def run_cron_line(line: str, *, system: bool) -> tuple[list[str], str]:
    """Run a crontab line's command as cron would; the argv it printed and its cwd."""
    fields = line.split(" ", 6 if system else 5)
    command = cron_hands_to_shell(fields[-1])
    proc = subprocess.run(
        ["/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": "/"},
        check=True,
    )
    printed = json.loads(proc.stdout)
    return printed["argv"], printed["cwd"]


def cron_lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1]


# --- systemd -------------------------------------------------------------------------------


def test_exec_start_reads_back_every_nasty_argument(tmp_path: Path) -> None:
    argv = echo_argv(*NASTY)
    install(spec(tmp_path), argv, unit_dir=tmp_path / "units", activate=False)
    [found] = list_schedules(unit_dir=tmp_path / "units")
    assert found.command == argv
    assert found.kind == "systemd"
    assert found.workdir == tmp_path


@given(st.lists(ARGUMENT, max_size=6))
def test_systemd_quoting_round_trips_any_text(args: list[str]) -> None:
    assert systemd_split(" ".join(systemd_quote(arg) for arg in args)) == args


def test_systemd_split_reads_systemd_syntax_it_did_not_write() -> None:
    assert systemd_split(r"/bin/x a\x41 'b c'd \"e\" 100%% $$X $Y \u00e9 \303\251") == [
        "/bin/x",
        "aA",
        "b cd",
        '"e"',
        "100%",
        "$X",
        "$Y",
        "é",
        "é",
    ]
    for bad in ['/bin/x "open', "/bin/x \\q", "/bin/x %h", "/bin/x \\x00", "/bin/x \\"]:
        with pytest.raises(ScheduleError):
            systemd_split(bad)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_analyze_verifies_the_units_without_a_warning(tmp_path: Path) -> None:
    # The argv's executable must exist for verify: the test's Python prints the arguments.
    unit_dir = tmp_path / "units"
    result = install(spec(tmp_path), echo_argv(*NASTY), unit_dir=unit_dir, activate=False)
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, result.paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = [
        line for line in proc.stderr.splitlines() if str(unit_dir) in line or "fleetprof" in line
    ]
    assert proc.returncode == 0, proc.stderr
    assert ours == []


SYSTEMD = next(
    (
        path
        for path in ("/usr/lib/systemd/systemd", "/lib/systemd/systemd")
        if os.access(path, os.X_OK)
    ),
    None,
)
DUMP_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def systemd_dump_words(line: str) -> list[str]:
    """The argv in a ``Command Line:`` of ``systemd --test``'s dump: words, some in double
    quotes, with C escapes and ``\\$`` / ``\\``` for the shell's special characters.
    """
    words: list[str] = []
    word: list[str] = []
    quoted = started = False
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\":
            nxt = line[i + 1]
            if nxt in "01234567":
                word.append(bytes([int(line[i + 1 : i + 4], 8)]).decode("latin-1"))
                i += 4
                continue
            word.append(DUMP_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        if char == '"':
            quoted, started = not quoted, True
        elif char == " " and not quoted:
            if started or word:
                words.append("".join(word))
            word, started = [], False
        else:
            word.append(char)
        i += 1
    if started or word:
        words.append("".join(word))
    return words


@pytest.mark.skipif(SYSTEMD is None, reason="systemd is not installed here")
@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="no setpriv")
def test_systemd_itself_parses_exec_start_into_the_argv() -> None:
    # systemd's test mode loads the unit and dumps the command line it parsed (specifiers
    # resolved; "$$" is turned into "$" only at exec time, as systemd.service(5) says).
    # It refuses to run as root: run it as nobody, on units nobody can read.
    argv = ["/bin/echo", *NASTY]
    unit_dir = Path(tempfile.mkdtemp(prefix="fleetprof-units-"))
    try:
        unit_dir.chmod(0o755)
        schedule = ScheduleSpec(
            name="nasty", campaign=Path("/c.yml"), at="02:00", workdir=Path("/")
        )
        install(schedule, argv, unit_dir=unit_dir, activate=False)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        proc = subprocess.run(
            [
                *(drop if os.geteuid() == 0 else []),
                "env",
                f"SYSTEMD_UNIT_PATH={unit_dir}:",
                str(SYSTEMD),
                "--test",
                "--system",
                "--unit=nasty.service",
                "--log-target=console",
                "--log-level=err",
            ],
            capture_output=True,
            timeout=120,
            cwd="/",
        )
    finally:
        shutil.rmtree(unit_dir)
    dump = proc.stdout.decode("utf-8", "replace").split("-> Unit nasty.service:", 1)
    assert len(dump) == 2, proc.stderr.decode(errors="replace")[-2000:]
    command = dump[1].split("Command Line: ", 1)[1].split("\n", 1)[0]
    parsed = [word.replace("$$", "$") for word in systemd_dump_words(command)]
    assert parsed == argv


def test_service_runs_once_in_the_workdir_and_the_timer_daily_at_the_time(tmp_path: Path) -> None:
    service = render_service(spec(tmp_path, at="7:05"), echo_argv("x"))
    timer = render_timer(spec(tmp_path, at="7:05"))
    for text in (service, timer):
        assert text.startswith(f"{MARKER}fleetprof-nightly\n")
    assert "Type=oneshot\n" in service
    assert f"WorkingDirectory={tmp_path}\n" in service
    assert "Environment=NO_COLOR=1\n" in service
    assert "TimeoutStartSec=2h\n" in service
    assert "OnCalendar=*-*-* 07:05:00\n" in timer
    assert "Persistent=true\n" in timer
    assert "RandomizedDelaySec=0\n" in timer
    assert "[Install]\nWantedBy=timers.target\n" in timer


def test_install_writes_0644_units_and_says_how_to_enable_them(tmp_path: Path) -> None:
    unit_dir = tmp_path / "units"
    result = install(spec(tmp_path), echo_argv(), unit_dir=unit_dir, activate=False)
    assert result.kind == "systemd"
    assert not result.activated
    assert result.paths == [
        unit_dir / "fleetprof-nightly.service",
        unit_dir / "fleetprof-nightly.timer",
    ]
    for path in result.paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(os.listdir(unit_dir)) == ["fleetprof-nightly.service", "fleetprof-nightly.timer"]
    assert any(
        "enable --now" in hint and "fleetprof-nightly.timer" in hint for hint in result.hints
    )


def test_reinstall_replaces_the_units_and_list_shows_the_new_time(tmp_path: Path) -> None:
    unit_dir = tmp_path / "units"
    install(spec(tmp_path, at="02:00"), echo_argv("old"), unit_dir=unit_dir, activate=False)
    install(spec(tmp_path, at="03:30"), echo_argv("new"), unit_dir=unit_dir, activate=False)
    [found] = list_schedules(unit_dir=unit_dir)
    assert (found.at, found.command) == ("03:30", echo_argv("new"))


def test_a_foreign_unit_of_the_same_name_is_left_alone(tmp_path: Path) -> None:
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    foreign = unit_dir / "fleetprof-nightly.service"
    foreign.write_text("[Service]\nExecStart=/bin/true\n")
    with pytest.raises(ScheduleError, match="not fleetprof schedule"):
        install(spec(tmp_path), echo_argv(), unit_dir=unit_dir, activate=False)
    assert foreign.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert not (unit_dir / "fleetprof-nightly.timer").exists()
    assert list_schedules(unit_dir=unit_dir) == []


def test_remove_deletes_only_that_schedules_units(tmp_path: Path) -> None:
    unit_dir = tmp_path / "units"
    install(spec(tmp_path, name="a"), echo_argv(), unit_dir=unit_dir, activate=False)
    install(spec(tmp_path, name="b"), echo_argv(), unit_dir=unit_dir, activate=False)
    removed = remove("a", unit_dir=unit_dir, activate=False)
    assert sorted(removed) == [unit_dir / "a.service", unit_dir / "a.timer"]
    assert [entry.name for entry in list_schedules(unit_dir=unit_dir)] == ["b"]
    with pytest.raises(ScheduleError, match="'a'"):
        remove("a", unit_dir=unit_dir, activate=False)


# --- cron ----------------------------------------------------------------------------------


@pytest.mark.parametrize("system", [False, True])
def test_cron_line_through_cron_and_sh_runs_the_exact_argv(tmp_path: Path, system: bool) -> None:
    line = render_cron(spec(tmp_path), echo_argv(*NASTY), system=system)
    assert line.startswith("0 2 * * * root cd " if system else "0 2 * * * cd ")
    assert line.endswith(f" {MARKER}fleetprof-nightly")
    argv, cwd = run_cron_line(line, system=system)
    assert argv == NASTY
    assert cwd == str(tmp_path)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(ARGUMENT, max_size=5))
def test_cron_quoting_round_trips_any_text_through_sh(tmp_path: Path, args: list[str]) -> None:
    argv, _ = run_cron_line(
        render_cron(spec(tmp_path), echo_argv(*args), system=False), system=False
    )
    assert argv == args


@pytest.mark.parametrize("arg", ["%", "a%b", "a\\%b", "\\\\%", "%\\", "100%%"])
def test_cron_percent_is_always_escaped_and_never_after_a_backslash(arg: str) -> None:
    word = cron_quote(arg)
    assert word.count("\\%") == arg.count("%")
    assert "\\\\%" not in word


def test_cron_line_reads_back(tmp_path: Path) -> None:
    argv = echo_argv(*NASTY)
    for system in (False, True):
        found = parse_cron_line(render_cron(spec(tmp_path, at="23:59"), argv, system=system))
        assert found == Installed("fleetprof-nightly", "cron", "23:59", argv, [], tmp_path)
    assert parse_cron_line("0 2 * * * /usr/bin/backup") is None
    assert parse_cron_line("# a comment") is None


def test_install_replaces_its_line_and_keeps_everything_else(tmp_path: Path) -> None:
    crontab = tmp_path / "crontab"
    other = render_cron(spec(tmp_path, name="other", at="04:00"), echo_argv("o"), system=False)
    before = [
        "MAILTO=ops@example.com",
        "",
        "# m h dom mon dow command",
        "15 3 * * * /usr/bin/backup",
        other,
    ]
    crontab.write_text("\n".join(before) + "\n")

    result = install(spec(tmp_path, at="01:00"), echo_argv("first"), cron_file=crontab)
    assert (result.kind, result.paths) == ("cron", [crontab])
    install(spec(tmp_path, at="05:45"), echo_argv("second"), cron_file=crontab)

    lines = cron_lines(crontab)
    assert lines[:5] == before
    assert len(lines) == 6
    assert lines[5] == render_cron(spec(tmp_path, at="05:45"), echo_argv("second"), system=False)
    assert stat.S_IMODE(crontab.stat().st_mode) == 0o644
    assert [(e.name, e.at, e.command) for e in list_schedules(cron_file=crontab)] == [
        ("fleetprof-nightly", "05:45", echo_argv("second")),
        ("other", "04:00", echo_argv("o")),
    ]


def test_remove_drops_only_its_cron_line(tmp_path: Path) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_text("15 3 * * * /usr/bin/backup\n")
    install(spec(tmp_path), echo_argv(), cron_file=crontab)
    install(spec(tmp_path, name="other"), echo_argv(), cron_file=crontab)
    assert remove("fleetprof-nightly", cron_file=crontab) == [crontab]
    assert cron_lines(crontab)[0] == "15 3 * * * /usr/bin/backup"
    assert [entry.name for entry in list_schedules(cron_file=crontab)] == ["other"]
    with pytest.raises(ScheduleError, match="fleetprof-nightly"):
        remove("fleetprof-nightly", cron_file=crontab)


def test_a_line_edited_to_another_schedule_is_still_listed_and_removed(tmp_path: Path) -> None:
    crontab = tmp_path / "crontab"
    line = render_cron(spec(tmp_path), echo_argv("x"), system=False)
    crontab.write_text(line.replace("0 2 * * * ", "30\t1  * * 1-5 ", 1) + "\n")
    [found] = list_schedules(cron_file=crontab)
    assert (found.at, found.command) == ("30 1 * * 1-5", echo_argv("x"))
    remove("fleetprof-nightly", cron_file=crontab)
    assert crontab.read_text() == ""


def test_a_too_long_cron_command_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match="characters"):
        render_cron(spec(tmp_path), echo_argv("x" * 1000), system=False)


@pytest.fixture
def no_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine without systemd, as root, whose /etc/cron.d is a temporary directory."""
    monkeypatch.setattr(schedule.machine, "SYSTEMD_RUNTIME", tmp_path / "no-systemd")
    monkeypatch.setattr(schedule.machine, "CRON_D", tmp_path / "cron.d")
    monkeypatch.setattr(schedule.machine, "default_unit_dir", lambda user: tmp_path / "no-units")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    (tmp_path / "cron.d").mkdir()
    (tmp_path / "cron.d" / "e2scrub_all").write_text("30 3 * * 0 root /sbin/e2scrub_all\n")
    return tmp_path / "cron.d"


def test_without_systemd_root_gets_a_cron_d_file(tmp_path: Path, no_systemd: Path) -> None:
    result = install(spec(tmp_path, name="fleetprof-v1.2"), echo_argv(*NASTY))
    # Debian's cron ignores /etc/cron.d files with a dot in their name.
    assert result.paths == [no_systemd / "fleetprof-v1_2"]
    [line] = cron_lines(result.paths[0])
    assert line.startswith("0 2 * * * root cd ")
    assert run_cron_line(line, system=True)[0] == NASTY
    [found] = list_schedules()
    assert (found.name, found.kind, found.paths) == ("fleetprof-v1.2", "cron", result.paths)
    assert remove("fleetprof-v1.2") == result.paths
    assert sorted(os.listdir(no_systemd)) == ["e2scrub_all"]


def test_without_systemd_or_crontab_a_user_is_told_what_to_install(
    tmp_path: Path, no_systemd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(ScheduleError, match="install cron"):
        install(spec(tmp_path), echo_argv())


FAKE_CRONTAB = """
import os, sys
# crontab(1)'s interface: -l prints the table (or fails with "no crontab for"), - replaces it.
table = os.path.join(os.path.dirname(sys.argv[0]), "..", "table")
if sys.argv[1:] == ["-l"]:
    if not os.path.exists(table):
        sys.exit("no crontab for tester")
    sys.stdout.write(open(table).read())
elif sys.argv[1:] == ["-"]:
    open(table, "w").write(sys.stdin.read())
else:
    sys.exit(2)
"""


def test_a_user_without_systemd_gets_a_line_in_their_crontab(
    tmp_path: Path, no_systemd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    crontab = tmp_path / "bin" / "crontab"
    crontab.write_text(f"#!{sys.executable}{FAKE_CRONTAB}")
    crontab.chmod(0o755)
    install(spec(tmp_path), echo_argv("first"))
    install(spec(tmp_path, name="other"), echo_argv("other"))
    install(spec(tmp_path, at="03:00"), echo_argv("second"))
    assert [(e.name, e.at, e.command) for e in list_schedules()] == [
        ("fleetprof-nightly", "03:00", echo_argv("second")),
        ("other", "02:00", echo_argv("other")),
    ]
    remove("other")
    assert [e.name for e in list_schedules()] == ["fleetprof-nightly"]


def test_an_unwritable_unit_directory_is_a_schedule_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ScheduleError, match="cannot write"):
        install(spec(tmp_path), echo_argv(), unit_dir=tmp_path / "file" / "units", activate=False)


# --- the spec and the command --------------------------------------------------------------


def test_spec_takes_its_name_from_the_campaign_and_makes_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "n.yml").write_text(
        "name: nightly-variability\nduration: 3s\ntarget: {probe: [cpu]}\n"
    )
    (tmp_path / "hosts.yml").write_text("all: {hosts: {a: {}}}\n")
    monkeypatch.chdir(tmp_path)
    made = ScheduleSpec(
        campaign=Path("campaigns/n.yml"),
        inventory="hosts.yml",
        out_root=Path("reports"),
        at="2:00",
        extra=("--junit", "/x/y.xml"),
        workdir=Path("."),
    )
    assert made.name == "fleetprof-nightly-variability"
    assert made.at == "02:00"
    assert check_argv(made, Path("/opt/fleetprof/bin/fleetprof")) == [
        "/opt/fleetprof/bin/fleetprof",
        "check",
        str(tmp_path / "campaigns" / "n.yml"),
        "-i",
        str(tmp_path / "hosts.yml"),
        "-o",
        str(tmp_path / "reports"),
        "--junit",
        "/x/y.xml",
    ]
    assert made.workdir == tmp_path
    # A host list is not a path: it is passed on as written.
    assert (
        ScheduleSpec(campaign=Path("campaigns/n.yml"), inventory="a,b,", at="1:00").inventory
        == "a,b,"
    )


def test_a_campaign_that_does_not_load_is_a_schedule_error(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match=r"missing\.yml"):
        ScheduleSpec(campaign=tmp_path / "missing.yml", at="02:00")


@pytest.mark.parametrize("at", ["24:00", "12:60", "noon", "1200", "-1:00", "2:5", ""])
def test_a_bad_time_is_refused(tmp_path: Path, at: str) -> None:
    with pytest.raises(ScheduleError, match="HH:MM"):
        spec(tmp_path, at=at)


@pytest.mark.parametrize("name", [".hidden", "-x", "a/b", "a b", "nightly\n", "ü", "x" * 201])
def test_a_bad_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ScheduleError, match="schedule name"):
        spec(tmp_path, name=name)


@pytest.mark.parametrize("arg", ["two\nlines", "carriage\rreturn"])
def test_an_argument_with_a_line_break_is_refused_and_nothing_written(
    tmp_path: Path, arg: str
) -> None:
    with pytest.raises(ScheduleError, match="argument"):
        install(spec(tmp_path), echo_argv(arg), unit_dir=tmp_path / "units", activate=False)
    with pytest.raises(ScheduleError, match="argument"):
        install(spec(tmp_path), echo_argv(arg), cron_file=tmp_path / "crontab")
    assert not (tmp_path / "units").exists()
    assert not (tmp_path / "crontab").exists()


@pytest.mark.parametrize(
    "exe", ["relative/fleetprof", "/opt/$HOME/fleetprof", "/opt/a'b/fleetprof"]
)
def test_an_executable_systemd_cannot_run_is_refused(tmp_path: Path, exe: str) -> None:
    with pytest.raises(ScheduleError, match="executable"):
        render_service(spec(tmp_path), [exe, "check"])


def test_check_argv_needs_an_absolute_fleetprof(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match="absolute"):
        check_argv(spec(tmp_path), Path("fleetprof"))
