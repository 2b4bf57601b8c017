"""Output that is not a terminal (a CI log, ``| tee``) is plain: whole lines, every table
cell whole, no box drawing, no escape sequences; a terminal keeps rich tables, and
``FLEETPROF_OUTPUT`` chooses either way (docs/commands.md)."""

from __future__ import annotations

import io
import re
import subprocess
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from orchestrator.check.store import SeriesPoint
from orchestrator.cli.live import PlainConsole, make_console, output_mode, plain_table
from orchestrator.report.history import history_table
from orchestrator.report.terminal import render_check, render_terminal
from tests.support.cli import ESC, FLEETPROF, clean_env, run_on_tty
from tests.support.paths import FIXTURES, REPO

BOX = re.compile("[\u2500-\u257f]")  # box drawing, the progress bar's included
REASON = " ".join(
    [
        "Task failed: Failed to connect to the host via ssh: ssh: connect to host",
        "127.0.0.199 port 2222: Connection refused;",
        *["and a device string that goes on well past eighty columns"] * 3,
    ]
)
HOST = "edge-camera-yard-north-gate-0042.site-berlin.example.internal"
SECOND_REASON = "[bold red]literal markup[/] from a device\x1b[2J and a control character"


def plain(render: Any, *args: Any) -> str:
    out = io.StringIO()
    render(*args, PlainConsole(file=out))
    return out.getvalue()


def assert_plain(text: str) -> None:
    assert not BOX.search(text), text
    assert "\x1b" not in text
    assert "\u2026" not in text  # nothing cut with an ellipsis
    for line in text.splitlines():
        assert line == line.rstrip(), repr(line)


def report() -> dict[str, Any]:
    return {
        "campaign": "nightly",
        "run_id": "20250301-020000-abcd",
        "duration_s": 12.5,
        "hosts": [
            {
                "name": HOST,
                "hw_model": "jetson-orin-nx-16gb-devkit-rev-b",
                "status": "unreachable",
                "reason": REASON,
                "metrics": {},
            },
            {
                "name": "edge-2",
                "hw_model": "rpi4",
                "status": "failed",
                "reason": SECOND_REASON,
                "metrics": {},
            },
            {
                "name": "edge-3",
                "hw_model": "rpi4",
                "status": "ok",
                "start_offset_ms": 12.25,
                "metrics": {
                    "pyspy.samples": 1940,
                    "pyspy.effective_rate_hz": 97.0,
                    "pyspy.requested_rate_hz": 97,
                },
                "top_functions": [
                    {
                        "function": "decode_frame_with_a_rather_long_function_name_"
                        "that_a_terminal_would_cut",
                        "self_pct": 41.5,
                    }
                ],
            },
        ],
        "summary": {"hosts": 3, "ok": 1, "failed": 1, "unreachable": 1},
        "outliers": [],
    }


# -- the pure parts ---------------------------------------------------------------------------


def test_a_plain_table_is_aligned_columns_with_every_cell_whole() -> None:
    table = Table(title="[bold]title[/] with markup")
    table.add_column("name", max_width=5, overflow="ellipsis")
    table.add_column("n", justify="right")
    table.add_column("what")
    table.add_row("a-name-longer-than-five", "7", "short")
    table.add_row("b", "1,234", "[red]rendered[/] markup")
    lines = plain_table(table).plain.splitlines()
    assert lines == [
        "title with markup",
        "name                         n  what",
        "a-name-longer-than-five      7  short",
        "b                        1,234  rendered markup",
    ]


def test_a_report_with_a_long_reason_prints_it_whole_on_one_line() -> None:
    text = plain(render_terminal, report())
    assert_plain(text)
    line = next(line for line in text.splitlines() if line.startswith(HOST))
    assert line.endswith(REASON)
    assert "jetson-orin-nx-16gb-devkit-rev-b" in line
    assert "decode_frame_with_a_rather_long_function_name_that_a_terminal_would_cut  41.5%" in text
    # Device strings stay literal: no markup applied, the control character escaped.
    assert "[bold red]literal markup[/] from a device\\x1b[2J and a control" in text
    assert "1 hosts: 1 ok" not in text and "3 hosts: 1 ok, 0 partial, 1 failed" in text


