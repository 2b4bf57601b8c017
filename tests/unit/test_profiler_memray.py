"""memray: planned only for a launched Python command (``python -m memray run``), one
tracer per process, and its JSON (converted on the device by memray's own reader) read
with caps and checks. The parse tests read real converter output of a real memray run
(tests/fixtures/memray, see tests/fixtures/SOURCES.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fleetprof_device import memray_json
from fleetprof_device.contract import DEVICE_PACKAGE_ARG
from orchestrator import profilers
from orchestrator.campaign.model import Campaign
from orchestrator.profilers import memray
from orchestrator.stages.inspect import inspect_file
from orchestrator.stages.plan import make_plan
from tests.support.factories import TOOL, host_facts
from tests.support.paths import FIXTURES

HERE = FIXTURES / "memray"
WORKDIR = "/home/ops/.fleetprof/runs/unit/r1"
MIB = 1024 * 1024


def campaign(command: list[str] | None = None, profilers_: Any = None, **target: Any) -> Campaign:
    data: dict[str, Any] = {
        "name": "unit",
        "duration": "30s",
        "target": target or {"launch": {"command": command or ["python3", "app.py", "-n", "3"]}},
        "profilers": profilers_ if profilers_ is not None else {"memray": {}},
    }
    return Campaign.from_mapping(data, source=Path("unit.yml"))


def session_plan(camp: Campaign, **facts: Any) -> Any:
    return make_plan(camp, host_facts(**facts), "r1", TOOL, 1000.0)


# --------------------------------------------------------------------------- plan

CAPTURE = f"{WORKDIR}/memray.bin"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["python3", "app.py", "-n", "3"], ["python3", "-m", "memray", "run", "-q", "-o", CAPTURE, "app.py", "-n", "3"]),  # noqa: E501
        (["/usr/bin/python3.11", "-u", "-m", "pkg.main", "--x"],
         ["/usr/bin/python3.11", "-u", "-m", "memray", "run", "-q", "-o", CAPTURE, "-m", "pkg.main", "--x"]),  # noqa: E501
    ],
)  # fmt: skip
def test_a_python_command_runs_under_memray_into_the_workdir(command, expected) -> None:
    plan = session_plan(campaign(command))
    (entry,) = plan.profilers
    assert entry.status == "planned", entry.reason
    assert entry.in_target and entry.argv == [] and entry.launch_argv == []
    assert plan.target.command == expected
    assert plan.target.interrupt_s == memray.INTERRUPT_S and plan.target.via_profiler is False
    # The device checks the program's Python imports memray, and can unwrap the command.
    options = entry.options
    assert (
        options["module"] == "memray"
        and options["replaces"] == len(command) - len(expected) + options["wrap"]
    )
    assert expected[: options["replaces"]] + expected[options["wrap"] :] == command
    (post,) = entry.post_argv
    assert post[0] == command[0] and DEVICE_PACKAGE_ARG in post
    assert post[-3:] == ["memray.bin", "memray.json", "20"]
    assert profilers.REGISTRY["memray"] is memray


def test_the_options_become_memray_flags_and_the_converter_top() -> None:
    chosen = campaign(
        profilers_={
            "memray": {"native": True, "follow_fork": True, "trace_python_allocators": True}
            | {"aggregate": True, "top": 7}
        }
    )
    plan = session_plan(chosen)
    flags = ["--native", "--follow-fork", "--trace-python-allocators", "--aggregate"]
    head = ["python3", "-m", "memray", "run", "-q", "-o", CAPTURE]
    assert plan.target.command == [*head, *flags, "app.py", "-n", "3"]
    assert plan.profilers[0].post_argv[0][-1] == "7"


@pytest.mark.parametrize(
    "bad", [{"top": 0}, {"top": 101}, {"native": "yes"}, {"aggregate": 1}, {"attach": True}]
)
def test_bad_options_are_refused_naming_memray(bad) -> None:
    with pytest.raises(Exception, match="memray"):
        campaign(profilers_={"memray": bad})


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (["./serve"], memray.NOT_PYTHON.replace("{}", "'./serve'")),
        (["python3", "-c", "print(1)"], memray.NO_SCRIPT),
        (["python3", "-"], memray.NO_SCRIPT),
    ],
)
def test_anything_but_a_python_script_or_module_is_skipped_with_the_reason(command, reason) -> None:
    plan = session_plan(campaign(command))
    assert plan.profilers[0].status == "skipped" and plan.profilers[0].reason == reason
    assert plan.target.command == command and plan.target.interrupt_s is None


@pytest.mark.parametrize(
    ("command", "ambiguous"),
    [
        (["python3", "app.py", "--n"], "--n"),
        (["python3", "app.py", "--f=1"], "--f=1"),
        (["python3", "app.py", "--out", "x", "--native", "-q", "--live"], None),
        (["python3", "-m", "app", "--n"], None),
    ],
)
def test_a_script_argument_memray_would_take_skips_it_with_the_reason(command, ambiguous) -> None:
    (entry,) = session_plan(campaign(command)).profilers
    if ambiguous is None:
        assert entry.status == "planned", entry.reason
    else:
        assert entry.status == "skipped"
        assert entry.reason == memray.NO_AMBIGUOUS_ARGUMENT.replace("{}", repr(ambiguous))


def test_an_attach_target_is_skipped_at_plan_time_memray_attach_is_not_supported() -> None:
    entry = session_plan(campaign(attach={"process": "app"})).profilers[0]
    assert entry.status == "skipped" and entry.reason == memray.NO_ATTACH
    assert "gdb or lldb" in memray.NO_ATTACH


@pytest.mark.parametrize(
    ("other", "words"),
    [("cprofile", "cprofile does"), ("tracemalloc", "tracemalloc traces inside")],
)
def test_one_tracer_per_process(other, words) -> None:
    plan = session_plan(campaign(profilers_={other: {}, "memray": {}}))
    by_name = {p.name: p for p in plan.profilers}
    assert by_name[other].status == "planned", by_name[other].reason
    assert by_name["memray"].status == "skipped" and words in str(by_name["memray"].reason)
    assert "memray" not in plan.target.command


def test_py_spy_attaching_runs_alongside() -> None:
    plan = session_plan(campaign(profilers_={"py-spy": {}, "memray": {}}))
    assert {p.name: p.status for p in plan.profilers} == {"py-spy": "planned", "memray": "planned"}
    assert plan.target.command[1:4] == ["-m", "memray", "run"]
    skipped = session_plan(
        campaign(profilers_={"py-spy": {}, "memray": {}}),
        can_attach=False,
        attach_reason="ptrace_scope=2",
    )
    entry = next(p for p in skipped.profilers if p.name == "memray")
    assert entry.status == "skipped" and "it may not attach: ptrace_scope=2" in str(entry.reason)


# --------------------------------------------------------------------------- parse


def session(tmp_path: Path, document: Any = None) -> Path:
    if document is None:
        shutil.copy(HERE / "holder.memray.json", tmp_path / memray.OUTPUT)
    else:
        text = document if isinstance(document, str) else json.dumps(document)
        (tmp_path / memray.OUTPUT).write_text(text)
    return tmp_path


def real() -> dict[str, Any]:
    return json.loads((HERE / "holder.memray.json").read_text())


def test_real_output_gives_the_four_tables_and_the_metrics(tmp_path) -> None:
    result = memray.parse(session(tmp_path), {"status": "ok"}, campaign())
    truth = 24 * MIB  # holder.py holds 24 bytearrays of 1 MiB at line 7
    for table in ("memray.peak", "memray.leaked", "memray.by_size"):
        first = result.tables[table][0]
        assert (Path(first["file"]).name, first["line"], first["function"]) == (
            "holder.py",
            7,
            "hold",
        )
        assert abs(first["size"] - truth) < 0.01 * truth and first["size_mb"] == 24.0
    peak = result.tables["memray.peak"][0]
    assert peak["count"] == 24 and peak["traceback"][0].startswith("hold ")
    assert not any("runpy" in frame for frame in peak["traceback"])
    assert result.tables["memray.by_count"][0]["count"] == 300  # churn(): 300 buffers
    saved = real()
    assert result.metrics == {
        "memray.peak_mb": round(saved["metadata"]["peak_memory"] / MIB, 3),
        "memray.total_allocated_mb": round(saved["total_bytes"] / MIB, 3),
        "memray.allocations": float(saved["total_allocations"]),
        "memray.leaked_mb": round(saved["leaked_bytes"] / MIB, 3),
        "memray.leaked_allocations": float(saved["leaked_allocations"]),
    }
    # 24 MiB held (and a little of the interpreter's); 15 MB more churned and freed.
    assert 24.0 <= result.metrics["memray.peak_mb"] < 24.5
    assert 24.0 + 14.3 <= result.metrics["memray.total_allocated_mb"] < 24.0 + 14.3 + 1.0
    assert result.data_quality == []


def test_control_characters_are_made_visible_and_long_names_cut(tmp_path) -> None:
    document = real()
    row = document["peak_sites"][0]
    row["function"] = "evil\x1b[31m\nname"
    row["file"] = "x" * 5000 + "/app.py"
    row["stack"] = ["frame\x07"] * 50
    result = memray.parse(session(tmp_path, document), {"status": "ok"}, campaign())
    first = result.tables["memray.peak"][0]
    assert "\x1b" not in first["function"] and first["function"].startswith("evil\u241b[31m")
    assert len(first["file"]) <= 310 and first["file"].endswith("/app.py")
    assert len(first["traceback"]) == memray_json.MAX_STACK
    assert "\x07" not in first["traceback"][0]


@pytest.mark.parametrize(
    ("document", "note"),
    [
        ("{not json", "is not valid JSON"),
        ({"schema": "other/1"}, "is not a fleetprof.memray/1 document"),
        ([1, 2], "is not a fleetprof.memray/1 document"),
        (
            {"schema": memray_json.SCHEMA, "error": "memray.bin: boom"},
            "could not be read on the device: memray.bin: boom",
        ),
    ],
)
def test_bad_json_is_a_note_never_a_traceback(tmp_path, document, note) -> None:
    result = memray.parse(session(tmp_path, document), {"status": "ok"}, campaign())
    assert result.metrics == {} and result.tables == {}
    assert any(note in n for n in result.data_quality), result.data_quality


def test_malformed_rows_are_dropped_and_counted_and_an_oversized_json_not_read(
    tmp_path, monkeypatch
) -> None:
    document = real()
    document["leaked_sites"] = [{"file": 1}, "row", *document["leaked_sites"][:2]]
    document["total_bytes"] = -5
    result = memray.parse(session(tmp_path, document), {"status": "ok"}, campaign())
    assert len(result.tables["memray.leaked"]) == 2
    assert "memray: 2 malformed rows in leaked_sites" in result.data_quality
    assert "memray.total_allocated_mb" not in result.metrics
    monkeypatch.setattr(memray, "JSON_MAX_BYTES", 100)
    result = memray.parse(session(tmp_path), {"status": "ok"}, campaign())
    assert result.tables == {} and "over 100 bytes: not read" in result.data_quality[0]


def test_a_missing_json_is_noted_unless_memray_was_skipped(tmp_path) -> None:
    assert memray.parse(tmp_path, {"status": "skipped"}, campaign()).data_quality == []
    notes = memray.parse(tmp_path, {"status": "failed"}, campaign()).data_quality
    assert "no memray.json came back" in notes[0]


# --------------------------------------------------------------------------- converter


def test_the_device_converter_reads_the_real_capture_into_the_same_document(tmp_path) -> None:
    pytest.importorskip("memray")
    document, error = memray_json.convert(str(HERE / "holder.memray.bin"), 10)
    assert error is None, error
    saved = real()
    for key in ("peak_bytes", "leaked_bytes", "leaked_allocations", "total_bytes"):
        assert document[key] == saved[key], key
    assert document["peak_sites"][0]["size"] == saved["peak_sites"][0]["size"]


def test_a_damaged_capture_is_an_error_document(tmp_path) -> None:
    pytest.importorskip("memray")
    cut = tmp_path / "memray.bin"
    cut.write_bytes((HERE / "holder.memray.bin").read_bytes()[:100])
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    for path, words in ((cut, "memray.bin: "), (empty, "the capture is empty")):
        output = tmp_path / "out.json"
        assert memray_json.main([str(path), str(output), "5"]) == 1
        document = json.loads(output.read_text())
        assert document["schema"] == memray_json.SCHEMA and words in document["error"]


def test_the_converter_runs_with_the_programs_environment_variables() -> None:
    chosen = Campaign.from_mapping(
        {
            "name": "unit",
            "duration": "30s",
            "target": {
                "launch": {"command": ["python3", "app.py"], "env": {"PYTHONPATH": "/opt/lib"}}
            },
            "profilers": {"memray": {}},
        },
        source=Path("unit.yml"),
    )
    (post,) = session_plan(chosen).profilers[0].post_argv
    assert post[:3] == ["env", "PYTHONPATH=/opt/lib", "python3"]


def test_inspect_reads_the_json() -> None:
    found = inspect_file("memray", HERE / "holder.memray.json")
    assert found["metrics"]["memray.peak_mb"] > 24.0
    assert found["tables"]["memray.peak"][0]["function"] == "hold"
