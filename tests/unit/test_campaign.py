"""Campaign files: what loads, what it means, and what a user sees when a file is wrong."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pydantic
import pytest

from orchestrator.campaign.loader import load_campaign
from orchestrator.campaign.messages import CampaignError
from orchestrator.campaign.model import AttachSpec, Campaign, LaunchSpec, StartSpec, TargetSpec
from orchestrator.campaign.profiler_specs import PySpySpec
from orchestrator.campaign.validators import parse_duration
from tests.support.paths import REPO

MINIMAL = """\
name: t
duration: 30s
target:
  attach:
    process: worker
"""


def write(tmp_path: Path, text: str | bytes, name: str = "c.yml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    return str(info.value)


def error_for(tmp_path: Path, text: str | bytes) -> tuple[Path, str]:
    path = write(tmp_path, text)
    return path, load_error(path)


# --- what loads ----------------------------------------------------------------------------


def test_minimal_attach_campaign_gets_the_documented_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    campaign = load_campaign(path)

    assert campaign.name == "t"
    assert campaign.hosts == "all"
    assert campaign.duration_s == 30.0
    assert campaign.start.lead_s == 5.0
    assert campaign.target.mode == "attach"
    assert campaign.target.attach == AttachSpec(process="worker")
    assert campaign.target.launch is None
    assert campaign.profilers.py_spy == PySpySpec()
    assert campaign.profilers.py_spy is not None
    assert campaign.profilers.py_spy.rate == 97
    assert not campaign.profilers.py_spy.nonblocking
    assert campaign.source == path


def test_full_launch_campaign(tmp_path: Path) -> None:
    campaign = load_campaign(
        write(
            tmp_path,
            """\
            name: Nightly_variability-2
            hosts: "jetson:&lab"
            duration: 1m30s
            start:
              lead: 500ms
            target:
              launch:
                command: ["python3", "/opt/app/main.py", "--fps", "30"]
                cwd: /opt/app
                env: {APP_MODE: bench, _X1: "1"}
            profilers:
              py-spy:
                rate: 19
                native: true
                idle: true
                gil: true
                subprocesses: true
                nonblocking: true
            """,
        )
    )
    assert campaign.name == "Nightly_variability-2"
    assert campaign.hosts == "jetson:&lab"
    assert campaign.duration_s == 90.0
    assert campaign.start == StartSpec(lead_s=0.5)
    assert campaign.target.mode == "launch"
    assert campaign.target.launch == LaunchSpec(
        command=["python3", "/opt/app/main.py", "--fps", "30"],
        cwd="/opt/app",
        env={"APP_MODE": "bench", "_X1": "1"},
    )
    assert campaign.profilers.py_spy == PySpySpec(
        rate=19, native=True, idle=True, gil=True, subprocesses=True, nonblocking=True
    )
    assert list(campaign.profilers.enabled) == ["py-spy"]


@pytest.mark.parametrize(
    ("attach", "expected"),
    [
        ("{pid: 4242}", AttachSpec(pid=4242)),
        ("{pidfile: /run/app.pid}", AttachSpec(pidfile="/run/app.pid")),
        (r"{process: 'python3? .*video_pipeline\.py'}", None),
        ("{process: worker, pid: null}", AttachSpec(process="worker")),
    ],
)
def test_each_way_to_attach(tmp_path: Path, attach: str, expected: AttachSpec | None) -> None:
    path = write(tmp_path, f"name: t\nduration: 5\ntarget: {{attach: {attach}}}\n")
    campaign = load_campaign(path)
    assert campaign.target.mode == "attach"
    if expected is not None:
        assert campaign.target.attach == expected


@pytest.mark.parametrize("pyspy", ["py-spy:", "py-spy: null", "py-spy: {}"])
def test_py_spy_without_settings_means_its_defaults(tmp_path: Path, pyspy: str) -> None:
    path = write(tmp_path, MINIMAL + f"profilers:\n  {pyspy}\n")
    assert load_campaign(path).profilers.py_spy == PySpySpec()


def test_empty_start_and_env_mean_their_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        name: t
        duration: 10
        start:
        target:
          launch:
            command: [app]
            env:
        """,
    )
    campaign = load_campaign(path)
    assert campaign.start.lead_s == 5.0
    assert campaign.target.launch is not None
    assert campaign.target.launch.env == {}
    assert campaign.target.launch.cwd is None


