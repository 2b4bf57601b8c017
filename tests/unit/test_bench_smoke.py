"""The benchmarks at their smoke size, through the code path `make bench` takes, so that
CI keeps them working. Nothing here is timed: the figures are only checked to be there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from benchmarks import (
    BENCHMARKS,
    fleetbench,
    footprint,
    orchestration,
    profiling_overhead,
    report_scale,
)
from benchmarks.__main__ import load
from orchestrator.analysis.stacks import read_folded
from orchestrator.campaign import load_campaign
from orchestrator.models import REPORT_SCHEMA
from orchestrator.plan import make_plan
from tests.unit.factories import host_facts


def test_every_registered_benchmark_has_a_name_a_summary_and_a_bench() -> None:
    for name in BENCHMARKS:
        module = load(name)
        assert name == module.NAME
        assert module.SUMMARY
        assert callable(module.bench)


def test_report_scale_smoke_builds_a_valid_report(tmp_path: Path) -> None:
    hosts, stacks = 3, 300
    data = report_scale.run(
        (hosts,), stacks, workdir=tmp_path, keep=True, results=False, quiet=True
    )
    [row] = data["rows"]
    assert row["hosts"] == row["hosts_in_report"] == hosts
    assert row["history_problem"] is None
    for figure in ("build_s", "parse_s", "analyze_s", "exports_s", "peak_rss_mb"):
        assert row[figure] > 0

    [run_dir] = tmp_path.glob(f"*/out-{hosts}/{report_scale.CAMPAIGN}/{report_scale.RUN_ID}")
    report = json.loads((run_dir / "report.json").read_text())
    assert report["schema"] == REPORT_SCHEMA
    assert report["summary"]["hosts"] == report["summary"]["ok"] == hosts
    assert {h["name"] for h in report["hosts"]} == {report_scale.host_name(i) for i in range(hosts)}
    for host in report["hosts"]:
        # What the generator wrote is what the parsers accept, all of it.
        assert host["data_quality"] == []
        assert host["flamegraph"]["value"] == host["metrics"]["pyspy.samples"] > 0
        assert host["metrics"]["system.samples"] > 0
        assert host["metrics"]["workload.fps"] > 0
        folded = run_dir / "hosts" / host["name"] / "session" / "py-spy.folded"
        profile = read_folded(folded)
        assert len([s for s in profile.stacks if s]) == stacks  # and the " N" line
        assert profile.malformed_lines == 0
        assert (run_dir / "hosts" / host["name"] / "profile.speedscope.json").is_file()
    assert report["groups"] and all(g["flamegraph"] for g in report["groups"])
    assert (run_dir / "report.html").stat().st_size > 0
    assert (run_dir.parent.parent / "history.sqlite").is_file()


# The fleet benchmarks need the SSH test fleet (`make bench-smoke` runs them where one can
# run); these are the parts of their code paths that run without one.


def test_the_ssh_byte_counter_relays_a_connection_and_counts_it_each_way(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def echo_once() -> None:
            conn, _ = server.accept()
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(data)

        echo = threading.Thread(target=echo_once, daemon=True)
        echo.start()
        sent = os.urandom(100_000)
        done = subprocess.run(
            [sys.executable, str(footprint.SSHCOUNT), "127.0.0.1", str(port), str(tmp_path)],
            input=sent,
            capture_output=True,
            timeout=30,
            check=True,
        )
        echo.join(timeout=10)
    assert done.stdout == sent
    [counts] = tmp_path.glob("127.0.0.1-*.jsonl")
    last = json.loads(counts.read_text().splitlines()[-1])
    assert (last["up"], last["down"], last["closed"]) == (len(sent), len(sent), True)
    wire = footprint.wire_bytes(tmp_path, {"127.0.0.1": "edge-1"}, {"preflight": (0.0, 1.0)})
    assert wire["edge-1"]["up"] == wire["edge-1"]["by_stage"]["preflight"]["up"] == len(sent)


def test_the_naive_playbook_is_valid_ansible(tmp_path: Path) -> None:
    playbook = Path(sys.executable).parent / "ansible-playbook"
    env = {**os.environ, "ANSIBLE_CONFIG": str(orchestration.NAIVE_DIR / "ansible.cfg")}
    done = subprocess.run(
        [
            str(playbook),
            "--syntax-check",
            "-i",
            "localhost,",
            str(orchestration.NAIVE_DIR / "site.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_floor_reaches_hosts_as_the_inventory_says_with_host_keys_checked(
    tmp_path: Path,
) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  children:\n    model_a:\n      hosts:\n        model-a-1:\n"
        "          ansible_host: 127.0.0.11\n          ansible_port: 2222\n"
        "          ansible_user: root\n          ansible_ssh_private_key_file: /f/client_key\n"
        "          ansible_ssh_common_args: -o UserKnownHostsFile=/f/known_hosts"
        " -o StrictHostKeyChecking=yes\n"
        "          ansible_python_interpreter: /usr/bin/python3\n"
    )
    host = fleetbench.ssh_hosts(inventory)["model-a-1"]
    argv = host.ssh([host.python, "/tmp/runner.py", "/dev/stdin"])
    assert argv[:3] == ["ssh", "-F", "/dev/null"]
    for option in ("UserKnownHostsFile=/f/known_hosts", "StrictHostKeyChecking=yes"):
        assert argv[argv.index(option) - 1] == "-o"
    assert argv[-3:] == ["root@127.0.0.11", "--", "/usr/bin/python3 /tmp/runner.py /dev/stdin"]
    assert host.scp_from("/r/a.tar.gz", tmp_path / "a")[-2:] == [
        "root@127.0.0.11:/r/a.tar.gz",
        str(tmp_path / "a"),
    ]
    narrowed = fleetbench.write_inventory(
        inventory, ["model-a-1"], tmp_path / "n.yml", extra_ssh_args="-o X=1"
    )
    assert fleetbench.ssh_hosts(narrowed)["model-a-1"].common_args[-2:] == ("-o", "X=1")


def test_a_baseline_runs_fleetprofs_plan_under_its_own_run_id_and_start(tmp_path: Path) -> None:
    campaign = fleetbench.write_campaign(
        tmp_path / "c.yml",
        "bench-x",
        5.0,
        fleetbench.idle_target("/usr/bin/python3"),
        {"system": {}},
    )
    plan = make_plan(load_campaign(campaign), host_facts(), "20261125-000000-abcd", {}, 1000.0)
    moved = fleetbench.baseline_plan(plan.to_dict(), "floor", t0=2000.0)
    assert moved["run_id"] == "20261125-000000-abcd-floor"
    assert moved["workdir"].endswith("/bench-x/20261125-000000-abcd-floor")
    assert moved["archive"].endswith("/bench-x/20261125-000000-abcd-floor.tar.gz")
    assert moved["deadline_device"] - moved["t0_device"] == 5.0
    assert moved["t0_device"] == 2000.0 + plan.clock_offset_s


def test_the_workload_rate_counts_only_samples_inside_the_window() -> None:
    samples = [
        profiling_overhead.Sample(at=t, frames=frames, elapsed_s=e)
        for t, frames, e in ((9.0, 5, 1.0), (10.2, 30, 2.2), (11.2, 50, 3.2), (12.1, 68, 4.1))
    ]
    assert profiling_overhead.window_fps(samples, 10.0, 12.5) == pytest.approx(38 / 1.9)
    assert profiling_overhead.window_fps(samples, 10.0, 10.5) is None  # one sample: no rate
