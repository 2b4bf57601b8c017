"""The command line for scripts and shells: --version, shell completion, --json, NO_COLOR.

Completion is exercised in real shells with the venv's real `fleetprof` on PATH; colour on
a real pseudo-terminal, where it would otherwise be on.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator.report.result import baseline_document, result_document, schedule_document
from tests.support.cli import (
    ESC,
    FLEETPROF,
    clean_env,
    run_on_tty,
)
from tests.support.paths import REPO

FIXTURES = REPO / "tests" / "fixtures"
CAMPAIGN = REPO / "campaigns" / "nightly-variability.yml"

pytestmark = pytest.mark.skipif(not FLEETPROF.is_file(), reason="fleetprof is not installed")


def fleetprof(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLEETPROF), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=clean_env(**env),
        check=False,
    )


# -- --version ---------------------------------------------------------------------------


def test_version_prints_the_name_and_the_pyproject_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    done = fleetprof("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"fleetprof {version}\n"


# -- shell completion -----------------------------------------------------------------------

BASH_DRIVER = r"""
source "$1"
complete -p fleetprof
complete_line() {  # what bash does on TAB: the words so far, the one under the cursor
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=()
    "$FUNC" fleetprof "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    echo "$*|${COMPREPLY[*]}"
}
complete_line fleetprof ch
complete_line fleetprof schedule ''
complete_line fleetprof baseline ''
complete_line fleetprof run --j
complete_line fleetprof completion ''
"""


def completion_script(tmp_path: Path, shell: str) -> Path:
    done = fleetprof("completion", shell)
    assert done.returncode == 0, done.stderr
    path = tmp_path / f"fleetprof.{shell}"
    path.write_text(done.stdout)
    return path


def test_bash_completion_completes_commands_subcommands_and_options(tmp_path: Path) -> None:
    script = completion_script(tmp_path, "bash")
    # The function the script registers for fleetprof, read from the script itself.
    func = re.search(r"complete -o nosort -F (\S+) fleetprof", script.read_text())
    assert func is not None
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", BASH_DRIVER, "driver", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(FUNC=func.group(1)),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"complete -o nosort -F {func.group(1)} fleetprof"
    replies = dict(line.split("|", 1) for line in lines[1:])
    assert replies["fleetprof ch"] == "check"
    assert replies["fleetprof schedule "].split() == ["install", "list", "remove"]
    assert replies["fleetprof baseline "] == "set"
    assert replies["fleetprof run --j"] == "--json"
    assert replies["fleetprof completion "].split() == ["bash", "zsh", "fish"]


class InteractiveBash:
    """An interactive bash with readline on a pseudo-terminal: TAB as a person presses it."""

    PROMPT = b"READY> "

    def __init__(self, cwd: Path, env: Mapping[str, str]) -> None:
        self.line = b""
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the shell
            os.chdir(cwd)
            os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], dict(env))
        self.read_until(self.PROMPT)

    def read_until(self, token: bytes, timeout: float = 20) -> None:
        """Wait until the current line (all the terminal showed since it was cleared)
        holds ``token``."""
        deadline = time.monotonic() + timeout
        while token not in self.line and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    self.line += os.read(self.fd, 4096)
                except OSError:
                    break
        if token not in self.line:
            raise AssertionError(f"{token!r} never came; the terminal showed {self.line!r}")

    def type(self, text: str) -> None:
        if text.startswith(("\x15", "\n")) or text.endswith("\n"):
            self.line = b""  # a new line (Ctrl-U clears what was typed)
        os.write(self.fd, text.encode())

    def close(self) -> None:
        self.type("\x15exit\n")  # Ctrl-U clears what was typed
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_bash_completion_completes_campaign_files_and_run_directories_in_readline(
    tmp_path: Path,
) -> None:
    script = completion_script(tmp_path, "bash")
    work = tmp_path / "work"
    (work / "runs-2026").mkdir(parents=True)
    (work / "nightly-fleet.yml").write_text("name: x\n")
    env = clean_env(PS1=InteractiveBash.PROMPT.decode(), INPUTRC="/dev/null", HOME=str(work))
    shell = InteractiveBash(work, env)
    try:
        shell.type(f"source {script}\n")
        shell.read_until(InteractiveBash.PROMPT)
        # Only the typed prefix went in: the rest of each name is the completion's.
        shell.type("fleetprof ch\t")
        shell.read_until(b"fleetprof check ")
        shell.type("nig\t")
        shell.read_until(b"fleetprof check nightly-fleet.yml ")
        shell.type("\x15fleetprof run nig\t")
        shell.read_until(b"fleetprof run nightly-fleet.yml ")
        shell.type("\x15fleetprof report ru\t")  # RUN_DIR: directories only
        shell.read_until(b"fleetprof report runs-2026/")
        shell.type("\x15fleetprof schedule install nig\t")
        shell.read_until(b"fleetprof schedule install nightly-fleet.yml ")
    finally:
        shell.close()


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completion_completes_commands_and_campaign_files(tmp_path: Path) -> None:
    script = completion_script(tmp_path, "fish")
    (tmp_path / "nightly-fleet.yml").write_text("name: x\n")
    probe = (
        f"source {script}; "
        "complete -C 'fleetprof ch'; echo ---; "
        "complete -C 'fleetprof schedule '; echo ---; "
        "complete -C 'fleetprof run nig'"
    )
    done = subprocess.run(
        ["fish", "--no-config", "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean_env(HOME=str(tmp_path)),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    check, schedule, files = (
        [line.split("\t")[0] for line in part.strip().splitlines()]
        for part in done.stdout.split("---")
    )
    assert check == ["check"]
    assert sorted(schedule) == ["install", "list", "remove"]
    assert files == ["nightly-fleet.yml"]


def test_zsh_completion_script_registers_for_fleetprof(tmp_path: Path) -> None:
    script = completion_script(tmp_path, "zsh")
    text = script.read_text()
    assert text.startswith("#compdef fleetprof")
    assert "_FLEETPROF_COMPLETE=zsh_complete fleetprof" in text
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed: only the script's text was checked")
    probe = (
        f"autoload -U compinit && compinit -u -D && source {script} "
        "&& print -r -- $_comps[fleetprof]"
    )
    done = subprocess.run(
        ["zsh", "-f", "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(HOME=str(tmp_path)),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    func = re.search(r"compdef (\S+) fleetprof", text)
    assert func is not None and done.stdout.strip() == func.group(1)


def test_completion_refuses_an_unknown_shell() -> None:
    done = fleetprof("completion", "tcsh")
    assert done.returncode == 2 and done.stdout == ""
    assert "tcsh" in done.stderr and "Traceback" not in done.stderr


# -- --json -----------------------------------------------------------------------------------


def test_schedule_install_and_remove_print_one_json_document_each(tmp_path: Path) -> None:
    crontab = tmp_path / "crontab"
    installed = fleetprof(
        "schedule", "install", str(CAMPAIGN), "--at", "3:30", "--cron-file", str(crontab), "--json"
    )
    assert installed.returncode == 0, installed.stderr
    doc = json.loads(installed.stdout)
    assert doc["schema"] == "fleetprof.schedule/1" and doc["action"] == "installed"
    assert (doc["name"], doc["kind"], doc["at"]) == (
        "fleetprof-nightly-variability",
        "cron",
        "03:30",
    )
    assert doc["paths"] == [str(crontab)]
    assert doc["command"][1:3] == ["check", str(CAMPAIGN)]
    assert crontab.read_text().startswith("30 3 * * * ")
    assert "cron schedule at 03:30" in installed.stderr  # the words went to stderr
    removed = fleetprof("schedule", "remove", doc["name"], "--cron-file", str(crontab), "--json")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout) == schedule_document("removed", doc["name"], paths=[crontab])
    assert crontab.read_text().strip() == ""


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("run", "{tmp}/missing.yml", "--json"), "missing.yml"),
        (("check", "{tmp}/missing.yml", "--json"), "missing.yml"),
        (("demo", "-o", "{tmp}/file", "--json"), "file"),
        (("report", "{tmp}", "--json"), "no run.json"),
        (("collect", "{tmp}", "--json"), "no run.json"),
        (("baseline", "set", "{tmp}", "--json"), "report.json"),
        (("schedule", "remove", "nothing-here", "--cron-file", "{tmp}/crontab", "--json"), ""),
    ],
)
def test_bad_input_with_json_exits_2_with_the_message_on_stderr_and_nothing_on_stdout(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    (tmp_path / "file").write_text("not a folder\n")
    done = fleetprof(*(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert "rror" in done.stderr and named in done.stderr
    assert "Traceback" not in done.stderr


CHECKED_REPORT: dict[str, Any] = {
    "schema": "fleetprof.report/1",
    "campaign": "nightly",
    "run_id": "20261125-010203-abcd",
    "summary": {
        "hosts": 2,
        "ok": 1,
        "partial": 0,
        "failed": 1,
        "unreachable": 0,
        "skipped": 0,
        "busy": 0,
    },
    "hosts": [
        {"name": "a-1", "hw_model": "a", "status": "ok", "reason": None, "metrics": {"x": 1}},
        {"name": "a-2", "hw_model": "a", "status": "failed", "reason": "session: boom"},
    ],
    "check": {
        "verdict": "findings",
        "exit_code": 1,
        "baseline": {"run_id": "20261124-010203-dcba", "source": "pinned", "path": "/r"},
        "tests": 4,
        "confirm": {"enabled": True, "run_id": "20261125-010500-eeee", "hosts": ["a-2"]},
        "findings": [
            {"kind": "failed", "host": "a-2", "metric": None, "message": "boom", "confirmed": None}
        ],
        "unconfirmed": [
            {"kind": "outlier", "host": "a-1", "metric": "x", "message": "m", "confirmed": False}
        ],
    },
}


def test_the_result_document_selects_from_the_report_and_its_check() -> None:
    doc = result_document(CHECKED_REPORT, Path("/runs/nightly/r"), command="check", notes=["n"])
    assert doc["status"] == "incomplete"  # one host failed
    assert (
        doc["run_dir"] == "/runs/nightly/r" and doc["report_json"] == "/runs/nightly/r/report.json"
    )
    assert doc["hosts"][1] == {
        "name": "a-2",
        "hw_model": "a",
        "status": "failed",
        "reason": "session: boom",
    }
    assert doc["check"] == {
        "verdict": "findings",
        "exit_code": 1,
        "baseline": {"run_id": "20261124-010203-dcba", "source": "pinned"},
        "confirm_run_id": "20261125-010500-eeee",
        "tests": 4,
        "findings": [{"kind": "failed", "host": "a-2", "metric": None, "message": "boom"}],
        "unconfirmed": 1,
        "notes": ["n"],
    }
    plain = dict(CHECKED_REPORT, check=None, summary={**CHECKED_REPORT["summary"], "ok": 2})
    assert result_document(plain, Path("/r"), command="run")["status"] == "ok"
    assert result_document(plain, Path("/r"), command="run", interrupted=True)["status"] == (
        "interrupted"
    )
    assert result_document({}, Path("/r"), command="report")["status"] == "incomplete"


def documented_json(schema: str) -> dict[str, Any]:
    """The example of ``schema`` in docs/commands.md (a ```json block)."""
    text = (REPO / "docs" / "commands.md").read_text()
    for block in re.findall(r"```json\n(.*?)```", text, flags=re.S):
        data = json.loads(block)
        if isinstance(data, dict) and data.get("schema") == schema:
            return data
    raise AssertionError(f"docs/commands.md shows no {schema} document")


def keys(value: Any) -> Any:
    """The shape of a JSON value: its keys, nested, and the keys of a list's first object."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keys(value[0])] if value and isinstance(value[0], dict) else "list"
    return None


def test_the_documented_json_shapes_are_the_printed_ones() -> None:
    doc = result_document(CHECKED_REPORT, Path("/r"), command="check")
    assert keys(documented_json("fleetprof.result/1")) == keys(doc)
    assert keys(documented_json("fleetprof.baseline/1")) == keys(
        baseline_document("c", "r", Path("/r"), Path("/h"))
    )
    installed = schedule_document(
        "installed", "n", paths=[Path("/p")], kind="cron", at="03:00", command=["x"], hints=["h"]
    )
    assert keys(documented_json("fleetprof.schedule/1")) == keys(installed)


# -- NO_COLOR -----------------------------------------------------------------------------------

COLOURED = [
    ("inspect", "py-spy", str(FIXTURES / "py-spy" / "io-writer.folded.txt")),  # tables, stdout
    ("run", "no-such-campaign.yml"),  # the error line, stderr
]


@pytest.mark.parametrize("args", COLOURED)
def test_no_color_keeps_every_escape_sequence_off_a_terminal(args: tuple[str, ...]) -> None:
    command = [str(FLEETPROF), *args]
    code, _, coloured = run_on_tty(command, clean_env())
    assert ESC in coloured  # a terminal: colour would be on
    code_empty, _, empty = run_on_tty(command, clean_env(NO_COLOR=""))
    assert ESC in empty  # NO_COLOR set but empty does not count (no-color.org)
    code_plain, _, plain = run_on_tty(command, clean_env(NO_COLOR="1"))
    assert ESC not in plain, plain
    assert code == code_empty == code_plain
    strip = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
    assert strip.sub(b"", coloured).split() == plain.split()  # the same words, uncoloured
