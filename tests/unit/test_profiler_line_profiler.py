"""line-profiler: planned only for a launched Python command (``python -m kernprof -l -p``),
one tracer per process, its campaign key checked, and its JSON (converted on the device by
line_profiler's own reader: the controller never unpickles) read with caps and checks. The
parse tests read real converter output of a real run (tests/fixtures/line-profiler)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fleetprof_device import lprof_json
from fleetprof_device.contract import DEVICE_PACKAGE_ARG
from orchestrator import profilers
from orchestrator.campaign.model import Campaign
from orchestrator.profilers import line_profiler as lp
from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown
from orchestrator.stages.plan import make_plan
from tests.support.factories import TOOL, host_facts
from tests.support.paths import FIXTURES
from tests.support.reports import PWN_SCRIPT, fleet_report

HERE = FIXTURES / "line-profiler"
STATS = "/home/ops/.fleetprof/runs/unit/r1/line_profiler.lprof"


def campaign(command: list[str] | None = None, profilers_: Any = None, **target: Any) -> Campaign:
    data: dict[str, Any] = {
        "name": "unit",
        "duration": "30s",
        "target": target or {"launch": {"command": command or ["python3", "app.py", "-n", "3"]}},
        "profilers": profilers_
        if profilers_ is not None
        else {"line-profiler": {"functions": ["app.work", "pkg.mod"]}},
    }
    return Campaign.from_mapping(data, source=Path("unit.yml"))


def session_plan(camp: Campaign, **facts: Any) -> Any:
    return make_plan(camp, host_facts(**facts), "r1", TOOL, 1000.0)


# --------------------------------------------------------------------------- plan


def test_a_python_command_runs_under_kernprof_auto_profile() -> None:
    plan = session_plan(campaign(["python3", "-u", "app.py", "-n", "3"]))
    (entry,) = plan.profilers
    assert entry.status == "planned", entry.reason
    assert plan.target.command == [
        *["python3", "-u", "-m", "kernprof", "-l", "-p", "app.work,pkg.mod", "-o", STATS],
        *["app.py", "-n", "3"],
    ]
    assert entry.options["module"] == "line_profiler" and entry.options["replaces"] == 2
    assert plan.target.interrupt_s == lp.INTERRUPT_S and entry.in_target
    (post,) = entry.post_argv
    assert post[0] == "python3" and DEVICE_PACKAGE_ARG in post
    assert post[-3:] == ["line_profiler.lprof", "line_profiler.json", "20"]
    assert profilers.REGISTRY["line-profiler"] is lp


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"functions": []},
        {"functions": "app.work"},
        {"functions": ["app.work,other"]},
        {"functions": ["has space"]},
        {"functions": ["x" * 201]},
        {"functions": ["ok", 3]},
        {"functions": ["ok"], "top": 0},
    ],
)
def test_bad_keys_are_refused_naming_line_profiler(bad) -> None:
    with pytest.raises(Exception, match="line-profiler"):
        campaign(profilers_={"line-profiler": bad})


def test_an_attach_target_and_a_non_python_command_are_skipped_with_the_reason() -> None:
    attach = session_plan(campaign(attach={"process": "app"})).profilers[0]
    assert attach.status == "skipped" and attach.reason == lp.NO_ATTACH
    other = session_plan(campaign(["./serve"])).profilers[0]
    assert other.reason == lp.NOT_PYTHON.replace("{}", "'./serve'")


@pytest.mark.parametrize(
    ("command", "ambiguous"),
    [
        (["python3", "app.py", "--out", "x"], "--out"),
        (["python3", "app.py", "--prof=1"], "--prof=1"),
        (["python3", "app.py", "--s"], "--s"),
        (["python3", "app.py", "--verbose", "--pre", "--unit", "5", "-o", "x"], None),
        (["python3", "-m", "app", "--out", "x"], None),
    ],
)
def test_a_script_argument_kernprof_would_take_skips_it_with_the_reason(command, ambiguous) -> None:
    (entry,) = session_plan(campaign(command)).profilers
    if ambiguous is None:
        assert entry.status == "planned", entry.reason
    else:
        assert entry.status == "skipped"
        assert entry.reason == lp.NO_AMBIGUOUS_ARGUMENT.replace("{}", repr(ambiguous))


def test_memray_and_line_profiler_do_not_run_together() -> None:
    both = {"memray": {}, "line-profiler": {"functions": ["app.work"]}}
    plan = session_plan(campaign(profilers_=both))
    by_name = {p.name: p for p in plan.profilers}
    assert by_name["memray"].status == "planned"
    assert by_name["line-profiler"].status == "skipped"
    assert "only one profiler can start the command and memray does" in str(
        by_name["line-profiler"].reason
    )
    assert plan.target.command[1:4] == ["-m", "memray", "run"]


# --------------------------------------------------------------------------- parse


def session(tmp_path: Path, document: Any = None) -> Path:
    if document is None:
        shutil.copy(HERE / "hot.line_profiler.json", tmp_path / lp.OUTPUT)
    else:
        text = document if isinstance(document, str) else json.dumps(document)
        (tmp_path / lp.OUTPUT).write_text(text)
    return tmp_path


def real() -> dict[str, Any]:
    return json.loads((HERE / "hot.line_profiler.json").read_text())


def test_real_output_gives_the_functions_and_their_lines(tmp_path) -> None:
    result = lp.parse(session(tmp_path), {"status": "ok"}, campaign())
    functions = result.tables[lp.FUNCTIONS_TABLE]
    assert [f["function"] for f in functions] == ["main", "work"]  # main's lines hold work()
    lines = [r for r in result.tables[lp.TABLE] if r["function"] == "work"]
    assert [r["line"] for r in lines] == [8, 9, 10, 11, 12]
    hot = next(r for r in lines if r["line"] == 11)
    assert hot["hits"] == 851335 and hot["pct"] == 97.81  # 425 calls x 2000 + 1335
    assert hot["text"] == "        total += sum(j * j for j in range(20))  # the hot line"
    assert hot["function_line"] == 7 and result.data_quality == []


def test_hostile_text_is_made_visible_and_capped_and_bad_rows_counted(tmp_path) -> None:
    document = real()
    work = document["functions"][1]
    work["function"] = "w\x1b[2Jork"
    work["lines"][0]["text"] = "\x07" + "y" * 1000
    work["lines"][1]["hits"] = -1
    work["lines"].append("nonsense")
    document["functions"].append({"function": "f", "time_s": "slow"})
    result = lp.parse(session(tmp_path, document), {"status": "ok"}, campaign())
    rows = [r for r in result.tables[lp.TABLE] if r["function"].startswith("w")]
    assert "\x1b" not in rows[0]["function"] and "\x07" not in rows[0]["text"]
    assert len(rows[0]["text"]) == lprof_json.MAX_LINE_CHARS
    assert len(rows) == 4  # 5 lines and "nonsense", one with hits -1
    assert "line-profiler: 3 malformed functions or lines in line_profiler.json" in (
        result.data_quality
    )


@pytest.mark.parametrize(
    ("document", "note"),
    [
        ("{", "is not valid JSON"),
        ({"schema": "x"}, "is not a fleetprof.line-profiler/1 document"),
        ({"schema": lprof_json.SCHEMA, "error": "o.lprof: bad pickle"}, "o.lprof: bad pickle"),
        ({"schema": lprof_json.SCHEMA, "functions": []}, "no profiled function ran"),
    ],
)
def test_bad_json_is_a_note_never_a_traceback(tmp_path, document, note) -> None:
    result = lp.parse(session(tmp_path, document), {"status": "ok"}, campaign())
    assert any(note in n for n in result.data_quality), result.data_quality


def test_the_report_shows_each_function_with_its_lines_escaped(tmp_path) -> None:
    document = real()
    document["functions"][1]["lines"][3]["text"] = PWN_SCRIPT
    result = lp.parse(session(tmp_path, document), {"status": "ok"}, campaign())
    report = fleet_report()
    report["hosts"][0].setdefault("tables", {}).update(result.tables)
    page = render_html(report)
    assert page.count("<h3>Line profile") == 1 and "<code>work</code>" in page
    assert "<script>document.title" not in page and "&lt;script&gt;" in page
    text = render_markdown(report)
    section = text.split("## line-profiler per host", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in section.splitlines() if "| work |" in line)
    assert "| 11 | 97.8 |" in row and "<script>" not in row
