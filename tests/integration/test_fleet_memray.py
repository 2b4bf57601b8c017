"""memray and line-profiler end to end: a short `fleetprof run` on two hosts of two
hardware models, launching a program that holds a known number of bytes allocated at a known line
(tests/process/test_memray_run.py's HOLDER), with memray where the program's Python can
import it. The devices' Python (/usr/bin/python3) has no memray: the campaign's
PYTHONPATH (/opt/pylib) gives it one on model-a-1 only (a copy of the controller's memray,
built for the same Python 3.11), so model-a-1 names the holding line first within 10% of
the truth, and model-b-1 skips memray with the reason, decided on the device; its other
profiler still runs and the host is ok. line-profiler the same way, on a program whose hot
line is known (tests/process/test_line_profiler_run.py's HOT).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Fleet
from tests.fleet.fixtures import requires_fleet
from tests.process.test_line_profiler_run import HOT, HOT_LINE
from tests.process.test_memray_run import BLOCK, BLOCKS, HOLD_LINE, HOLDER
from tests.support.fleet import PYTHON, deploy
from tests.support.pylib import copy_distributions

pytest.importorskip("memray")
pytestmark = [pytest.mark.integration, requires_fleet]

SECONDS = 5
HOSTS = ("model-a-1", "model-b-1")


@pytest.fixture(scope="module")
def fleet(module_fleet_factory: Any) -> Fleet:
    fleet: Fleet = module_fleet_factory(
        {"model-a": {"count": 1, "cpu": 1.0}, "model-b": {"count": 1, "cpu": 1.0}}
    )
    deploy(fleet, HOLDER, "mem/holder.py")
    deploy(fleet, HOT, "mem/hot.py")
    # A copy, not a link: the controller's venv may lie where the hosts cannot see it
    # (a clean clone under /tmp, which is private to each host).
    copied = copy_distributions(
        ["memray", "line_profiler"], Path(fleet.host("model-a-1").private_path("/opt/pylib"))
    )
    assert {"memray", "line-profiler"} <= set(copied), copied
    return fleet


def test_memray_where_the_programs_python_has_it_and_the_reason_where_not(
    fleet: Fleet, fleetprof: Any, tmp_path: Path
) -> None:
    if fleet.run("model-a-1", ["env", "PYTHONPATH=/opt/pylib", PYTHON, "-c", "import memray"]).rc:
        pytest.skip("the controller's memray does not load in the devices' Python")
    path = tmp_path / "mem.yml"
    command = [PYTHON, "/opt/mem/holder.py"]
    path.write_text(
        f"name: mem\nduration: {SECONDS}s\nstart: {{lead: 3s}}\n"
        f"target:\n  launch:\n    command: {json.dumps(command)}\n"
        "    env: {PYTHONPATH: /opt/pylib}\n"
        "profilers:\n  memray: {top: 10}\n  memory: {}\n"
    )
    result = fleetprof("run", str(path), "-i", str(fleet.inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.report("mem")
    hosts = {h["name"]: h for h in report["hosts"]}
    have = hosts["model-a-1"]
    assert have["status"] == "ok", (have["reason"], have["data_quality"])
    assert have["profilers"]["memray"]["status"] == "ok"
    truth = BLOCKS * BLOCK
    for table in ("memray.peak", "memray.leaked", "memray.by_size"):
        first = have["tables"][table][0]
        assert (first["file"], first["line"]) == ("/opt/mem/holder.py", HOLD_LINE), first
        print(f"{table}: {first['size']} bytes at the line, truth {truth}")
        assert abs(first["size"] - truth) <= 0.10 * truth
    assert have["metrics"]["memray.peak_mb"] >= 0.9 * truth / BLOCK
    session = result.run_dir("mem") / "hosts" / "model-a-1" / "session"
    assert (session / "memray.bin").stat().st_size > 0
    lacking = hosts["model-b-1"]
    assert lacking["status"] == "ok", (lacking["reason"], lacking["data_quality"])
    entry = lacking["profilers"]["memray"]
    assert entry["status"] == "skipped"
    assert entry["reason"].startswith(
        f"memray is not installed for the program's Python ({PYTHON}: `import memray` failed"
    )
    assert lacking["profilers"]["memory"]["status"] == "ok"
    page = (result.run_dir("mem") / "report.html").read_text()
    assert page.count('<table class="top allocations memray peak">') == 1
    assert "## memray per host" in (result.run_dir("mem") / "summary.md").read_text()


def test_line_profiler_where_the_programs_python_has_it_and_the_reason_where_not(
    fleet: Fleet, fleetprof: Any, tmp_path: Path
) -> None:
    if fleet.run("model-a-1", ["env", "PYTHONPATH=/opt/pylib", PYTHON, "-c", "import kernprof"]).rc:
        pytest.skip("the controller's line_profiler does not load in the devices' Python")
    path = tmp_path / "lines.yml"
    command = [PYTHON, "/opt/mem/hot.py", "/tmp/calls.txt"]
    path.write_text(
        f"name: lines\nduration: {SECONDS}s\nstart: {{lead: 3s}}\n"
        f"target:\n  launch:\n    command: {json.dumps(command)}\n"
        "    env: {PYTHONPATH: /opt/pylib}\n"
        "profilers:\n  line-profiler: {functions: [/opt/mem/hot.py]}\n  memory: {}\n"
    )
    result = fleetprof("run", str(path), "-i", str(fleet.inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    hosts = {h["name"]: h for h in result.report("lines")["hosts"]}
    have = hosts["model-a-1"]
    assert have["status"] == "ok", (have["reason"], have["data_quality"])
    lines = [r for r in have["tables"]["line_profiler.lines"] if r["function"] == "work"]
    hot = max(lines, key=lambda row: row["pct"])
    print(f"hot line {hot['line']}: {hot['pct']}% of work(), {hot['hits']} hits")
    assert hot["line"] == HOT_LINE and "# the hot line" in hot["text"]
    entry = hosts["model-b-1"]["profilers"]["line-profiler"]
    assert hosts["model-b-1"]["status"] == "ok" and entry["status"] == "skipped"
    assert "line_profiler is not installed for the program's Python" in entry["reason"]
    page = (result.run_dir("lines") / "report.html").read_text()
    assert page.count("<h3>Line profile") == 1
