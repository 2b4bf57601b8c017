"""Acceptance for cprofile: a launched Python program with a known CPU split, profiled by
cProfile on every host of a small CPU-capped fleet, converted on the device, compared.

The program is still running (idle) at the deadline: the runner stops it with SIGINT and
cProfile writes its profile then. The workload measures the truth itself: each of its
two functions adds its own CPU time (``time.thread_time`` around its body, which calls
nothing, so its cProfile own time is that body) to a file, and a third is called a known
number of times. cProfile's tottime shares of the two must be within 5 points of the
measured ones, and the call counts exact.
One campaign, two hosts (two hardware models) capped at 0.9 core each (see
test_fleet_outliers.py: capped hosts leave the CI runner's cores to the controller).
cProfile's times are wall-clock: a host throttled hard (half a core) stretches whichever
function the pause falls in, so the CPU split and the wall split part there; the test
holds cProfile to each body's wall time, which the program measures too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.fixtures import requires_fleet
from tests.support.fleet import PYTHON, deploy

pytestmark = [pytest.mark.integration, requires_fleet]

ROUNDS = 300
TINY_CALLS = 1234
CPU = 0.9  # of a core, per host: rarely throttled (cProfile's times are wall-clock)
# heavy() spins three times as long as light() (about 75% / 25% of their own time), each
# call a millisecond or two, its length varied from round to round so that the calls do
# not fall in step with the CPU quota's period (20 ms: a throttled pause would then land
# in the same function every time).
WORKLOAD = f"""\
import json, time

SPENT = {{"heavy": 0.0, "light": 0.0}}
WALL = {{"heavy": 0.0, "light": 0.0}}


def heavy(n):
    started, wall = time.thread_time(), time.perf_counter()
    total = 0
    for i in range(3 * n):
        total += i * i
    SPENT["heavy"] += time.thread_time() - started
    WALL["heavy"] += time.perf_counter() - wall


def light(n):
    started, wall = time.thread_time(), time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i
    SPENT["light"] += time.thread_time() - started
    WALL["light"] += time.perf_counter() - wall


def tiny(i):
    return i + 1


def main():
    for k in range({ROUNDS}):
        n = 8000 + (k * 7919) % 9000
        heavy(n)
        light(n)
    for i in range({TINY_CALLS}):
        tiny(i)
    with open("truth.json", "w") as handle:
        json.dump({{"cpu": SPENT, "wall": WALL}}, handle)
    while True:  # then idle until the runner stops it at the deadline (SIGINT)
        time.sleep(0.05)


main()
"""


def test_cprofile_shares_and_call_counts_match_the_truth_on_every_host(
    fleet_factory: Any, fleetprof: Any, tmp_path: Path
) -> None:
    fleet = fleet_factory({"edge-a": {"count": 1, "cpu": CPU}, "edge-b": {"count": 1, "cpu": CPU}})
    program = deploy(fleet, WORKLOAD, "split.py")
    campaign = tmp_path / "fleet-cprofile.yml"
    campaign.write_text(
        "name: fleet-cprofile\nduration: 8s\nstart: {lead: 4s}\n"
        f"target:\n  launch:\n    command: ['{PYTHON}', '{program}']\n"
        "profilers:\n  cprofile: {top: 20, edges: 3}\n"
    )
    result = fleetprof("run", str(campaign), "-i", str(fleet.inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.report("fleet-cprofile")
    run_dir = result.run_dir("fleet-cprofile")

    hosts = {h["name"]: h for h in report["hosts"]}
    assert len(hosts) == 2
    for name, host in hosts.items():
        assert host["status"] == "ok", (name, host["reason"], host["data_quality"])
        assert host["profilers"]["cprofile"]["status"] == "ok"
        assert host["incomplete"] is None
        session = run_dir / "hosts" / name / "session"
        # Still running at the deadline: stopped with SIGINT alone, and cProfile wrote.
        manifest = json.loads((session / "manifest.json").read_text())
        assert manifest["profilers"]["cprofile"]["signals_sent"] == ["SIGINT(group)"]
        assert manifest["window"]["ended_by"] == "deadline"
        # cProfile's own time is wall-clock time (its timer is perf_counter): the truth it
        # must match is each body's wall time, the same as its CPU time where nothing
        # throttles or preempts the host, and still the truth on a loaded CI machine.
        truth = json.loads((session / "truth.json").read_text())["wall"]
        assert (session / "cprofile.prof").stat().st_size > 0  # kept for snakeviz
        rows = {r["function"]: r for r in host["tables"]["cprofile.functions"]}
        own = {f: rows[f]["tottime_s"] for f in ("heavy", "light")}
        for function in ("heavy", "light"):
            measured = 100.0 * own[function] / sum(own.values())
            true = 100.0 * truth[function] / sum(truth.values())
            context = (name, function, measured, true, own, truth)
            assert abs(measured - true) <= 5.0, context
            assert rows[function]["calls"] == ROUNDS
        assert rows["tiny"]["calls"] == rows["tiny"]["primitive_calls"] == TINY_CALLS
        assert host["metrics"]["cprofile.calls"] >= 2 * ROUNDS + TINY_CALLS
        edges = host["tables"]["cprofile.edges"]
        assert any(
            e["caller"].startswith("main (") and e["callee"].startswith("heavy (") for e in edges
        )

    matrix = report["cprofile_function_matrix"]
    assert matrix["hosts"] == ["edge-a-1", "edge-b-1"]
    heavy = [f["function"] for f in matrix["functions"]].index("heavy")
    assert all(cell is not None and cell > 0 for cell in matrix["cells"][heavy])

    # Per group (one host of each model here): the group's functions summed over its
    # hosts, the same numbers as its one host's, and shares of the same profiled time.
    groups = {g["hw_model"]: g for g in report["groups"]}
    assert len(groups) == 2
    for group in groups.values():
        merged = group["cprofile"]
        [name] = group["hosts"]
        assert merged["hosts"] == [name]
        host = hosts[name]
        assert merged["tottime_s"] == pytest.approx(host["metrics"]["cprofile.tottime_s"])
        rows = {r["function"]: r for r in merged["functions"]}
        own = {r["function"]: r for r in host["tables"]["cprofile.functions"]}
        for function in ("heavy", "light"):
            assert rows[function]["calls"] == ROUNDS and rows[function]["hosts"] == 1
            assert rows[function]["tottime_s"] == pytest.approx(own[function]["tottime_s"])
            assert rows[function]["tottime_pct"] == pytest.approx(
                own[function]["tottime_pct"], abs=0.02
            )
        assert rows["tiny"]["calls"] == TINY_CALLS
    page = (run_dir / "report.html").read_text()
    assert page.count("cProfile: functions by own time, summed over the group") == 2
