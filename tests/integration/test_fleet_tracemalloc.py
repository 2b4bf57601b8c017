"""The Python toolbox together, end to end: one short `fleetprof run` on two hosts of two
hardware models, launching a program that leaks a known number of bytes a second at a known
line (tests/support/leaker.py) under cprofile, with tracemalloc inside it, py-spy attached
beside it (hot lines) and memory. Each host names the leaking line first by growth, within
10% of the program's own account, under the devices' own Python (whose Debian sitecustomize
the hook runs after itself); every host has all three profilers' results, the groups compare
them; the HTML page and summary.md have the tables.
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
from tests.support.leaker import LEAK_LINE, LEAKER, leaked_between

pytestmark = [pytest.mark.integration, requires_fleet, needs_ptrace]

SECONDS = 6
TRUTH = "/tmp/leak-truth.json"
HOSTS = ("model-a-1", "model-b-1")


@pytest.fixture(scope="module")
def fleet(module_fleet_factory: Any) -> Fleet:
    fleet: Fleet = module_fleet_factory(
        {"model-a": {"count": 1, "cpu": 1.0}, "model-b": {"count": 1, "cpu": 1.0}}
    )
    deploy(fleet, LEAKER, "leak/leaker.py")
    return fleet


def test_each_host_names_the_leaking_line_first_within_ten_percent(
    fleet: Fleet, fleetprof: Any, tmp_path: Path
) -> None:
    path = tmp_path / "leak.yml"
    command = [PYTHON, "/opt/leak/leaker.py", TRUTH]
    path.write_text(
        f"name: leak\nduration: {SECONDS}s\nstart: {{lead: 3s}}\n"
        f"target:\n  launch:\n    command: {json.dumps(command)}\n"
        "profilers:\n  tracemalloc: {interval: 1s, frames: 3}\n  py-spy: {rate: 50}\n"
        "  memory: {}\n  cprofile: {top: 20}\n"
    )
    result = fleetprof("run", str(path), "-i", str(fleet.inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.report("leak")
    for name in HOSTS:
        [host] = [h for h in report["hosts"] if h["name"] == name]
        assert host["status"] == "ok", (host["reason"], host["data_quality"])
        assert host["profilers"]["tracemalloc"]["status"] == "ok"
        assert host["profilers"]["py-spy"]["status"] == "ok"
        first = host["tables"]["tracemalloc.growth"][0]
        assert (first["file"], first["line"]) == ("/opt/leak/leaker.py", LEAK_LINE), first
        raw = json.loads(
            (result.run_dir("leak") / "hosts" / name / "session" / "tracemalloc.json").read_text()
        )
        truth = Path(fleet.host(name).private_path(TRUTH))
        leaked = leaked_between(truth, raw["first_at"], raw["last_at"])
        print(f"{name}: grew {first['size_diff']} bytes at the line, truth {leaked}")
        assert abs(first["size_diff"] - leaked) <= 0.10 * leaked, (first, leaked)
        assert host["metrics"]["tracemalloc.growth_mb_per_min"] > 0
        # cProfile ran the same program (stopped with SIGINT, its profile written) ...
        assert host["profilers"]["cprofile"]["status"] == "ok", host["data_quality"]
        cprofiled = {r["function"] for r in host["tables"]["cprofile.functions"]}
        assert "<module>" in cprofiled or "<built-in method builtins.sum>" in cprofiled, cprofiled
        # ... and py-spy, attached from outside, found its hot line with the device's text.
        [hot] = [f for f in host["hot_lines"] if f["file"].endswith("leaker.py")]
        assert any("sum(range(50000))" in (line["text"] or "") for line in hot["lines"]), hot
    assert [g["hw_model"] for g in report["groups"]] == ["model-a", "model-b"]
    for group in report["groups"]:
        assert "tracemalloc.growth_mb_per_min" in group["metrics"]
    page = (result.run_dir("leak") / "report.html").read_text()
    assert page.count('<table class="top allocations growth">') == len(HOSTS)
    assert page.count('<table class="top cprofile">') == len(HOSTS)
    assert page.count('<table class="top hot-lines">') >= len(HOSTS)
    assert report["cprofile_function_matrix"]["hosts"] == list(HOSTS)
    # The leaking line is the growth matrix's first row, every host's cell its own growth.
    matrix = report["tracemalloc_growth_matrix"]
    assert matrix["hosts"] == list(HOSTS)
    assert matrix["functions"][0]["file"] == f"/opt/leak/leaker.py:{LEAK_LINE}", matrix
    for name, cell in zip(matrix["hosts"], matrix["cells"][0], strict=True):
        [host] = [h for h in report["hosts"] if h["name"] == name]
        assert cell == host["tables"]["tracemalloc.growth"][0]["growth_mb"], (name, cell)
    assert 'id="growth-matrix"' in page
    assert all(group["hot_lines"] for group in report["groups"])
    assert "## Allocations per host" in (result.run_dir("leak") / "summary.md").read_text()
