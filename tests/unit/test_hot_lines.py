"""py-spy's hot lines: self samples by line from known stacks (orchestrator/analysis/lines.py),
the device's source text read back as untrusted data (profilers/pyspy.py), and the fleet's
per-group hot lines in report.json."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from fleetprof_device.contract import (
    HOT_FUNCTIONS,
    HOT_LINES,
    SOURCE_LINE_MAX_CHARS,
    SOURCE_LINES_FILE,
    SOURCE_LINES_OPTION,
    SOURCE_LINES_SCHEMA,
)
from orchestrator.analysis.fleet import HostView, build_report
from orchestrator.analysis.lines import add_counts, hot_lines, line_counts, source_texts
from orchestrator.analysis.stacks import StackProfile, parse_folded
from orchestrator.campaign.model import Campaign
from orchestrator.profilers import pyspy
from orchestrator.profilers.base import ToolChoice
from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown
from orchestrator.stages.parse import parse_host
from orchestrator.stages.plan import make_plan
from orchestrator.stages.rundir import RunDir
from tests.support.factories import host_facts
from tests.support.reports import (
    PWN_IMG,
    PWN_MD,
    PWN_SCRIPT,
    cells,
    fleet_report,
    start_tags,
    unescape,
)

META = {"campaign": "c", "run_id": "r", "started_at": "t", "duration_s": 5.0, "mode": "launch"}

FOLDED = """\
thread (1): MainThread;main (app.py:30);decode (codec.py:12) 300
thread (1): MainThread;main (app.py:30);decode (codec.py:14) 100
thread (1);main (app.py:30);decode (codec.py:12) 20
thread (2): worker;run (worker.py:8);decode (codec.py:13) 80
thread (1): MainThread;main (app.py:31);resize (img.py:5) 150
thread (1): MainThread;main (app.py:31);resize (img.py:6) 150
thread (1): MainThread;main (app.py:32) 50
thread (1): MainThread;main (app.py:33);PyEval_EvalFrame (libpython3.11.so) 40
thread (1): MainThread 10
"""


def test_known_stacks_give_exact_hot_lines_by_function_and_line() -> None:
    profile = parse_folded(FOLDED)
    assert profile.total_samples == 900
    found = hot_lines(line_counts(profile), profile.total_samples)
    assert [(f.function, f.file, f.self_samples, f.self_pct) for f in found] == [
        ("decode", "codec.py", 500, 55.56),
        ("resize", "img.py", 300, 33.33),
        ("main", "app.py", 50, 5.56),
    ]  # the native frame has no line: not a hot function
    decode = found[0]
    assert [(n.line, n.self_samples, n.self_pct, n.function_pct) for n in decode.lines] == [
        (12, 320, 35.56, 64.0),
        (14, 100, 11.11, 20.0),
        (13, 80, 8.89, 16.0),
    ]
    # Equal lines: the lower number first, as the device orders them.
    assert [n.line for n in found[1].lines] == [5, 6]
    assert all(n.text is None for f in found for n in f.lines)


def test_hot_lines_are_capped_in_functions_and_lines() -> None:
    stacks = [
        f"main (app.py:1);f{i:02d} (mod.py:{line}) {100 - i}"
        for i in range(30)
        for line in range(1, 12)
    ]
    profile = parse_folded("\n".join(stacks))
    found = hot_lines(line_counts(profile), profile.total_samples)
    assert len(found) == HOT_FUNCTIONS and [f.function for f in found[:2]] == ["f00", "f01"]
    assert all(len(f.lines) == HOT_LINES for f in found)
    assert [n.line for n in found[0].lines] == [1, 2, 3, 4, 5]
    two = hot_lines(line_counts(profile), profile.total_samples, functions=2, lines=1)
    assert two[1].to_dict() == {
        "function": "f01", "file": "mod.py", "self_samples": 1089, "self_pct": 3.86,
        "lines": [{"line": 1, "self_samples": 99, "self_pct": 0.35, "function_pct": 9.09,
                   "text": None}],
    }  # fmt: skip


def test_the_texts_the_device_read_go_with_their_lines() -> None:
    profile = parse_folded(FOLDED)
    texts = {"codec.py": {12: "y = table[x]", 13: "z = y * y"}}
    decode = hot_lines(line_counts(profile), profile.total_samples, texts)[0]
    assert [(n.line, n.text) for n in decode.lines] == [
        (12, "y = table[x]"),
        (14, None),
        (13, "z = y * y"),
    ]


def _document(**files: Any) -> dict[str, Any]:
    return {"schema": SOURCE_LINES_SCHEMA, "files": files, "missing": []}


def test_source_texts_keep_well_formed_entries_only() -> None:
    texts, dropped = source_texts(
        _document(
            **{
                "codec.py": {"path": "/srv/codec.py", "lines": {"12": "y = table[x]\t# hot\n"}},
                "bad-lines.py": {"lines": ["12", "x"]},
                "bad-entry.py": "x",
                "numbers.py": {"lines": {"0": "a", "-3": "b", "x": "c", "12": 5, "1e3": "d"}},
                "<b>evil</b>.py": {"lines": {"1": "<script>alert(1)</script>\x1b[31m"}},
                "long.py": {"lines": {"7": "x" * 10_000}},
            }
        )
    )
    assert texts["codec.py"] == {12: "y = table[x] # hot "}  # one line of a table
    assert "bad-lines.py" not in texts and "bad-entry.py" not in texts
    assert "numbers.py" not in texts
    assert dropped == 2 + 5
    evil = texts["<b>evil</b>.py"][1]
    assert "\x1b" not in evil and evil.startswith("<script>")  # escaped where shown
    assert len(texts["long.py"][7]) == SOURCE_LINE_MAX_CHARS
    assert source_texts([1, 2]) == ({}, 1)
    assert source_texts({"schema": "other/1", "files": {}}) == ({}, 1)
    assert source_texts({"schema": SOURCE_LINES_SCHEMA, "files": []}) == ({}, 1)


def _campaign(**pyspy_options: Any) -> Campaign:
    return Campaign.from_mapping(
        {
            "name": "c",
            "duration": 5,
            "target": {"attach": {"pid": 1}},
            "profilers": {"py-spy": pyspy_options},
        }
    )


def _session(tmp_path: Path, lines: str | bytes | None) -> Path:
    session = tmp_path / "session"
    session.mkdir()
    (session / pyspy.OUTPUT).write_text(FOLDED)
    if isinstance(lines, str):
        (session / SOURCE_LINES_FILE).write_text(lines)
    elif isinstance(lines, bytes):
        (session / SOURCE_LINES_FILE).write_bytes(lines)
    return session


def test_the_py_spy_parse_reports_hot_lines_with_the_devices_text(tmp_path: Path) -> None:
    document = _document(**{"codec.py": {"path": "/srv/codec.py", "lines": {"12": "y = t[x]"}}})
    result = pyspy.parse(_session(tmp_path, json.dumps(document)), {}, _campaign())
    assert result.hot_lines[0]["function"] == "decode"
    assert result.hot_lines[0]["lines"][0] == {
        "line": 12, "self_samples": 320, "self_pct": 35.56, "function_pct": 64.0,
        "text": "y = t[x]",
    }  # fmt: skip
    assert result.data_quality == []


@pytest.mark.parametrize(
    ("content", "note"),
    [
        (None, None),  # an older device, or none read: the lines without text
        ("{not json", "left out (no source text)"),
        (b"\xff\xfe" * 10, "left out (no source text)"),
        ("[" * 5000 + "]" * 5000, "left out (no source text)"),
        ("x" * (pyspy.MAX_SOURCE_LINES_BYTES + 1), "larger than"),
        (json.dumps({"schema": SOURCE_LINES_SCHEMA, "files": {"a.py": 3}}), "1 malformed"),
    ],
)
def test_a_bad_source_lines_file_costs_the_text_only(
    tmp_path: Path, content: str | bytes | None, note: str | None
) -> None:
    result = pyspy.parse(_session(tmp_path, content), {}, _campaign())
    assert [f["function"] for f in result.hot_lines] == ["decode", "resize", "main"]
    assert all(line["text"] is None for f in result.hot_lines for line in f["lines"])
    notes = [q for q in result.data_quality if SOURCE_LINES_FILE in q]
    assert (notes == []) if note is None else (len(notes) == 1 and note in notes[0]), notes
    assert result.metrics["pyspy.samples"] == 900.0


def test_the_plan_asks_the_runner_for_the_source_lines() -> None:
    tool = ToolChoice("0.4.3", "/tmp/py-spy", "0" * 64, None)
    planned = pyspy.plan(_campaign(), host_facts(), tool)
    assert planned.options == {SOURCE_LINES_OPTION: True}
    # A campaign can keep the code off the controller: hot lines by number only.
    private = pyspy.plan(_campaign(source_lines=False), host_facts(), tool)
    assert private.options == {SOURCE_LINES_OPTION: False}


def test_groups_merge_their_hosts_lines_and_take_the_hosts_text() -> None:
    def decode(*lines: tuple[int, int]) -> str:
        return "".join(f"main (app.py:1);decode (codec.py:{n}) {count}\n" for n, count in lines)

    profiles = {
        "a-1": parse_folded(decode((12, 60), (14, 40))),
        "a-2": parse_folded(decode((14, 90), (12, 10))),
        "b-1": parse_folded(decode((12, 10))),
    }
    hosts = [
        HostView(name="a-1", hw_model="model-a", arch="x86_64", status="ok"),
        HostView(name="a-2", hw_model="model-a", arch="x86_64", status="ok"),
        HostView(name="b-1", hw_model="model-b", arch="x86_64", status="ok"),
    ]
    hosts[0].hot_lines = [
        {"function": "decode", "file": "codec.py", "lines": [{"line": 12, "text": "y = t[x]"}]}
    ]
    hosts[1].hot_lines = [
        {"function": "decode", "file": "codec.py", "lines": [{"line": 14, "text": "z = y * y"}]}
    ]
    report = build_report(dict(META), hosts, profiles)
    group = report["groups"][0]
    assert group["hw_model"] == "model-a"
    assert group["hot_lines"] == [
        {
            "function": "decode", "file": "codec.py", "self_samples": 200, "self_pct": 100.0,
            "lines": [
                {"line": 14, "self_samples": 130, "self_pct": 65.0, "function_pct": 65.0,
                 "text": "z = y * y"},
                {"line": 12, "self_samples": 70, "self_pct": 35.0, "function_pct": 35.0,
                 "text": "y = t[x]"},
            ],
        }
    ]  # fmt: skip
    assert report["groups"][1]["hot_lines"][0]["lines"][0]["text"] is None  # no host read it
    assert report["hosts"][0]["hot_lines"] == hosts[0].hot_lines


def _random_fleet(seed: int) -> tuple[list[HostView], dict[str, StackProfile]]:
    """Hosts of three models, each with random stacks over shared functions and lines
    (native leaves without a line among them), and one host with no samples."""
    rng = random.Random(seed)
    functions = [(f"f{i}", f"mod{i % 4}.py") for i in range(12)]
    hosts, profiles = [], {}
    for index in range(9):
        name = f"h-{index}"
        stacks = []
        for _ in range(rng.randint(5, 40)):
            frames = ["main (app.py:1)"]
            for function, file in rng.sample(functions, rng.randint(1, 4)):
                frames.append(f"{function} ({file}:{rng.randint(1, 6)})")
            if rng.random() < 0.1:
                frames.append("memcpy (libc.so.6)")
            stacks.append(f"{';'.join(frames)} {rng.randint(1, 500)}\n")
        profiles[name] = parse_folded("".join(stacks) if index != 8 else "")
        host = HostView(name=name, hw_model=f"model-{index % 3}", arch="x86_64", status="ok")
        host.top_functions = [{"function": "main", "self_pct": 1.0}]  # it has data
        hosts.append(host)
    return hosts, profiles


def _old_group_hot_lines(members: list[StackProfile]) -> list[dict[str, Any]]:
    """The group view as it was: every host's lines counted again from its stacks."""
    counts: dict[Any, dict[int, int]] = {}
    for profile in members:
        add_counts(counts, line_counts(profile))
    total = sum(profile.total_samples for profile in members)
    return [f.to_dict() for f in hot_lines(counts, total)] if total > 0 else []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_group_view_sums_the_hosts_parsed_counts_as_it_counted_them_before(
    seed: int,
) -> None:
    """The group's hot lines from the counts each host's parse made equal the old
    computation (each host's stacks counted again), and report.json is the same with and
    without the counts on the hosts (they are not part of it)."""
    hosts, profiles = _random_fleet(seed)
    without = build_report(dict(META), hosts, profiles)
    hosts, profiles = _random_fleet(seed)
    for host in hosts:
        host.line_counts = line_counts(profiles[host.name])
    counted = build_report(dict(META), hosts, profiles)

    assert counted == without
    assert json.dumps(counted, sort_keys=True) == json.dumps(without, sort_keys=True)
    for group in counted["groups"]:
        members = [profiles[name] for name in group["hosts"] if profiles[name].total_samples]
        assert group["hot_lines"] == _old_group_hot_lines(members)
    assert any(group["hot_lines"] for group in counted["groups"])
    assert all("line_counts" not in host for host in counted["hosts"])
    # The group view takes the hosts' counts, not their stacks counted again.
    hosts, profiles = _random_fleet(seed)
    for host in hosts:
        host.line_counts = {}
    assert all(
        group["hot_lines"] == [] for group in build_report(dict(META), hosts, profiles)["groups"]
    )