def test_lead_may_be_zero_and_limits_are_inclusive(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("30s", "24h") + "start: {lead: 0}\n")
    campaign = load_campaign(path)
    assert campaign.duration_s == 86400.0
    assert campaign.start.lead_s == 0.0
    path = write(tmp_path, MINIMAL + "start: {lead: 1h}\nprofilers: {py-spy: {rate: 1000}}\n")
    assert load_campaign(path).start.lead_s == 3600.0


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_campaign(path).name == "t"


def test_campaign_is_frozen(tmp_path: Path) -> None:
    campaign = load_campaign(write(tmp_path, MINIMAL))
    with pytest.raises(pydantic.ValidationError):
        campaign.name = "other"


def test_from_mapping_and_model_validate_build_campaigns_without_files() -> None:
    data = {"name": "plan-test", "duration": "2m", "target": {"attach": {"pid": 7}}}
    campaign = Campaign.from_mapping(data, source=Path("inline.yml"))
    assert campaign.duration_s == 120.0
    assert campaign.source == Path("inline.yml")
    assert Campaign.model_validate(data).model_dump() == campaign.model_dump()
    # Python code may use attribute names; the dump by alias is a valid campaign again.
    built = Campaign(
        name="py",
        duration_s=3.0,
        target=TargetSpec(attach=AttachSpec(pid=1)),
    )
    again = Campaign.from_mapping(built.model_dump(by_alias=True))
    assert again.model_dump() == built.model_dump()


def test_from_mapping_errors_are_campaign_errors_naming_the_source() -> None:
    with pytest.raises(CampaignError) as info:
        Campaign.from_mapping({"name": "x", "duration_s": 5}, source="inline")
    text = str(info.value)
    assert "inline: duration_s: unknown key (allowed: name, hosts, duration," in text
    assert "inline: duration: required key is missing" in text
    assert info.value.problems == text.splitlines()


@pytest.mark.parametrize("name", ["demo.yml", "attach-example.yml"])
def test_shipped_campaigns_load(name: str) -> None:
    campaign = load_campaign(REPO / "campaigns" / name)
    assert campaign.name == name.removesuffix(".yml")
    assert campaign.profilers.py_spy is not None
    assert campaign.profilers.py_spy.rate == 97


def test_demo_campaign_launches_the_sample_pipeline() -> None:
    campaign = load_campaign(REPO / "campaigns" / "demo.yml")
    assert campaign.duration_s == 20.0
    assert campaign.start.lead_s == 3.0
    assert campaign.target.launch is not None
    assert campaign.target.launch.command == ["python3", "examples/workloads/video_pipeline.py"]
    assert campaign.workload_directions == {"fps": "higher", "frame_ms": "lower"}
    assert (REPO / campaign.target.launch.command[1]).is_file()


def test_attach_example_attaches_by_process_regex() -> None:
    campaign = load_campaign(REPO / "campaigns" / "attach-example.yml")
    assert campaign.duration_s == 30.0
    assert campaign.target.attach is not None
    assert campaign.target.attach.process is not None
    assert re.search(campaign.target.attach.process, "python3 /opt/video_pipeline.py --out x")


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h30m", 5400.0),
        ("1h2m3s", 3723.0),
        ("2m 15.5s", 135.5),
        ("500ms", 0.5),
        ("1s500ms", 1.5),
        ("1.5h", 5400.0),
        ("45", 45.0),
        (" 7.25 ", 7.25),
        (45, 45.0),
        (0.5, 0.5),
        (0, 0.0),
    ],
)
def test_parse_duration(value: str | int | float, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["", "s", "30 sec", "1m1m", "30s1m", "1d", "-5s", "5S", "1e3", "abc", -1, float("inf"), True],
)
def test_parse_duration_rejects_with_a_clear_message(value: str | int | float) -> None:
    with pytest.raises(ValueError, match=r"expected a (finite )?duration"):
        parse_duration(value)


# --- what a user sees when a file is wrong --------------------------------------------------

