"""`--json` on real runs: `run`, then `report`, `collect` and `baseline set` on its run
directory, then `check` against it on a terminal with NO_COLOR. Two real campaigns on this
machine (inventory/localhost.yml) with a short window."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import ESC, FLEETPROF, clean_env, needs_ptrace, run_on_tty
from tests.support.paths import REPO

pytestmark = [
    pytest.mark.integration,
    needs_ptrace,
    pytest.mark.skipif(not FLEETPROF.is_file(), reason="fleetprof is not installed"),
]

WORKLOAD = """
import time

def spin():
    end = time.perf_counter() + 0.004
    while time.perf_counter() < end:
        pass

while True:
    spin()
    time.sleep(0.004)
"""


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One `fleetprof run --json` of a 1 s window on a process of its own."""
    work = tmp_path_factory.mktemp("cli-json")
    token = uuid.uuid4().hex
    script = work / "spin_workload.py"
    script.write_text(WORKLOAD)
    proc = subprocess.Popen([sys.executable, str(script), f"--token={token}"], cwd=work)
    campaign = work / "scripted.yml"
    campaign.write_text(
        "name: scripted\nduration: 1s\nstart: {lead: 4s}\n"
        f"target:\n  attach:\n    process: 'spin_workload.py --token={token}'\n"
        "check:\n  confirm: {enabled: false}\n"
    )
    time.sleep(0.3)
    try:
        done = subprocess.run(
            [str(FLEETPROF), "run", str(campaign), "-o", str(work / "out"), "--json"],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=REPO,
            env=clean_env(NO_COLOR="1", COLUMNS="160"),
            check=False,
        )
        yield {"done": done, "campaign": campaign, "out": work / "out"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def fleetprof_json(*args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = subprocess.run(
        [str(FLEETPROF), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=clean_env(NO_COLOR="1"),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done, json.loads(done.stdout)


def test_run_json_prints_one_document_and_the_progress_on_stderr(
    first_run: dict[str, Any],
) -> None:
    done = first_run["done"]
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)  # the whole of stdout is one JSON document
    run_dir = Path(doc["run_dir"])
    report = json.loads(Path(doc["report_json"]).read_text())
    assert run_dir.parent == (first_run["out"] / "scripted").resolve()
    assert (doc["schema"], doc["command"], doc["status"]) == ("fleetprof.result/1", "run", "ok")
    assert (doc["campaign"], doc["run_id"]) == (report["campaign"], report["run_id"])
    assert Path(doc["report_html"]).is_file() and Path(doc["summary_md"]).is_file()
    assert doc["summary"] == report["summary"]
    assert doc["hosts"] == [
        {
            "name": "localhost",
            "hw_model": report["hosts"][0]["hw_model"],
            "status": "ok",
            "reason": None,
        }
    ]
    assert doc["check"] is None
    # The words a person reads went to stderr: progress, the summary table, the report path.
    assert "preflight: 1 host(s)" in done.stderr and "session: 1 host(s)" in done.stderr
    assert "localhost" in done.stderr and "report.html" in done.stderr


def test_report_collect_and_baseline_set_print_json_about_the_same_run(
    first_run: dict[str, Any],
) -> None:
    ran = json.loads(first_run["done"].stdout)
    run_dir = ran["run_dir"]
    rebuilt, doc = fleetprof_json("report", run_dir)
    assert doc == {**ran, "command": "report"}
    assert "report.html" in rebuilt.stderr
    # Every host was collected already: collect rebuilds the outputs and says the same.
    collected, doc = fleetprof_json("collect", run_dir)
    assert "report.html" in collected.stderr
    assert doc == {**ran, "command": "collect"}
    pinned, doc = fleetprof_json("baseline", "set", run_dir)
    history = (first_run["out"] / "history.sqlite").resolve()
    assert doc == {
        "schema": "fleetprof.baseline/1",
        "campaign": "scripted",
        "run_id": ran["run_id"],
        "run_dir": run_dir,
        "history": str(history),
    }
    assert ran["run_id"] in pinned.stderr


def test_check_json_on_a_terminal_with_no_color(first_run: dict[str, Any]) -> None:
    ran = json.loads(first_run["done"].stdout)
    code, stdout, terminal = run_on_tty(
        [
            str(FLEETPROF),
            "check",
            str(first_run["campaign"]),
            "-o",
            str(first_run["out"]),
            "--baseline",
            ran["run_dir"],
            "--json",
        ],
        clean_env(NO_COLOR="1"),
        stdout_on_tty=False,
        timeout=240,
    )
    doc = json.loads(stdout)
    assert doc["command"] == "check" and doc["run_id"] != ran["run_id"]
    check = doc["check"]
    assert check["baseline"] == {"run_id": ran["run_id"], "source": "dir"}
    # A second run on one host against its first: pass, or findings the check explains.
    assert check["verdict"] in ("pass", "findings"), terminal.decode(errors="replace")
    assert code == check["exit_code"] == {"pass": 0, "findings": 1}[check["verdict"]]
    report = json.loads(Path(doc["report_json"]).read_text())
    assert [f["message"] for f in check["findings"]] == [
        f["message"] for f in report["check"]["findings"]
    ]
    # stderr was a terminal: the progress and the table reached it without one escape.
    assert ESC not in terminal, terminal
    assert b"preflight: 1 host(s)" in terminal and b"localhost" in terminal
