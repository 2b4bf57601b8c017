"""The tracemalloc profiler: what it plans (launched Python programs only), and its parser
on summaries as the hook writes them and as a hostile device could."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleetprof_device.arguments import _profiler_errors
from fleetprof_device.contract import TRACEMALLOC_MAX_BYTES, TRACEMALLOC_SCHEMA
from orchestrator.analysis.directions import LOWER, SKIP, direction
from orchestrator.profilers import REGISTRY
from orchestrator.profilers import tracemalloc as tm
from orchestrator.stages.plan import make_plan
from tests.support.factories import campaign, host_facts

MIB = 1024 * 1024


def launching(command: list[str], **profilers: Any) -> Any:
    return campaign(
        target={"launch": {"command": command}},
        profilers=profilers or {"tracemalloc": {"interval": "2s", "frames": 5, "top": 20}},
    )


def test_it_is_registered_and_plans_a_builtin_the_runner_accepts():
    assert REGISTRY["tracemalloc"] is tm
    planned = tm.plan(launching(["python3", "app.py"]), host_facts(), None)
    assert (planned.status, planned.builtin, planned.outputs) == (
        "planned",
        "tracemalloc",
        ["tracemalloc.json"],
    )
    assert planned.options == {"interval_s": 2.0, "frames": 5, "top": 20}
    entry = dict(planned.__dict__)
    assert _profiler_errors(entry) == []


@pytest.mark.parametrize(
    "command",
    [
        ["python", "x.py"],
        ["/usr/bin/python3.11", "-u", "x.py"],
        ["/opt/venv/bin/python3", "-m", "app"],
        ["env", "A=1", "python3", "-X", "dev", "x.py"],
        ["python3", "-c", "import x", "-I"],
    ],
)
def test_python_commands_are_planned(command):
    assert tm.plan(launching(command), host_facts(), None).status == "planned"


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (["./app"], "'./app'"),
        (["bash", "-c", "python3 x.py"], "'bash'"),
        (["pythonic-tool"], "'pythonic-tool'"),
    ],
)
def test_a_command_that_is_not_python_is_skipped_with_the_reason(command, words):
    planned = tm.plan(launching(command), host_facts(), None)
    assert planned.status == "skipped"
    assert planned.reason == tm.NOT_PYTHON.format(repr(command[0]))
    assert words in str(planned.reason)


@pytest.mark.parametrize(("flags", "flag"), [(["-I"], "-I"), (["-uS"], "-S"), (["-E"], "-E")])
def test_python_options_that_keep_the_hook_out_skip_it(flags, flag):
    planned = tm.plan(launching(["python3", *flags, "x.py"]), host_facts(), None)
    assert (planned.status, planned.reason) == ("skipped", tm.HOOK_IGNORED.format(flag))


def test_attach_and_probe_targets_are_skipped():
    attach = campaign(profilers={"tracemalloc": {}})
    probe = campaign(target={"probe": ["cpu"]}, profilers={"tracemalloc": {}})
    for each in (attach, probe):
        planned = tm.plan(each, host_facts(), None)
        assert (planned.status, planned.reason) == ("skipped", tm.NOT_LAUNCHED)


def test_another_launcher_or_a_host_where_py_spy_must_launch_skips_it():
    nsys = launching(["python3", "x.py"], tracemalloc={}, nsys={})
    planned = tm.plan(nsys, host_facts(), None)
    assert planned.reason == tm.OTHER_LAUNCHER.format("nsys")
    both = launching(["python3", "x.py"], tracemalloc={}, **{"py-spy": {}})
    assert tm.plan(both, host_facts(), None).status == "planned"
    no_ptrace = host_facts(can_attach=False, attach_reason="ptrace_scope 2")
    assert tm.plan(both, no_ptrace, None).reason == tm.PYSPY_LAUNCHES


def test_cprofile_changes_the_command_but_the_hook_runs_inside_it_too():
    # cProfile runs inside the program the runner starts: tracemalloc's hook goes there
    # too, on a host that may attach or not.
    toolbox = launching(["python3", "x.py"], tracemalloc={}, cprofile={})
    no_ptrace = host_facts(can_attach=False, attach_reason="ptrace_scope 2")
    for facts in (host_facts(), no_ptrace):
        plan = make_plan(toolbox, facts, "r1", {}, 0.0)
        assert {p.name: p.status for p in plan.profilers} == {
            "tracemalloc": "planned",
            "cprofile": "planned",
        }
        assert plan.target.command[:3] == ["python3", "-m", "cProfile"]


def test_the_runner_starts_the_program_when_tracemalloc_runs_with_py_spy():
    plan = make_plan(
        launching(["python3", "x.py"], tracemalloc={}, memory={}), host_facts(), "r1", {}, 0.0
    )
    assert [p.status for p in plan.profilers] == ["planned", "planned"]
    assert plan.target.via_profiler is False


def summary(**overrides: Any) -> dict[str, Any]:
    site = {
        "file": "/srv/app/leak.py",
        "line": 12,
        "size": 3 * MIB,
        "count": 300,
        "traceback": [{"file": "/srv/app/leak.py", "line": 12}, {"file": "main.py", "line": 3}],
    }
    data: dict[str, Any] = {
        "schema": TRACEMALLOC_SCHEMA,
        "snapshots": 31,
        "first_at": 1000.0,
        "last_at": 1060.0,
        "final": True,
        "first_traced_bytes": 1 * MIB,
        "traced_current_bytes": 4 * MIB,
        "traced_peak_bytes": 5 * MIB,
        "tracemalloc_bytes": MIB // 2,
        "started_at": 999.0,
        "snapshot_seconds": 0.61,
        "top_by_size": [site],
        "top_by_count": [site],
        "growth": [
            {
                "file": "/srv/app/leak.py",
                "line": 12,
                "size_diff": 3 * MIB,
                "count_diff": 300,
                "size": 3 * MIB,
                "count": 300,
            }
        ],
        "errors": [],
        "cut": False,
    }
    data.update(overrides)
    return data


def parse(tmp_path: Path, content: Any, entry: dict[str, Any] | None = None) -> Any:
    text = content if isinstance(content, (str, bytes)) else json.dumps(content)
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(tmp_path / "tracemalloc.json", mode) as handle:
        handle.write(text)
    return tm.parse(tmp_path, entry or {}, launching(["python3", "x.py"]))


def test_a_summary_becomes_tables_and_metrics(tmp_path):
    result = parse(tmp_path, summary())
    assert result.metrics == {
        "tracemalloc.snapshots": 31.0,
        "tracemalloc.peak_mb": 5.0,
        "tracemalloc.current_mb": 4.0,
        "tracemalloc.tracer_mb": 0.5,
        "tracemalloc.snapshot_pct": 1.0,
        "tracemalloc.growth_mb": 3.0,
        "tracemalloc.growth_mb_per_min": 3.0,
    }
    assert result.data_quality == []
    top = result.tables["tracemalloc.by_size"][0]
    assert top["traceback"] == ["/srv/app/leak.py:12", "main.py:3"]
    assert (top["file"], top["line"], top["size_mb"], top["count"]) == (
        "/srv/app/leak.py",
        12,
        3.0,
        300,
    )
    growth = result.tables["tracemalloc.growth"][0]
    assert (growth["growth_mb"], growth["mb_per_min"]) == (3.0, 3.0)


def test_the_directions_of_its_metrics():
    assert direction("tracemalloc.growth_mb_per_min") == LOWER
    assert direction("tracemalloc.growth_mb") == LOWER
    assert direction("tracemalloc.snapshots") == SKIP
    assert direction("tracemalloc.snapshot_pct") == LOWER


def test_one_snapshot_a_cut_summary_a_killed_program_and_the_hooks_errors_are_noted(tmp_path):
    result = parse(
        tmp_path,
        summary(
            snapshots=1, last_at=1000.0, final=False, cut=True, errors=["start: boom"], interval_s=2
        ),
        {"stopped_at_device": 1010.0},
    )
    assert "tracemalloc.growth_mb" not in result.metrics
    notes = " | ".join(result.data_quality)
    for words in ("1 snapshot(s)", "reached its cap", "10.0 s before", "the hook said: start"):
        assert words in notes


def test_a_program_stopped_at_the_deadline_within_an_interval_needs_no_note(tmp_path):
    stopped = {"stopped_at_device": 1061.5}
    assert parse(tmp_path, summary(final=False, interval_s=2), stopped).data_quality == []


def test_no_summary_is_a_note_not_an_error(tmp_path):
    result = tm.parse(tmp_path, {}, launching(["python3", "x.py"]))
    assert result.metrics == {} and "wrote no snapshot" in result.data_quality[0]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not valid JSON"),
        ("[" * 200 + "]" * 200, "not valid JSON"),
        (json.dumps({"schema": "other/1"}), "is not a fleetprof.tracemalloc/1"),
        (json.dumps([1, 2]), "is not a fleetprof.tracemalloc/1"),
        (b"\xff\xfe" * 10, "not valid JSON"),
        ("x" * (TRACEMALLOC_MAX_BYTES + 1), "larger than its cap"),
    ],
)
def test_a_corrupt_or_oversized_summary_is_noted_and_not_read(tmp_path, content, words):
    result = parse(tmp_path, content)
    assert result.metrics == {} and result.tables == {}
    assert words in result.data_quality[0]


def test_hostile_rows_are_checked_and_escaped(tmp_path):
    evil = "<script>alert(1)</script>\x1b[2J" + "a" * 1000
    rows: list[Any] = [
        {"file": evil, "line": 1, "size": 10, "count": 1, "traceback": [{"file": 7}, "x"]},
        {"file": "f.py", "line": "12", "size": "big", "count": 1},
        {"file": "g.py", "line": 2**40, "size": float("nan"), "count": 1},
        "not a row",
        {"file": ["list"], "line": -1, "size": 1e300, "count": True},
    ]
    result = parse(
        tmp_path,
        summary(
            top_by_size=rows * 50,
            snapshots="many",
            traced_peak_bytes=-5,
            errors=["\x1b[31mred"] * 50,
        ),
    )
    table = result.tables["tracemalloc.by_size"]
    assert len(table) <= 100
    assert all(len(row["file"]) <= 300 and "\x1b" not in row["file"] for row in table)
    assert table[0]["traceback"] == ["?:?"]
    assert "tracemalloc.peak_mb" not in result.metrics
    assert result.metrics["tracemalloc.snapshots"] == 0.0
    assert sum("the hook said" in n for n in result.data_quality) == 10
    assert not any("\x1b" in n for n in result.data_quality)
