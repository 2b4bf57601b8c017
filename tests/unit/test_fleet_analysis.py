"""The fleet analysis that goes into report.json: groups, outliers, matrix, diffs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.analysis.fleet import (
    HostView,
    build_report,
    fleet_diffs,
    function_matrix,
    group_stats,
)
from orchestrator.analysis.stacks import StackProfile, parse_folded
from orchestrator.stages.inventory import group_values, host_var_values, load_inventory

META = {"campaign": "c", "run_id": "r", "started_at": "t", "duration_s": 5.0, "mode": "launch"}


def _profile(decode: int, detect: int, other: int = 0) -> StackProfile:
    lines = [
        f"main (app.py:1);decode_frame (app.py:5) {decode}",
        f"main (app.py:1);detect_motion (app.py:9) {detect}",
    ]
    if other:
        lines.append(f"main (app.py:1);make_frames (app.py:20) {other}")
    return parse_folded("\n".join(lines) + "\n")


def _host(name: str, model: str, fps: float, arch: str = "x86_64", **kw: Any) -> HostView:
    return HostView(
        name=name, hw_model=model, arch=arch, status=kw.pop("status", "ok"),
        metrics={"workload.fps": fps, "pyspy.samples": 600.0}, **kw,
    )  # fmt: skip


def _fleet() -> tuple[list[HostView], dict[str, StackProfile]]:
    hosts = [
        _host("a-1", "model-a", 25.0),
        _host("a-2", "model-a", 25.5),
        _host("a-3", "model-a", 9.0),
        _host("a-4", "model-a", 24.8),
        _host("b-1", "model-b", 12.0, arch="aarch64"),
        _host("b-2", "model-b", 12.2, arch="aarch64"),
    ]
    profiles = {
        "a-1": _profile(450, 300, 50),
        "a-2": _profile(440, 310, 50),
        "a-3": _profile(150, 100, 350),  # starved: mostly still building frames
        "a-4": _profile(455, 295, 50),
        "b-1": _profile(300, 300),
        "b-2": _profile(310, 290),
    }
    return hosts, profiles


def test_the_report_groups_by_model_and_flags_the_starved_host_only() -> None:
    hosts, profiles = _fleet()
    report = build_report(META, hosts, profiles)
    assert report["compare"] == {"group_by": "hw_model", "threshold": 3.5}
    assert [g["hw_model"] for g in report["groups"]] == ["model-a", "model-b"]
    group_a = report["groups"][0]
    assert group_a["metrics"]["workload.fps"] == {"median": 24.9, "mad": 0.35, "n": 4}
    assert group_a["flamegraph"]["value"] == sum(
        profiles[h].total_samples for h in group_a["hosts"]
    )
    assert {o["host"] for o in report["outliers"]} == {"a-3"}
    kinds = {(o["kind"], o["metric"], o["function"]) for o in report["outliers"]}
    assert ("metric", "workload.fps", None) in kinds
    assert ("function_share", "function.self_pct", "make_frames") in kinds
    assert all(o["hw_model"] == "model-a" for o in report["outliers"])
    assert {h["name"]: h["group"] for h in report["hosts"]}["b-1"] == "model-b"
    json.dumps(report)  # JSON-ready


def test_a_threshold_above_every_score_flags_nothing() -> None:
    hosts, profiles = _fleet()
    assert build_report(META, hosts, profiles, threshold=1000.0)["outliers"] == []


def test_failed_hosts_are_grouped_but_not_compared() -> None:
    hosts, profiles = _fleet()
    hosts[2].status = "failed"
    report = build_report(META, hosts, profiles)
    assert report["outliers"] == []
    assert "a-3" in report["groups"][0]["hosts"]
    assert "a-3" not in report["function_matrix"]["hosts"]


def test_groups_by_arch_or_by_an_inventory_variable_with_unknown_for_the_rest() -> None:
    hosts, profiles = _fleet()
    by_arch = build_report(META, hosts, profiles, group_by="arch")
    assert [g["hw_model"] for g in by_arch["groups"]] == ["aarch64", "x86_64"]
    values = {"a-1": "lab", "a-2": "lab", "b-1": "field"}
    by_site = build_report(META, hosts, profiles, group_by="site", group_values=values)
    groups = {g["hw_model"]: g["hosts"] for g in by_site["groups"]}
    assert groups == {"field": ["b-1"], "lab": ["a-1", "a-2"], "unknown": ["a-3", "a-4", "b-2"]}
    assert by_site["compare"]["group_by"] == "site"


def test_group_stats_without_profiles_has_no_flamegraph() -> None:
    hosts, _ = _fleet()
    assert all(g["flamegraph"] is None for g in group_stats(hosts))


def test_the_function_matrix_orders_hosts_by_group_and_marks_deviant_cells() -> None:
    hosts, profiles = _fleet()
    matrix = build_report(META, hosts, profiles)["function_matrix"]
    assert matrix["hosts"] == ["a-1", "a-2", "a-3", "a-4", "b-1", "b-2"]
    functions = [f["function"] for f in matrix["functions"]]
    assert functions[:2] == ["make_frames", "decode_frame"]  # by their peak self %
    row = matrix["cells"][functions.index("make_frames")]
    assert row[:4] == [pytest.approx(6.25), pytest.approx(6.25), 58.33, pytest.approx(6.25)]
    assert row[4:] == [None, None]
    deviant = matrix["deviant"][functions.index("make_frames")]
    assert deviant == [False, False, True, False, False, False]
    assert len(matrix["cells"]) == len(matrix["deviant"]) == len(functions)


def test_the_matrix_keeps_the_hottest_functions() -> None:
    hosts, _ = _fleet()
    shares = {"a-1": {("f1", None): 50.0, ("f2", None): 10.0}, "b-1": {("f3", None): 30.0}}
    matrix = function_matrix(hosts, shares, limit=2)
    assert [f["function"] for f in matrix["functions"]] == ["f1", "f3"]
    assert matrix["cells"] == [[50.0, None], [None, 30.0]]


def test_diffs_compare_each_host_with_the_rest_of_its_group_and_the_groups() -> None:
    hosts, profiles = _fleet()
    diffs = build_report(META, hosts, profiles)["diffs"]
    assert sorted(diffs["host_vs_group"]) == ["a-1", "a-2", "a-3", "a-4", "b-1", "b-2"]
    starved = diffs["host_vs_group"]["a-3"]
    main = starved["children"][0]
    make = next(c for c in main["children"] if c["name"] == "make_frames")
    assert make["a"] == pytest.approx(350 / 600, abs=1e-4)
    assert make["b"] == pytest.approx(150 / 2400, abs=1e-4)
    assert [(d["a"], d["b"]) for d in diffs["group_vs_group"]] == [("model-a", "model-b")]


def test_host_diffs_are_capped_with_outliers_first() -> None:
    hosts, profiles = _fleet()
    diffs = fleet_diffs(hosts, profiles, max_hosts=1)
    # Without outliers, the host whose profile differs most from the rest of its group.
    assert list(diffs["host_vs_group"]) == ["a-3"]


def test_a_single_host_group_gets_no_host_diff() -> None:
    hosts, profiles = _fleet()
    values = {"a-1": "solo"}
    report = build_report(META, hosts, profiles, group_by="site", group_values=values)
    assert "a-1" not in report["diffs"]["host_vs_group"]


def test_many_groups_are_compared_pairwise_next_to_each_other() -> None:
    hosts = [_host(f"h{i}", f"m{i:02d}", 10.0) for i in range(12)]
    profiles = {h.name: _profile(10, 10) for h in hosts}
    pairs = fleet_diffs(hosts, profiles)["group_vs_group"]
    assert [(p["a"], p["b"]) for p in pairs] == [(f"m{i:02d}", f"m{i + 1:02d}") for i in range(10)]
    few = fleet_diffs(hosts[:4], profiles)["group_vs_group"]
    assert len(few) == 6


INVENTORY = """
all:
  vars:
    ansible_connection: local
  children:
    lab:
      vars: {site: lab-1}
      hosts:
        edge-1: {rack: 3}
        edge-2: {rack: 4, site: bench}
    field:
      hosts:
        edge-3: {}
"""


def test_group_by_an_inventory_variable_reads_host_and_group_vars(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    inventory = load_inventory(str(path), "all", group_by="site")
    assert inventory.group_values == {"edge-1": "lab-1", "edge-2": "bench"}
    assert group_values(inventory, "site") == {"edge-1": "lab-1", "edge-2": "bench"}
    # Loaded without it (as the command line does today): read again from the source.
    plain = load_inventory(str(path), "all")
    assert plain.group_values == {}
    assert group_values(plain, "rack") == {"edge-1": "3", "edge-2": "4"}
    assert group_values(plain, "hw_model") == {}
    assert host_var_values(str(path), ["edge-3"], "site") == {}
    assert host_var_values(str(tmp_path / "missing.yml"), ["edge-1"], "site") == {}