# (case id, file text, "line:col: key.path" the message must contain, what it must say)
BAD_FILES: list[tuple[str, str, str, str]] = [
    (
        "unknown top-level key",
        MINIMAL + "hots: all\n",
        "6:1: hots",
        "unknown key (allowed: name, hosts, duration, start, target, profilers, compare, check, "
        "limits)",
    ),
    (
        "unknown key in start",
        MINIMAL + "start: {lead: 1s, delay: 2s}\n",
        "6:19: start.delay",
        "unknown key (allowed: lead)",
    ),
    (
        "unknown key in target",
        MINIMAL + "  atach: {pid: 1}\n",
        "6:3: target.atach",
        "unknown key (allowed: attach, launch, probe, repeats, network_peer)",
    ),
    (
        "unknown key in attach",
        MINIMAL + "    proces: x\n",
        "6:5: target.attach.proces",
        "unknown key (allowed: process, pid, pidfile)",
    ),
    (
        "unknown key in launch",
        "name: t\nduration: 1\ntarget:\n  launch:\n    command: [a]\n    shell: true\n",
        "6:5: target.launch.shell",
        "unknown key (allowed: command, cwd, env, metrics, sweep)",
    ),
    (
        "unknown key in py-spy",
        MINIMAL + "profilers:\n  py-spy:\n    rtae: 50\n",
        "8:5: profilers.py-spy.rtae",
        "unknown key (allowed: rate, native, idle, gil, subprocesses, nonblocking, source_lines)",
    ),
    (
        "unknown profiler",
        MINIMAL + "profilers:\n  perf: {}\n",
        "7:3: profilers.perf",
        "unknown profiler (available: py-spy, system, iotop, memory, nvidia-smi, tegrastats, "
        "nsys, ncu, cprofile, tracemalloc, memray, line-profiler, open-files, strace, "
        "prometheus, tcpdump)",
    ),
    (
        "rate as a string",
        MINIMAL + "profilers:\n  py-spy:\n    rate: '97'\n",
        "8:11: profilers.py-spy.rate",
        "expected an integer from 1 to 1000 (Hz), got a string ('97')",
    ),
    (
        "rate as a YAML boolean",
        MINIMAL + "profilers:\n  py-spy:\n    rate: yes\n",
        "8:11: profilers.py-spy.rate",
        "got a boolean (true)",
    ),
    (
        "rate as a float",
        MINIMAL + "profilers:\n  py-spy:\n    rate: 97.5\n",
        "8:11: profilers.py-spy.rate",
        "got a number (97.5)",
    ),
    (
        "rate zero",
        MINIMAL + "profilers:\n  py-spy:\n    rate: 0\n",
        "8:11: profilers.py-spy.rate",
        "expected an integer from 1 to 1000 (Hz), got 0",
    ),
    (
        "rate negative",
        MINIMAL + "profilers:\n  py-spy:\n    rate: -5\n",
        "8:11: profilers.py-spy.rate",
        "got -5",
    ),
    (
        "rate huge",
        MINIMAL + "profilers:\n  py-spy:\n    rate: 100000\n",
        "8:11: profilers.py-spy.rate",
        "got 100000",
    ),
    (
        "flag as a string",
        MINIMAL + "profilers:\n  py-spy:\n    gil: 'true'\n",
        "8:10: profilers.py-spy.gil",
        "expected true or false, got a string ('true')",
    ),
    (
        "list for a mapping",
        MINIMAL + "start: [3s]\n",
        "6:8: start",
        "expected a mapping, got a list",
    ),
    (
        "list for py-spy",
        MINIMAL + "profilers:\n  py-spy: [rate]\n",
        "7:11: profilers.py-spy",
        "expected a mapping, got a list",
    ),
    (
        "profilers as a list",
        MINIMAL + "profilers: [py-spy]\n",
        "6:12: profilers",
        "expected a mapping, got a list",
    ),
    (
        "no profiler",
        MINIMAL + "profilers: {}\n",
        "6:12: profilers",
        "enable at least one profiler (available: py-spy, system, iotop, memory, nvidia-smi, "
        "tegrastats, nsys, ncu, cprofile, tracemalloc, memray, line-profiler, open-files, "
        "strace, prometheus, tcpdump)",
    ),
    (
        "null profilers",
        MINIMAL + "profilers:\n",
        "profilers",
        "enable at least one profiler",
    ),
    (
        "name as a number",
        MINIMAL.replace("name: t", "name: 42"),
        "1:7: name",
        "got an integer (42)",
    ),
    (
        "name with a space",
        MINIMAL.replace("name: t", "name: my demo"),
        "1:7: name",
        "expected 1 to 64 letters, digits, '-' or '_' (the name is used in paths), got 'my demo'",
    ),
    (
        "name with a slash",
        MINIMAL.replace("name: t", "name: ../etc"),
        "1:7: name",
        "got '../etc'",
    ),
    (
        "name too long",
        MINIMAL.replace("name: t", "name: " + "a" * 65),
        "1:7: name",
        "expected 1 to 64 letters",
    ),
    (
        "empty host pattern",
        MINIMAL + "hosts: ''\n",
        "6:8: hosts",
        "expected an Ansible host pattern",
    ),
    (
        "host pattern as a list",
        MINIMAL + "hosts: [a, b]\n",
        "6:8: hosts",
        "got a list",
    ),
    (
        "unparseable duration",
        MINIMAL.replace("30s", "30 seconds"),
        "2:11: duration",
        "expected a duration like 30s, 2m, 1h, 1m30s, 500ms or a number of seconds, "
        "got '30 seconds'",
    ),
    (
        "zero duration",
        MINIMAL.replace("30s", "0s"),
        "2:11: duration",
        "expected a duration more than 0 and at most 24h, got 0s",
    ),
    (
        "negative duration",
        MINIMAL.replace("30s", "-5"),
        "2:11: duration",
        "expected a duration that is not negative, got -5",
    ),
    (
        "duration over a day",
        MINIMAL.replace("30s", "25h"),
        "2:11: duration",
        "at most 24h, got 25h",
    ),
    (
        "duration as a boolean",
        MINIMAL.replace("30s", "true"),
        "2:11: duration",
        "got a boolean (true)",
    ),
    (
        "duration as a list",
        MINIMAL.replace("30s", "[30s]"),
        "2:11: duration",
        "got a list",
    ),
    (
        "lead over an hour",
        MINIMAL + "start: {lead: 2h}\n",
        "6:15: start.lead",
        "expected a duration 0 or more and at most 1h, got 2h",
    ),
    (
        "negative lead",
        MINIMAL + "start: {lead: -1}\n",
        "6:15: start.lead",
        "not negative, got -1",
    ),
    (
        "empty target",
        "name: t\nduration: 1\ntarget: {}\n",
        "3:9: target",
        "expected exactly one of attach or launch",
    ),
    (
        "attach and launch",
        MINIMAL + "  launch: {command: [app]}\n",
        "4:3: target",
        "expected exactly one of attach or launch (profile a running process or start one), "
        "got attach and launch",
    ),
    (
        "empty attach",
        "name: t\nduration: 1\ntarget:\n  attach:\n",
        "4:10: target.attach",
        "expected a mapping, got null",
    ),
    (
        "attach with nothing to find",
        "name: t\nduration: 1\ntarget:\n  attach: {}\n",
        "4:11: target.attach",
        "expected exactly one of process, pid or pidfile to find the process, got none",
    ),
    (
        "attach two ways",
        MINIMAL + "    pid: 12\n",
        "5:5: target.attach",
        "expected exactly one of process, pid or pidfile to find the process, got process and pid",
    ),
    (
        "attach three ways",
        MINIMAL + "    pid: 12\n    pidfile: /run/x.pid\n",
        "5:5: target.attach",
        "got process and pid and pidfile",
    ),
    (
        "invalid regex",
        MINIMAL.replace("process: worker", "process: 'worker('"),
        "5:14: target.attach.process",
        "expected a valid Python regular expression, got 'worker(': missing ), "
        "unterminated subpattern",
    ),
    (
        "empty regex",
        MINIMAL.replace("process: worker", "process: ''"),
        "5:14: target.attach.process",
        "expected a non-empty regular expression",
    ),
    (
        "negative pid",
        "name: t\nduration: 1\ntarget:\n  attach:\n    pid: -1\n",
        "5:10: target.attach.pid",
        "expected a positive integer, got -1",
    ),
    (
        "zero pid",
        "name: t\nduration: 1\ntarget:\n  attach:\n    pid: 0\n",
        "5:10: target.attach.pid",
        "expected a positive integer, got 0",
    ),
    (
        "pid as a string",
        "name: t\nduration: 1\ntarget:\n  attach:\n    pid: '123'\n",
        "5:10: target.attach.pid",
        "expected a positive integer, got a string ('123')",
    ),
    (
        "relative pidfile",
        "name: t\nduration: 1\ntarget:\n  attach:\n    pidfile: run/app.pid\n",
        "5:14: target.attach.pidfile",
        "expected an absolute path (starting with /), got 'run/app.pid'",
    ),
    (
        "string command",
        "name: t\nduration: 1\ntarget:\n  launch:\n    command: python3 app.py --x 'a b'\n",
        "5:14: target.launch.command",
        "expected a list of arguments (argv), not a string: commands are never run through "
        'a shell; write it as command: ["python3", "app.py", "--x", "a b"]',
    ),
    (
        "empty command",
        "name: t\nduration: 1\ntarget:\n  launch:\n    command: []\n",
        "5:14: target.launch.command",
        "expected a non-empty list of arguments (argv), got an empty list",
    ),
    (
        "empty argument",
        "name: t\nduration: 1\ntarget:\n  launch:\n    command: [app, '']\n",
        "5:20: target.launch.command[1]",
        "expected a non-empty string, got an empty string",
    ),
    (
        "number argument",
        "name: t\nduration: 1\ntarget:\n  launch:\n    command: [app, 8080]\n",
        "5:20: target.launch.command[1]",
        'expected a string, got an integer (8080) (quote it: "8080")',
    ),
    (
        "missing command",
        "name: t\nduration: 1\ntarget:\n  launch:\n    cwd: /srv\n",
        "5:5: target.launch.command",
        "required key is missing",
    ),
    (
        "relative cwd",
        "name: t\nduration: 1\ntarget:\n  launch:\n    command: [app]\n    cwd: srv\n",
        "6:10: target.launch.cwd",
        "expected an absolute path (starting with /), got 'srv'",
    ),
    (
        "bad env name",
        "name: t\nduration: 1\ntarget:\n  launch:\n    command: [app]\n    env: {1X: a}\n",
        "6:11: target.launch.env.1X",
        "expected an environment variable name",
    ),
    (
        "env value not a string",
        "name: t\nduration: 1\ntarget:\n  launch:\n    command: [app]\n    env: {PORT: 80}\n",
        "6:17: target.launch.env.PORT",
        'expected a string, got an integer (80) (quote it: "80")',
    ),
    (
        "env as a list",
        "name: t\nduration: 1\ntarget:\n  launch:\n    command: [app]\n    env: [A=1]\n",
        "6:10: target.launch.env",
        "expected a mapping, got a list",
    ),
    (
        "target as a string",
        "name: t\nduration: 1\ntarget: attach\n",
        "3:9: target",
        "expected a mapping, got a string ('attach')",
    ),
    (
        "duplicate key",
        MINIMAL + "name: u\n",
        "6:1: name",
        "duplicate key (first given at line 1)",
    ),
]


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [case[1:] for case in BAD_FILES],
    ids=[case[0] for case in BAD_FILES],
)
def test_bad_file_names_file_position_key_and_expectation(
    tmp_path: Path, text: str, where: str, says: str
) -> None:
    path, message = error_for(tmp_path, text)
    line = next((ln for ln in message.splitlines() if says in ln), None)
    assert line is not None, message
    if ":" in where.split(" ")[0]:
        position, key = where.split(" ", 1)
        assert line.startswith(f"{path}:{position} {key}: "), message
    else:
        assert line.startswith(f"{path}"), message
        assert f" {where}: " in line, message
    assert_plain(message)


