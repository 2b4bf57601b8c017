"""cprofile: planned only for a launched Python command (the command runs under
``python -m cProfile``), one launcher per target, and its JSON (converted on the device)
read with caps and checks. The parse tests read real converter output of real cProfile
runs (tests/fixtures/cprofile, made by record.sh there; see tests/fixtures/SOURCES.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fleetprof_device.contract import DEVICE_PACKAGE_ARG
from orchestrator import profilers
from orchestrator.analysis.fleet import CPROFILE_EDGES, CPROFILE_TABLE, HostView, build_report
from orchestrator.campaign.model import Campaign
from orchestrator.profilers import cprofile
from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown
from orchestrator.stages.inspect import inspect_file
from orchestrator.stages.plan import make_plan
from tests.support.factories import TOOL, host_facts
from tests.support.paths import FIXTURES

HERE = FIXTURES / "cprofile"
WORKDIR = "/home/ops/.fleetprof/runs/unit/r1"


def campaign(command: list[str] | None = None, profilers_: Any = None, **target: Any) -> Campaign:
    data: dict[str, Any] = {
        "name": "unit",
        "duration": "30s",
        "target": target or {"launch": {"command": command or ["python3", "app.py", "-n", "3"]}},
        "profilers": profilers_ if profilers_ is not None else {"cprofile": {}},
    }
    return Campaign.from_mapping(data, source=Path("unit.yml"))


def session_plan(camp: Campaign, **facts: Any) -> Any:
    return make_plan(camp, host_facts(**facts), "r1", TOOL, 1000.0)


# --------------------------------------------------------------------------- plan


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["python3", "app.py", "-n", "3"], ["python3", "-m", "cProfile", "-o", "P", "app.py", "-n", "3"]),  # noqa: E501
        (["/usr/bin/python3.11", "-u", "-X", "dev", "-m", "pkg.main", "--x"],
         ["/usr/bin/python3.11", "-u", "-X", "dev", "-m", "cProfile", "-o", "P", "-m", "pkg.main", "--x"]),  # noqa: E501
        (["python", "-m", "http.server"], ["python", "-m", "cProfile", "-o", "P", "-m", "http.server"]),  # noqa: E501
    ],
)  # fmt: skip
def test_a_python_command_runs_under_cprofile_into_the_workdir(command, expected) -> None:
    plan = session_plan(campaign(command))
    entry = next(p for p in plan.profilers if p.name == "cprofile")
    assert entry.status == "planned", entry.reason
    assert entry.in_target and entry.argv == [] and entry.launch_argv == []
    prof = f"{WORKDIR}/cprofile.prof"
    assert plan.target.command == [prof if arg == "P" else arg for arg in expected]
    assert plan.target.interrupt_s == cprofile.INTERRUPT_S
    assert plan.target.via_profiler is False  # the runner launches it, and is its parent
    # The profile is converted by the interpreter that wrote it.
    (post,) = entry.post_argv
    assert post[0] == command[0] and DEVICE_PACKAGE_ARG in post
    assert post[-4:] == ["cprofile.prof", "cprofile.json", "30", "5"]
    assert set(entry.outputs) == {"cprofile.json", "cprofile.prof"}
    assert profilers.REGISTRY["cprofile"] is cprofile


def test_the_options_reach_the_converter() -> None:
    plan = session_plan(campaign(profilers_={"cprofile": {"top": 12, "edges": 0}}))
    assert plan.profilers[0].post_argv[0][-2:] == ["12", "0"]


@pytest.mark.parametrize(
    "bad", [{"top": 0}, {"top": 501}, {"edges": -1}, {"edges": 51}, {"sort": 1}]
)
def test_bad_options_are_refused(bad) -> None:
    with pytest.raises(Exception, match="cprofile"):
        campaign(profilers_={"cprofile": bad})


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (["./serve", "--port", "80"], "does not run a Python interpreter ('./serve')"),
        (["bash", "run.sh"], "does not run a Python interpreter ('bash')"),
        (["python3", "-c", "print(1)"], "runs no script or module (-c)"),
        (["python3", "-u"], "runs no script or module (nothing after the interpreter)"),
        (["python3", "-"], "runs no script or module (-)"),
    ],
)
def test_anything_but_a_python_script_or_module_is_skipped_with_the_reason(command, words) -> None:
    plan = session_plan(campaign(command))
    entry = plan.profilers[0]
    assert entry.status == "skipped" and words in str(entry.reason)
    assert plan.target.command == command and plan.target.interrupt_s is None


def test_an_attach_target_is_skipped() -> None:
    entry = session_plan(campaign(attach={"process": "app"})).profilers[0]
    assert entry.status == "skipped" and entry.reason == cprofile.NOT_LAUNCH


def test_py_spy_attaching_runs_alongside_and_samples_the_same_process() -> None:
    plan = session_plan(campaign(profilers_={"py-spy": {}, "cprofile": {}}))
    statuses = {p.name: p.status for p in plan.profilers}
    assert statuses == {"py-spy": "planned", "cprofile": "planned"}
    assert plan.target.command[1:3] == ["-m", "cProfile"] and not plan.target.via_profiler
    spy = next(p for p in plan.profilers if p.name == "py-spy")
    assert "{pid}" in spy.argv  # it attaches to the program the runner launched


def test_alone_on_a_host_that_cannot_attach_cprofile_runs_and_the_runner_launches() -> None:
    plan = session_plan(campaign(), can_attach=False, attach_reason="ptrace_scope=2")
    assert plan.profilers[0].status == "planned"
    assert plan.target.via_profiler is False and plan.target.command[1:3] == ["-m", "cProfile"]


def test_where_py_spy_must_launch_the_command_cprofile_is_skipped() -> None:
    plan = session_plan(
        campaign(profilers_={"py-spy": {}, "cprofile": {}}),
        can_attach=False,
        attach_reason="ptrace_scope=2",
    )
    entry = next(p for p in plan.profilers if p.name == "cprofile")
    assert entry.status == "skipped" and "it may not attach: ptrace_scope=2" in str(entry.reason)
    assert plan.target.command == ["python3", "app.py", "-n", "3"]


@pytest.mark.parametrize("launcher", ["nsys", "ncu"])
def test_with_a_profiler_that_starts_the_command_itself_cprofile_is_skipped(launcher) -> None:
    gpu = {"nvidia_driver": True, "gpu_counters_admin_only": False}
    tools = {launcher: f"/usr/bin/{launcher}"}
    for order in ({"cprofile": {}, launcher: {}}, {launcher: {}, "cprofile": {}}):
        plan = session_plan(campaign(profilers_=order), gpu=gpu, tools=tools, is_root=True)
        by_name = {p.name: p for p in plan.profilers}
        assert by_name[launcher].status == "planned", by_name[launcher].reason
        assert by_name["cprofile"].status == "skipped"
        assert f"only one profiler can start the command and {launcher} does" in str(
            by_name["cprofile"].reason
        )
        assert plan.target.via_profiler is True


# --------------------------------------------------------------------------- parse


def session(tmp_path: Path, fixture: str | None = None, text: str | None = None) -> Path:
    if fixture is not None:
        shutil.copy(HERE / fixture, tmp_path / cprofile.OUTPUT)
    if text is not None:
        (tmp_path / cprofile.OUTPUT).write_text(text)
    return tmp_path


@pytest.mark.parametrize("version", ["3.8", "3.11"])
def test_a_real_profile_interrupted_at_the_deadline_gives_functions_edges_and_metrics(
    tmp_path, version
) -> None:
    raw = json.loads((HERE / f"interrupted.py{version}.json").read_text())
    result = cprofile.parse(session(tmp_path, f"interrupted.py{version}.json"), {}, campaign())
    assert result.data_quality == []
    rows = result.tables[CPROFILE_TABLE]
    by_name = {r["function"]: r for r in rows}
    # Real numbers, straight from the converter's output.
    light = next(f for f in raw["functions"] if f["function"] == "light")
    assert by_name["light"]["calls"] == light["calls"] == by_name["light"]["ncalls"]
    assert by_name["light"]["tottime_s"] == round(light["tottime"], 6)
    assert by_name["light"]["tottime_pct"] == round(100 * light["tottime"] / raw["tottime"], 2)
    assert by_name["light"]["tottime_per_call_us"] == round(
        1e6 * light["tottime"] / light["calls"], 3
    )
    # heavy() and light() are called once per step(): the same count, interrupted or not.
    assert abs(by_name["heavy"]["calls"] - by_name["step"]["calls"]) <= 1
    assert rows == sorted(rows, key=lambda r: -r["tottime_s"])
    assert result.metrics["cprofile.tottime_s"] == round(raw["tottime"], 6)
    assert result.metrics["cprofile.calls"] == raw["calls"]
    assert result.metrics["cprofile.us_per_call"] == round(1e6 * raw["tottime"] / raw["calls"], 4)
    assert result.metrics["cprofile.top_function_pct"] == rows[0]["tottime_pct"]
    edges = result.tables[CPROFILE_EDGES]
    assert any(
        e["caller"].startswith("step (") and e["callee"].startswith("light (") for e in edges
    )


def test_a_finished_run_counts_every_call_exactly(tmp_path) -> None:
    result = cprofile.parse(session(tmp_path, "finished.py3.8.json"), {}, campaign())
    by_name = {r["function"]: r for r in result.tables[CPROFILE_TABLE]}
    assert by_name["heavy"]["calls"] == by_name["light"]["calls"] == by_name["step"]["calls"] == 200
    assert by_name["<genexpr>"]["calls"] == 200 * 30001  # range(30000) + the generator's end


def test_recursion_shows_total_over_primitive_calls(tmp_path) -> None:
    doc = {
        "schema": "fleetprof.cprofile/1", "python": "3.8.18", "tottime": 1.0, "calls": 10,
        "functions_total": 1, "edges": [],
        "functions": [{"file": "a.py", "line": 3, "function": "fib", "calls": 10,
                       "primitive_calls": 1, "tottime": 1.0, "cumtime": 1.0}],
    }  # fmt: skip
    result = cprofile.parse(session(tmp_path, text=json.dumps(doc)), {}, campaign())
    row = result.tables[CPROFILE_TABLE][0]
    assert row["ncalls"] == "10/1" and row["cumtime_per_call_us"] == 1e6


def test_control_characters_in_names_are_made_visible(tmp_path) -> None:
    doc = {
        "schema": "fleetprof.cprofile/1", "tottime": 1.0, "calls": 1, "edges": [],
        "functions": [{"file": "a\x1b[31m.py", "line": 1, "function": "f\rg", "calls": 1,
                       "primitive_calls": 1, "tottime": 1.0, "cumtime": 1.0}],
    }  # fmt: skip
    row = cprofile.parse(session(tmp_path, text=json.dumps(doc)), {}, campaign()).tables[
        CPROFILE_TABLE
    ][0]
    assert "\x1b" not in row["file"] and "\r" not in row["function"]


@pytest.mark.parametrize(
    ("text", "note"),
    [
        ('{"schema": "fleetprof.cprofile/1", "error": "cprofile.prof: truncated (marshal data ended early)"}',  # noqa: E501
         "could not be read on the device: cprofile.prof: truncated"),
        ("{not json", "cprofile.json is not valid JSON"),
        ('{"schema": "other/1"}', "is not a fleetprof.cprofile/1 document"),
        ("[" * 500 + "]" * 500, "cprofile.json is not valid JSON"),
        ('{"schema": "fleetprof.cprofile/1", "tottime": 1, "functions": [{"function": "f", "calls": -1}, 3]}',  # noqa: E501
         "2 malformed functions in cprofile.json"),
    ],
)  # fmt: skip
def test_bad_json_is_a_note_never_a_traceback(tmp_path, text, note) -> None:
    result = cprofile.parse(session(tmp_path, text=text), {"status": "partial"}, campaign())
    assert any(note in n for n in result.data_quality), result.data_quality


def test_an_oversized_json_is_not_read_and_a_missing_one_is_noted(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cprofile, "JSON_MAX_BYTES", 100)
    result = cprofile.parse(session(tmp_path, "finished.py3.11.json"), {}, campaign())
    assert result.tables == {} and "over 100 bytes" in result.data_quality[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cprofile.parse(empty, {"status": "skipped"}, campaign()).data_quality == []
    assert (
        "no cprofile.json came back"
        in cprofile.parse(empty, {"status": "failed"}, campaign()).data_quality[0]
    )


def test_too_many_rows_are_capped(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cprofile, "MAX_ROWS", 3)
    result = cprofile.parse(session(tmp_path, "finished.py3.11.json"), {}, campaign())
    assert len(result.tables[CPROFILE_TABLE]) == 3
    assert any("read 3" in n for n in result.data_quality)


def test_inspect_reads_the_json(tmp_path) -> None:
    data = inspect_file("cprofile", HERE / "finished.py3.11.json")
    assert data["profiler"] == "cprofile"
    assert {r["function"] for r in data["tables"][CPROFILE_TABLE]} >= {"heavy", "light", "step"}


def test_the_fleet_matrix_lays_functions_out_by_host(tmp_path) -> None:
    hosts = []
    for name, fixture in (("a", "finished.py3.8.json"), ("b", "finished.py3.11.json")):
        result = cprofile.parse(
            session(tmp_path / name if (tmp_path / name).mkdir() is None else tmp_path, fixture),
            {},
            campaign(),
        )
        hosts.append(
            HostView(name=name, hw_model="box", arch="x86_64", status="ok", tables=result.tables)
        )
    meta = {"campaign": "unit", "run_id": "r1", "started_at": "now", "duration_s": 1.0}
    report = build_report(meta, hosts)
    matrix = report["cprofile_function_matrix"]
    assert matrix["hosts"] == ["a", "b"]
    names = [f["function"] for f in matrix["functions"]]
    light = names.index("light")
    assert all(cell is not None and cell > 0 for cell in matrix["cells"][light])
    html = render_html(report)
    assert "cProfile: own time across hosts" in html and 'id="cprofile-matrix"' in html
    assert "cProfile: functions by own time" in html and "callers and callees" in html
    summary = render_markdown(report)
    assert "## cProfile: own time per host" in summary and "| light |" in summary
    assert "cprofile_function_matrix" not in build_report(
        meta, [HostView("c", "box", "x86_64", "ok")]
    )


@pytest.mark.parametrize(
    "program",
    ["python", "python3", "/usr/bin/python3.11", "python3.8m", "python3.11d", "python3.11-dbg"],
)
def test_cprofile_and_tracemalloc_know_a_python_command_by_one_rule(program: str) -> None:
    from orchestrator.profilers import tracemalloc

    assert not isinstance(cprofile.split_command([program, "app.py"]), str)
    assert tracemalloc.python_argv([program, "app.py"])[0] == program


@pytest.mark.parametrize("program", ["pythonista", "ipython", "./serve", "python3-config"])
def test_neither_takes_a_program_that_only_looks_like_python(program: str) -> None:
    from orchestrator.profilers import tracemalloc

    assert isinstance(cprofile.split_command([program, "app.py"]), str)
    assert tracemalloc.python_argv([program, "app.py"]) == (None, [])
