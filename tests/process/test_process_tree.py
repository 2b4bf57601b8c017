"""The whole process tree of the target, sampled by the runner's memory and system samplers:
a parent with two children, each holding a known amount of memory and saying its own
VmRSS (the truth, read by each process from /proc/self/status). The runner runs the way
Ansible runs it, and the controller's parsers read what it wrote."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import pytest

from orchestrator.campaign.model import Campaign
from orchestrator.profilers import memory, system
from tests.support.session import builtin_profiler, make_plan, run_module

# parent OUT UNTIL MB...: starts one child per further size; every process spins 0.5 s,
# holds its own block until UNTIL and writes "<VmRSS kB> <its CPU s>" to OUT.<role> once
# its block is in memory.
FAMILY = """\
import os, subprocess, sys, time

def vmrss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def hold(role, mb, out, until):
    block = b"\\x01" * (mb << 20)  # written: resident
    with open("%s.%s" % (out, role), "w") as handle:
        handle.write("%d %.3f" % (vmrss_kb(), time.process_time()))
    while time.time() < until:
        time.sleep(0.05)
    return len(block)

role, out, until = sys.argv[1], sys.argv[2], float(sys.argv[3])
sizes = [int(v) for v in sys.argv[4:]]
children = []
if role == "parent":
    for index, size in enumerate(sizes[1:]):
        children.append(subprocess.Popen(
            [sys.executable, __file__, "child%d" % index, out, str(until), str(size)]))
        time.sleep(0.2)  # the second child starts later than the first
busy = time.time() + 0.5
while time.time() < busy:  # some CPU of its own
    pass
hold(role, sizes[0], out, until)
for child in children:
    child.wait()
"""

SIZES_MB = (30, 40, 80)


def campaign() -> Campaign:
    return Campaign.model_validate(
        {
            "name": "tree",
            "duration": 4,
            "target": {"launch": {"command": ["x"]}},
            "profilers": {"memory": {}, "system": {}},
        }
    )


@pytest.fixture(scope="module")
def family_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict, dict[str, int], dict[str, float]]:
    tmp_path = tmp_path_factory.mktemp("tree")
    script = tmp_path / "family.py"
    script.write_text(FAMILY)
    out = tmp_path / "rss"
    plan = make_plan(tmp_path, {}, [], window=4.0, lead=1.0)
    until = plan["t0_device"] + 3.0
    command = [sys.executable, str(script), "parent", str(out), str(until)]
    plan["target"].update(mode="launch", command=command + [str(mb) for mb in SIZES_MB])
    plan["profilers"] = [builtin_profiler("memory", 0.2), builtin_profiler("system", 0.2)]
    run = run_module(tmp_path, plan)
    assert run.result["status"] == "ok", run.result["reason"]
    session = tmp_path / "session"
    session.mkdir()
    with tarfile.open(run.result["archive"]) as tar:
        tar.extractall(session, filter="data")
    truth = {
        role: (tmp_path / f"rss.{role}").read_text().split()
        for role in ("parent", "child0", "child1")
    }
    return (
        session,
        run.manifest,
        {role: int(v[0]) for role, v in truth.items()},
        {role: float(v[1]) for role, v in truth.items()},
    )


def test_the_sampler_records_every_process_of_the_tree(family_run):
    session, manifest, _truth, _cpu = family_run
    records = [json.loads(line) for line in (session / "memory.jsonl").read_text().splitlines()]
    peak = max(records, key=lambda r: r["tree"]["rss_kb"])
    assert peak["tree"]["procs"] == 3
    new = [entry for record in records for entry in record["tree"].get("new", [])]
    assert sorted(e["cmd"].split()[2] for e in new) == ["child0", "child1", "parent"]
    root = manifest["target"]["pid"]
    assert [e["ppid"] for e in new if e["pid"] != root] == [root, root]
    quality = manifest["profilers"]["memory"]["data_quality"]["tree"]
    assert quality["overflow"] is False


def test_tree_memory_is_within_ten_percent_of_what_each_process_holds(family_run):
    session, manifest, truth, cpu = family_run
    result = memory.parse(session, manifest["profilers"]["memory"], campaign())
    total_mb = sum(truth.values()) / 1024.0
    assert result.metrics["memory.rss_peak_mb"] == pytest.approx(total_mb, rel=0.10)
    assert result.metrics["memory.processes.max"] == 3
    # The parent alone is what the old metric counted.
    assert result.metrics["memory.root.rss_peak_mb"] == pytest.approx(
        truth["parent"] / 1024.0, rel=0.10
    )
    rows = {row["cmdline"].split()[2]: row for row in result.tables["processes"]}
    assert set(rows) == {"parent", "child0", "child1"}
    for role, kb in truth.items():
        assert rows[role]["rss_peak_mb"] == pytest.approx(kb / 1024.0, rel=0.10), role
    assert rows["parent"]["ppid"] is not None
    for role, seconds in cpu.items():  # its CPU when it said so; it used a little more after
        assert seconds - 0.02 <= rows[role]["cpu_s"] <= seconds + 0.25, role


def test_the_target_cpu_counts_the_children(family_run):
    session, manifest, truth, cpu = family_run
    result = system.parse(session, manifest["profilers"]["system"], campaign())
    metrics = result.metrics
    assert metrics["target.processes.max"] == 3
    assert metrics["target.rss_mb.peak"] == pytest.approx(sum(truth.values()) / 1024.0, rel=0.1)
    # The CPU each process used, over the time the tree was sampled: the parent alone
    # (target.root) is about a third of it.
    ran = manifest["profilers"]["system"]["data_quality"]["ran_s"]
    truth_pct = 100.0 * sum(cpu.values()) / ran
    assert metrics["target.cpu_pct.mean"] == pytest.approx(truth_pct, rel=0.15, abs=3.0)
    assert metrics["target.root.cpu_pct.mean"] < metrics["target.cpu_pct.mean"] / 2
    assert {row["cmdline"].split()[2] for row in result.tables["processes"]} == {
        "parent",
        "child0",
        "child1",
    }
