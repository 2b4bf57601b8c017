"""py-spy's hot lines against the truth: a program whose hot function spends a share of
its time on one line it measures itself (``time.perf_counter`` around each part), run by
the real device runner under real py-spy the way Ansible runs it, then parsed as the
controller parses a host. That line must come first, its share within 5 points of the
program's own figure, and its source text must be the device's."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

from fleetprof_device.contract import SOURCE_LINES_FILE, SOURCE_LINES_OPTION
from orchestrator.campaign.model import Campaign
from orchestrator.profilers import pyspy
from tests.support.hot_lines import HEAVY, LIGHT, WORKLOAD, line_of
from tests.support.session import make_plan, pyspy_profiler, run_module

RATE = 250
SECONDS = 5.0
WINDOW = 10.0


def _session(tmp_path: Path, archive: str) -> Path:
    session = tmp_path / "session"
    session.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(session, filter="data")
    return session


def test_the_line_a_function_spends_most_on_is_its_first_hot_line_within_5_points(tmp_path, py_spy):
    script = tmp_path / "hot_workload.py"
    script.write_text(WORKLOAD)
    truth_file = tmp_path / "truth.json"
    profiler = pyspy_profiler(py_spy, WINDOW)
    argv = [a for a in profiler["argv"] if a != "--nonblocking"]
    argv[argv.index("--rate") + 1] = str(RATE)
    profiler["argv"] = [*argv, "--threads"]  # as the controller plans it
    profiler["options"] = {SOURCE_LINES_OPTION: True}
    command = [sys.executable, str(script), str(SECONDS), str(truth_file)]
    plan = make_plan(
        tmp_path, {"mode": "launch", "command": command}, [profiler], window=WINDOW, lead=1.0
    )

    run = run_module(tmp_path, plan, timeout=60)

    assert run.result["status"] == "ok", run.result["reason"]
    truth = json.loads(truth_file.read_text())
    assert 0.55 < truth["heavy_share"] < 0.85, truth  # the workload did what it says
    session = _session(tmp_path, run.result["archive"])
    assert (session / SOURCE_LINES_FILE).is_file(), run.read("runner.log")
    campaign = Campaign.from_mapping(
        {
            "name": "hot-lines",
            "duration": WINDOW,
            "target": {"launch": {"command": command}},
            "profilers": {"py-spy": {"rate": RATE}},
        }
    )
    result = pyspy.parse(session, run.manifest["profilers"]["py-spy"], campaign)

    first = result.hot_lines[0]
    assert (first["function"], first["file"]) == ("hot", script.name), result.hot_lines
    assert first["self_samples"] >= 0.5 * RATE * SECONDS  # enough samples to judge
    line = first["lines"][0]
    assert line["line"] == line_of(HEAVY), first
    assert line["text"] == HEAVY
    print(
        f"hot line: {line['function_pct']:.1f}% of hot(), truth {100 * truth['heavy_share']:.1f}%"
    )
    assert abs(line["function_pct"] - 100.0 * truth["heavy_share"]) <= 5.0, (line, truth)
    light = first["lines"][1]
    assert (light["line"], light["text"]) == (line_of(LIGHT), LIGHT)
    assert not [q for q in result.data_quality if SOURCE_LINES_FILE in q]
