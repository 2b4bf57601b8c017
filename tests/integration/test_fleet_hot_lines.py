"""py-spy's hot lines end to end: one short `fleetprof run` on two hosts of two hardware
models, launching a program that measures how its hot function splits its time between two
lines (tests/support/hot_lines.py). Each host's and each group's first hot line is the heavy
one, within 5 points of the program's own figure, with the source text its device read; the
HTML page has the tables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Fleet
from tests.fleet.fixtures import requires_fleet
from tests.support.cli import needs_ptrace
from tests.support.fleet import PYTHON, deploy
from tests.support.hot_lines import HEAVY, LIGHT, WORKLOAD, line_of

pytestmark = [pytest.mark.integration, requires_fleet, needs_ptrace]

POINTS = 5.0
RATE = 250
SECONDS = 5
TRUTH = "/tmp/hot-lines-truth.json"
HOSTS = ("model-a-1", "model-b-1")


@pytest.fixture(scope="module")
def fleet(module_fleet_factory: Any) -> Fleet:
    fleet: Fleet = module_fleet_factory(
        {"model-a": {"count": 1, "cpu": 1.0}, "model-b": {"count": 1, "cpu": 1.0}}
    )
    deploy(fleet, WORKLOAD, "hot/hot_workload.py")
    return fleet


def test_each_host_and_group_has_the_heavy_line_first_with_its_text(
    fleet: Fleet, fleetprof: Any, tmp_path: Path
) -> None:
    path = tmp_path / "hot.yml"
    command = [PYTHON, "/opt/hot/hot_workload.py", str(SECONDS), TRUTH]
    path.write_text(
        f"name: hot\nduration: {SECONDS + 4}s\nstart: {{lead: 3s}}\n"
        f"target:\n  launch:\n    command: {json.dumps(command)}\n"
        f"profilers:\n  py-spy: {{rate: {RATE}}}\n"
    )
    result = fleetprof("run", str(path), "-i", str(fleet.inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.report("hot")
    for name in HOSTS:
        [host] = [h for h in report["hosts"] if h["name"] == name]
        assert host["status"] == "ok", host["reason"]
        truth = json.loads(Path(fleet.host(name).private_path(TRUTH)).read_text())
        first = host["hot_lines"][0]
        assert (first["function"], first["file"]) == ("hot", "hot_workload.py"), host["hot_lines"]
        heavy, light = first["lines"][:2]
        assert (heavy["line"], heavy["text"]) == (line_of(HEAVY), HEAVY)
        assert (light["line"], light["text"]) == (line_of(LIGHT), LIGHT)
        print(
            f"{name}: heavy line {heavy['function_pct']:.1f} % of hot(), "
            f"truth {100 * truth['heavy_share']:.1f} % ({first['self_samples']} samples)"
        )
        assert abs(heavy["function_pct"] - 100 * truth["heavy_share"]) <= POINTS, (heavy, truth)
    assert [g["hw_model"] for g in report["groups"]] == ["model-a", "model-b"]
    for group in report["groups"]:
        line = group["hot_lines"][0]["lines"][0]
        assert (line["line"], line["text"]) == (line_of(HEAVY), HEAVY), group["hot_lines"]
    page = (result.run_dir("hot") / "report.html").read_text()
    assert page.count('<table class="top hot-lines">') == len(HOSTS) + len(report["groups"])
    assert "Hot lines per group" in (result.run_dir("hot") / "summary.md").read_text()
