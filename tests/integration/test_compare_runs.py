"""Two real attach campaigns on this machine, before and after the workload's hot function
changes, then ``fleetprof compare``: the function that moved is shown moving, in the right
direction and by the right amount, without a significance claim (one host: one window per
run is one observation, docs/commands.md), and the exports of both runs are there for
other tools. The test across hosts is tested in tests/unit/test_compare_noise.py."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import FLEETPROF_ARGV, needs_ptrace
from tests.support.paths import REPO

pytestmark = [pytest.mark.integration, needs_ptrace]

# Each 10 ms round splits its time between alpha_work and beta_work by the fraction in the
# file named on the command line, re-read every round, so the test can move the hot
# function without restarting the process.
SWITCHING_WORKLOAD = """
import sys, time

split_file = sys.argv[1]

# Both burn CPU in their own frames, so py-spy's self share is the truth.
def alpha_work(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def beta_work(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

while True:
    try:
        with open(split_file) as handle:
            alpha = min(max(float(handle.read()), 0.0), 1.0)
    except (OSError, ValueError):
        alpha = 0.5
    alpha_work(0.010 * alpha)
    beta_work(0.010 * (1.0 - alpha))
"""


def compare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLEETPROF_ARGV, "compare", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


def function(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [row] = [r for r in rows if r["function"] == name]
    return row


def test_compare_shows_the_function_that_moved(
    fleetprof: Any, workload: Any, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    split = tmp_path / "split.txt"
    split.write_text("0.7")
    workload(SWITCHING_WORKLOAD, str(split), f"--token={token}")
    time.sleep(0.5)
    campaign = tmp_path / "switch.yml"
    campaign.write_text(
        f"name: switch\nduration: 3s\nstart: {{lead: 4s}}\n"
        f"target:\n  attach:\n    process: 'workload_.*--token={token}'\n"
        "profilers:\n  py-spy: {rate: 97}\n"
    )
    before = fleetprof("run", str(campaign))
    assert before.returncode == 0, before.stdout + before.stderr
    split.write_text("0.3")
    time.sleep(0.2)
    after = fleetprof("run", str(campaign))
    assert after.returncode == 0, after.stdout + after.stderr
    run_a, run_b = sorted((after.out_root / "switch").iterdir())

    # `report` writes the exports (as `run` does once the flow calls them).
    for run in (run_a, run_b):
        rebuilt = subprocess.run(
            [*FLEETPROF_ARGV, "report", str(run)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert rebuilt.returncode == 0, rebuilt.stderr
        host_dir = run / "hosts" / "localhost"
        document = json.loads((host_dir / "profile.speedscope.json").read_text())
        [profile] = document["profiles"]
        samples = json.loads((run / "report.json").read_text())["hosts"][0]["metrics"]
        assert sum(profile["weights"]) == samples["pyspy.samples"]
        assert "alpha_work" in {f["name"] for f in document["shared"]["frames"]}
        assert "alpha_work (" in (host_dir / "profile.folded").read_text()

    result = compare(str(run_a), str(run_b), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["only_in_a"] == data["only_in_b"] == []
    [host] = data["hosts"]
    assert host["host"] == "localhost"
    rows = host["profile"]["functions"]
    alpha, beta = function(rows, "alpha_work"), function(rows, "beta_work")
    assert alpha["direction"] == "down" and beta["direction"] == "up", (alpha, beta)
    # alpha_work's part of the two functions' time, 70% -> 30% as written into the split
    # file (the loop's own overhead, larger on a loaded machine, takes from both alike).
    for side, truth in (("a_pct", 0.7), ("b_pct", 0.3)):
        split = alpha[side] / (alpha[side] + beta[side])
        assert abs(split - truth) < 0.1, (side, alpha, beta)
    assert alpha["test"] is None and not alpha["significant"]
    assert any("not tested" in note for note in host["notes"]), host["notes"]
    fleet = data["fleet"]
    assert fleet["tested"] is None  # one host: nothing to test across
    assert function(fleet["functions"], "alpha_work")["direction"] == "down"

    table = compare(str(run_a), str(run_b))
    assert table.returncode == 0, table.stderr
    assert "alpha_work" in table.stdout and "not tested" in table.stdout

    assert compare(str(run_a), str(tmp_path)).returncode == 2
