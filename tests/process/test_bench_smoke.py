"""The benchmarks at their smoke size, through the code path `make bench` takes, so that
CI keeps them working. Nothing here is timed: the figures are only checked to be there.
"""

from __future__ import annotations

import gc
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

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
from orchestrator.analysis.diff import diff_tree, profile_diff
from orchestrator.analysis.stacks import (
    CallTree,
    Frame,
    LazyTree,
    StackCounts,
    StackProfile,
    flame_of_tree,
    flame_tree,
    gc_paused,
    merge_profiles,
    parse_folded,
    read_folded,
    top_functions,
)
from orchestrator.campaign.loader import load_campaign
from orchestrator.models import REPORT_SCHEMA
from orchestrator.report.exports import folded_text
from orchestrator.report.html import DRAWN_UP_TO, render_html
from orchestrator.stages.plan import make_plan
from tests.support.factories import host_facts


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


# What the numbers led to (docs/performance.md) must not change a report: the fast paths
# against the plain ones, on stacks the way the benchmark generates them.


def _generated_profiles(tmp_path: Path, hosts: int = 6, stacks: int = 400) -> list[StackProfile]:
    shape = report_scale.Shape(hosts=hosts, stacks=stacks)
    report_scale.generate(tmp_path / "run", shape)
    return [
        read_folded(folded)
        for folded in sorted((tmp_path / "run" / "hosts").glob("*/session/py-spy.folded"))
    ]


def test_lazy_trees_give_the_full_trees_flame_graphs_and_diffs(tmp_path: Path) -> None:
    profiles = _generated_profiles(tmp_path)
    group = merge_profiles(profiles)
    for profile in [*profiles, group]:
        for fraction in (0.0, 0.002, 0.05):
            lazy = flame_of_tree(LazyTree.of(profile), fraction)
            assert lazy == flame_of_tree(CallTree.of(profile), fraction)
        assert flame_of_tree(LazyTree.of(profile, max_depth=7)) == flame_of_tree(
            CallTree.of(profile, max_depth=7)
        )
    one, other = profiles[0], merge_profiles(profiles[1:])
    assert diff_tree(LazyTree.of(one), LazyTree.of(other)) == diff_tree(
        CallTree.of(one), CallTree.of(other)
    )
    full_host, lazy_host = CallTree.of(one), LazyTree.of(one)
    assert diff_tree(lazy_host, LazyTree.of(group), subtract=lazy_host) == diff_tree(
        full_host, CallTree.of(group), subtract=full_host
    )


def test_profiles_that_share_nothing_merge_and_count_as_those_parsed_together(
    tmp_path: Path,
) -> None:
    profiles = _generated_profiles(tmp_path, hosts=3)
    # The same stacks as plain dicts of new tuples of new frames: equal, but not the
    # objects the parser shares between profiles.
    plain = [
        StackProfile(
            {tuple(Frame(*f) for f in stack): n for stack, n in p.stacks.items()},
            p.total_samples,
            0,
            [],
        )
        for p in profiles
    ]
    merged, again = merge_profiles(profiles), merge_profiles(plain)
    assert dict(merged.stacks.items()) == dict(again.stacks.items())
    assert merged.total_samples == again.total_samples
    assert merge_profiles([profiles[0], plain[0]]).stacks == {
        stack: 2 * n for stack, n in profiles[0].stacks.items()
    }
    for fast, slow in zip(profiles, plain, strict=True):
        assert top_functions(fast, limit=1000) == top_functions(slow, limit=1000)
        assert fast.self_counts == slow.self_counts
        assert folded_text(fast) == folded_text(slow)


def test_compact_stacks_behave_as_a_mapping_and_keep_any_count() -> None:
    profile = parse_folded("main (a.py:1);work (a.py:5) 4\nmain (a.py:1) 10\n")
    stacks = profile.stacks
    assert isinstance(stacks, StackCounts)
    work = (Frame("main", "a.py", 1), Frame("work", "a.py", 5))
    assert stacks[work] == 4 and work in stacks and len(stacks) == 2
    assert dict(stacks.items()) == {work: 4, work[:1]: 10} == stacks
    assert sorted(stacks.values()) == [4, 10]
    # Counts beyond 64 bits (ten threads of one stack at 10**18 - 1) stay exact.
    huge = "".join(f"thread ({i});main (a.py:1) {'9' * 18}\n" for i in range(10))
    assert parse_folded(huge).stacks == {work[:1]: 10 * (10**18 - 1)}


def test_gc_paused_restores_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def _big_fleet_report(hosts: int) -> dict[str, Any]:
    profile = parse_folded("main (app.py:1);decode (app.py:5) 60\nmain (app.py:1) 40\n")
    rows = [
        {
            "name": f"edge-{i:03d}",
            "hw_model": "pi",
            "status": "ok",
            "metrics": {"pyspy.samples": 100.0},
            "flamegraph": flame_tree(profile),
            "series": {"system.t": [0.0, 1.0], "system.cpu_pct": [10.0, 20.0]},
        }
        for i in range(hosts)
    ]
    diff = profile_diff(profile, profile)
    return {
        "schema": REPORT_SCHEMA,
        "campaign": "c",
        "run_id": "r",
        "summary": {"hosts": hosts, "ok": hosts},
        "hosts": rows,
        "diffs": {"host_vs_group": {"edge-007": diff}, "group_vs_group": []},
    }


def test_a_big_fleets_page_draws_only_the_hosts_it_compares() -> None:
    def sections(page: str) -> dict[str, str]:
        parts = page.split('<details class="host"')[1:]
        return {re.search(r'class="hn">([^<]+)<', p)[1]: p for p in parts}  # type: ignore[index]

    small = sections(render_html(_big_fleet_report(DRAWN_UP_TO)))
    assert all('class="flame"' in s for s in small.values())
    big = sections(render_html(_big_fleet_report(DRAWN_UP_TO + 1)))
    assert len(big) == DRAWN_UP_TO + 1
    assert 'class="flame"' in big["edge-007"] and "<polyline" in big["edge-007"]
    undrawn = big["edge-008"]
    assert 'class="flame"' not in undrawn and "<polyline" not in undrawn
    assert "report.json has every host" in undrawn
    assert "hosts/edge-008/profile.speedscope.json" in undrawn