def test_check_findings_and_fingerprints_print_whole() -> None:
    message = "probe.cpu.single_ops_per_s 7.753e+05 against its baseline 2.851e+06 " * 2
    data = report()
    data["check"] = {
        "verdict": "findings",
        "baseline": {"run_id": "r0", "source": "pinned"},
        "tests": 8,
        "findings": [
            {
                "kind": "regression",
                "host": HOST,
                "metric": "probe.cpu.single_ops_per_s",
                "message": message,
            }
        ],
        "unconfirmed": [],
    }
    data["regressions"] = [
        {"host": HOST, "fingerprint": [{"key": "cpu_quota_cores", "value": 0.1, "peers": 0.4}] * 4}
    ]
    text = plain(render_check, data)
    assert_plain(text)
    assert any(line.rstrip().endswith(message.rstrip()) for line in text.splitlines())
    fingerprint = next(line for line in text.splitlines() if "differs from its peers" in line)
    assert fingerprint.count("cpu_quota_cores: 0.1 (peers: 0.4)") == 4


def test_the_history_table_prints_whole_with_its_trend() -> None:
    points = [
        SeriesPoint(
            f"r{i}",
            f"2025-03-0{i + 1}T02:00:00+00:00",
            "nightly",
            HOST,
            "probe.cpu.single_ops_per_s",
            1000.0 + i,
        )
        for i in range(3)
    ]
    out = io.StringIO()
    PlainConsole(file=out).print(history_table(points, title="history: /some/where"))
    text = out.getvalue()
    assert_plain(text)
    assert text.splitlines()[0] == "history: /some/where"
    assert f"{HOST}  probe.cpu.single_ops_per_s" in text
    assert text.rstrip().endswith("\u2581\u2585\u2588")  # the sparkline is data, kept


@pytest.mark.parametrize(
    ("value", "mode"),
    [(None, "auto"), ("", "auto"), ("plain", "plain"), (" Rich ", "rich"), ("fancy", "auto")],
)
def test_fleetprof_output_chooses_the_mode(value: str | None, mode: str) -> None:
    assert output_mode({} if value is None else {"FLEETPROF_OUTPUT": value}) == mode


def test_a_stream_that_is_not_a_terminal_gets_a_plain_console(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(make_console(environ={}), PlainConsole)  # pytest's captured stdout
    assert isinstance(make_console(stderr=True, environ={}), PlainConsole)
    rich = make_console(environ={"FLEETPROF_OUTPUT": "rich"})
    assert isinstance(rich, Console) and not isinstance(rich, PlainConsole)
    assert isinstance(
        make_console(environ={"FLEETPROF_OUTPUT": "plain", "NO_COLOR": "1"}), PlainConsole
    )


# -- the command line: piped, on a terminal, and as asked ---------------------------------

FOLDED = str(FIXTURES / "py-spy" / "io-writer.folded.txt")


def inspect(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLEETPROF), "inspect", "py-spy", FOLDED],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(**env),
        check=False,
    )


def test_inspect_piped_is_plain_and_on_a_terminal_has_its_tables() -> None:
    piped = inspect()
    assert piped.returncode == 0, piped.stderr
    assert_plain(piped.stdout)
    assert "top functions" in piped.stdout and "function" in piped.stdout
    code, _, tty = run_on_tty([str(FLEETPROF), "inspect", "py-spy", FOLDED], clean_env())
    assert code == 0
    assert BOX.search(tty.decode()) and ESC in tty
    # Plain on a terminal when asked: no box, no escape sequence.
    code, _, asked = run_on_tty(
        [str(FLEETPROF), "inspect", "py-spy", FOLDED], clean_env(FLEETPROF_OUTPUT="plain")
    )
    assert code == 0 and not BOX.search(asked.decode()) and ESC not in asked
    # The words are the same either way.
    words = re.compile(r"[A-Za-z_][A-Za-z_0-9.]{3,}")
    assert set(words.findall(piped.stdout)) <= set(
        words.findall(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", tty.decode()))
    ) | {"self", "total"}


def test_rich_output_into_a_pipe_when_asked_at_columns_wide() -> None:
    done = inspect(FLEETPROF_OUTPUT="rich", COLUMNS="44")
    assert done.returncode == 0, done.stderr
    assert BOX.search(done.stdout) and "\x1b" not in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 44
    assert max(len(line) for line in inspect().stdout.splitlines()) > 44  # plain: whole


def test_docs_name_the_setting() -> None:
    docs = (REPO / "docs" / "commands.md").read_text()
    assert "FLEETPROF_OUTPUT" in docs