def assert_plain(message: str) -> None:
    """No traceback and no pydantic wording reaches the user."""
    for leak in ("Input should", "errors.pydantic.dev", "Traceback", "validation error for"):
        assert leak not in message


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ("duration: 1\ntarget: {attach: {pid: 1}}\n", "name", "the campaign name"),
        ("name: t\ntarget: {attach: {pid: 1}}\n", "duration", "e.g. duration: 30s"),
        ("name: t\nduration: 1\n", "target", "target: {attach: {process: REGEX}} or"),
    ],
)
def test_missing_required_keys(tmp_path: Path, text: str, key: str, hint: str) -> None:
    path, message = error_for(tmp_path, text)
    assert f"{path}: {key}: required key is missing: " in message
    assert hint in message
    assert_plain(message)


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    path, message = error_for(
        tmp_path,
        """\
        name: bad name
        duration: forever
        target:
          attach:
            pid: -3
        profilers:
          py-spy:
            rate: 0
        """,
    )
    lines = message.splitlines()
    assert [line.split(": ")[0] for line in lines] == [
        f"{path}:1:7",
        f"{path}:2:11",
        f"{path}:5:10",
        f"{path}:8:11",
    ]
    assert [line.split(": ")[1] for line in lines] == [
        "name",
        "duration",
        "target.attach.pid",
        "profilers.py-spy.rate",
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("- name: t\n", "got a list"),
        ("just a string\n", "got a string ('just a string')"),
        ("42\n", "got an integer (42)"),
        ("null\n", "got null"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, says: str) -> None:
    path, message = error_for(tmp_path, text)
    assert message == (
        f"{path}:1:1: expected a mapping of campaign keys (name, duration, target, ...) "
        f"at the top level, {says}"
    )


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path, message = error_for(tmp_path, text)
    assert message == (
        f"{path}: the file is empty; a campaign needs at least name, duration and target"
    )


def test_missing_file_names_file_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "nope.yml"
    assert load_error(path) == f"{path}: cannot read the campaign file: No such file or directory"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert load_error(tmp_path) == f"{tmp_path}: cannot read the campaign file: Is a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
def test_unreadable_file_names_file_and_reason(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    path.chmod(0)
    try:
        assert load_error(path) == f"{path}: cannot read the campaign file: Permission denied"
    finally:
        path.chmod(0o644)


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path, message = error_for(tmp_path, "name: t\nduration: 30s\ntarget: {attach: {pid: 1}\n")
    assert message.startswith(f"{path}:4:1: invalid YAML: ")
    assert "expected ',' or '}'" in message
    path, message = error_for(tmp_path, "name: t\n\tduration: 30s\n")
    assert message.startswith(f"{path}:2:1: invalid YAML: found character '\\t'")


def test_two_yaml_documents_are_an_error(tmp_path: Path) -> None:
    path, message = error_for(tmp_path, MINIMAL + "---\n" + MINIMAL)
    assert message.startswith(f"{path}:6:1: invalid YAML: ")
    assert "expected a single document" in message


def test_non_utf8_bytes_give_line_and_column(tmp_path: Path) -> None:
    path, message = error_for(tmp_path, b"name: t\nduration: 3\xff0s\n")
    assert message == f"{path}:2:12: not valid UTF-8 (byte 0xff); save the file as UTF-8"


def test_control_characters_give_line_and_column(tmp_path: Path) -> None:
    path, message = error_for(tmp_path, "name: t\x07\n")
    assert message == f"{path}:1:8: invalid YAML: character 0x0007 is not allowed in YAML"


def test_source_is_not_a_key_of_the_file(tmp_path: Path) -> None:
    path, message = error_for(tmp_path, MINIMAL + "source: /etc/passwd\n")
    assert f"{path}:6:1: source: unknown key" in message


def test_attribute_names_are_not_file_keys(tmp_path: Path) -> None:
    text = MINIMAL.replace("duration:", "duration_s:")
    path, message = error_for(tmp_path, text)
    assert f"{path}:2:1: duration_s: unknown key" in message


def test_recursive_alias_is_an_error_not_a_hang(tmp_path: Path) -> None:
    path, message = error_for(tmp_path, MINIMAL + "hosts: &h [*h]\n")
    assert f"{path}:6:8: hosts: " in message
    assert_plain(message)