def test_the_py_spy_parse_keeps_the_line_counts_its_hot_lines_came_from(tmp_path: Path) -> None:
    result = pyspy.parse(_session(tmp_path, None), {}, _campaign())
    assert result.stacks is not None
    assert result.line_counts == line_counts(result.stacks)
    assert result.line_counts[("decode", "codec.py")] == {12: 320, 14: 100, 13: 80}


def test_report_html_has_a_hot_lines_table_under_each_host_and_group_escaped() -> None:
    report = fleet_report()
    page = render_html(report)
    tables = [attrs for tag, attrs in start_tags(page) if tag == "table"]
    hot = [a for a in tables if ("class", "top hot-lines") in a]
    assert len(hot) == len(report["hosts"]) + len(report["groups"])
    for raw in (PWN_IMG, PWN_SCRIPT):
        assert raw not in page
    section = page[page.index('<table class="top hot-lines">') :]
    section = section[: section.index("</table>")]
    assert (
        "<code>&#34;&gt;&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;</code>"
        in section
    )
    assert "video_pipeline.py:20" in section and "decode_frame" in section
    assert page.count("<script") == 1  # the page's own, under its CSP


def test_summary_md_has_the_groups_hot_lines_escaped() -> None:
    summary = render_markdown(fleet_report())
    section = summary[summary.index("## Hot lines per group") :]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    header, body = rows[0], rows[1:]
    assert cells(header)[2].strip() == "file:line"
    assert all(len(cells(row)) == 6 for row in body)
    sources = [unescape(cells(row)[5].strip()) for row in body]
    assert PWN_MD in sources and PWN_SCRIPT in sources
    assert "<script>" not in section


def test_a_parsed_host_carries_its_line_counts_to_the_group_view(tmp_path: Path) -> None:
    campaign = _campaign()
    run = RunDir.create(tmp_path / "reports", campaign.name, "20261207-030000-abcd")
    run.write_plan(make_plan(campaign, host_facts(host="h"), run.run_id, {}, t0=1000.0))
    session = run.session_dir("h")
    session.mkdir(parents=True, exist_ok=True)
    (session / "py-spy.folded").write_text(FOLDED)
    manifest = {"status": "ok", "profilers": {"py-spy": {"status": "ok"}}}
    (session / "manifest.json").write_text(json.dumps(manifest))

    parsed = parse_host(run, "h", campaign)

    assert parsed.profile is not None and parsed.view.line_counts is not None
    assert parsed.view.line_counts == line_counts(parsed.profile)
