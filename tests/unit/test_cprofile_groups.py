"""cProfile across hosts: each group's functions summed over its hosts, and cProfile's
own-time shares in the outlier analysis like py-spy's self shares (synthetic hosts)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.analysis.cprofile_groups import merge_functions
from orchestrator.analysis.fleet import CPROFILE_TABLE, HostView, build_report
from orchestrator.analysis.outliers import CPROFILE_SHARE_METRIC
from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown

META = {"campaign": "c", "run_id": "r", "started_at": "t", "duration_s": 5.0, "mode": "launch"}


def _row(function: str, own: float, total: float, calls: int = 10, **kw: Any) -> dict[str, Any]:
    return {
        "function": function,
        "file": kw.get("file", "app.py"),
        "line": kw.get("line", 1),
        "calls": calls,
        "primitive_calls": kw.get("primitive", calls),
        "tottime_s": own,
        "cumtime_s": kw.get("cum", own),
        "tottime_pct": round(100.0 * own / total, 2),
    }


def _host(name: str, model: str, split: dict[str, float], total: float = 10.0, **kw: Any):
    """A host whose cProfile spent ``split`` (function -> seconds of own time)."""
    rows = [_row(f, own, total) for f, own in split.items()]
    return HostView(
        name=name,
        hw_model=model,
        arch="x86_64",
        status=kw.get("status", "ok"),
        metrics={"cprofile.tottime_s": total},
        tables={CPROFILE_TABLE: rows},
    )


def test_a_groups_functions_are_summed_over_its_hosts_with_shares_of_their_time() -> None:
    tables = {
        "h1": [_row("decode", 6.0, 10.0, calls=100, cum=8.0), _row("io", 1.0, 10.0)],
        "h2": [_row("decode", 2.0, 10.0, calls=50, cum=3.0), _row("walk", 1.0, 10.0)],
    }
    tables["h2"][1].update(calls=12, primitive_calls=3)  # recursion: 12 calls, 3 primitive

    view = merge_functions(tables, {"h1": 10.0, "h2": 10.0})

    assert view is not None
    assert view["hosts"] == ["h1", "h2"] and view["tottime_s"] == 20.0
    first = view["functions"][0]
    assert (first["function"], first["calls"], first["hosts"]) == ("decode", 150, 2)
    assert (first["tottime_s"], first["cumtime_s"]) == (8.0, 11.0)
    assert first["tottime_pct"] == 40.0 and first["cumtime_pct"] == 55.0
    assert first["tottime_per_call_us"] == pytest.approx(1e6 * 8.0 / 150, abs=1e-3)
    walk = next(r for r in view["functions"] if r["function"] == "walk")
    assert walk["ncalls"] == "12/3" and walk["hosts"] == 1
    assert [r["function"] for r in view["functions"]] == ["decode", "io", "walk"]


def test_without_a_total_the_rows_own_time_stands_in_and_no_rows_is_none() -> None:
    view = merge_functions({"h1": [_row("f", 2.0, 4.0), _row("g", 2.0, 4.0)]}, {"h1": None})
    assert view is not None and view["tottime_s"] == 4.0
    assert [r["tottime_pct"] for r in view["functions"]] == [50.0, 50.0]
    assert merge_functions({"h1": []}, {}) is None
    assert merge_functions({}, {}) is None


def _fleet() -> list[HostView]:
    usual = {"decode": 4.0, "detect": 3.0, "io": 1.0}
    return [
        _host("a-1", "model-a", usual),
        _host("a-2", "model-a", {"decode": 4.1, "detect": 2.9, "io": 1.0}),
        _host("a-3", "model-a", {"decode": 3.9, "detect": 3.1, "io": 1.0}),
        # Its decode takes most of its time: the group's odd one out, by function.
        _host("a-4", "model-a", {"decode": 8.0, "detect": 1.0, "io": 0.5}),
        _host("b-1", "model-b", {"decode": 1.0, "detect": 1.0}, total=2.0),
        _host("b-2", "model-b", {"decode": 1.0, "detect": 1.0}, total=2.0, status="failed"),
    ]


def test_the_report_has_each_groups_merged_cprofile_and_cprofile_share_outliers() -> None:
    report = build_report(META, _fleet())

    groups = {g["hw_model"]: g for g in report["groups"]}
    merged = groups["model-a"]["cprofile"]
    assert merged["hosts"] == ["a-1", "a-2", "a-3", "a-4"] and merged["tottime_s"] == 40.0
    decode = merged["functions"][0]
    assert decode["function"] == "decode" and decode["tottime_s"] == pytest.approx(20.0)
    assert decode["tottime_pct"] == 50.0 and decode["calls"] == 40 and decode["hosts"] == 4
    # A failed host's tables are not its group's.
    assert groups["model-b"]["cprofile"]["hosts"] == ["b-1"]

    found = [o for o in report["outliers"] if o["metric"] == CPROFILE_SHARE_METRIC]
    assert found, report["outliers"]
    named = {(o["host"], o["function"]) for o in found}
    assert ("a-4", "decode") in named
    assert all(o["kind"] == "function_share" and o["file"] == "app.py" for o in found)
    assert all(o["host"] == "a-4" for o in found)  # the others are within the floor
    decode_row = next(o for o in found if o["function"] == "decode")
    assert decode_row["value"] == 80.0 and decode_row["group_median"] == 40.5

    matrix = report["cprofile_function_matrix"]
    row = [f["function"] for f in matrix["functions"]].index("decode")
    column = matrix["hosts"].index("a-4")
    assert matrix["deviant"][row][column] is True
    assert sum(flag for flags in matrix["deviant"] for flag in flags) == len(found)
    # py-spy's matrix and shares are untouched: no py-spy profile, no py-spy cell.
    assert report["function_matrix"]["hosts"] == []


def test_hosts_without_cprofile_leave_the_group_view_null_and_flag_nothing() -> None:
    hosts = [HostView(f"h{i}", "box", "x86_64", "ok") for i in range(3)]
    report = build_report(META, hosts)
    assert report["groups"][0]["cprofile"] is None
    assert not any(o["metric"] == CPROFILE_SHARE_METRIC for o in report["outliers"])


def test_the_page_shows_the_groups_merged_cprofile() -> None:
    html = render_html(build_report(META, _fleet()))
    assert "cProfile: functions by own time, summed over the group" in html
    group_part = html.split("cProfile: functions by own time, summed over the group")[1]
    assert "decode" in group_part.split("</table>")[0]
    # Its own table class: the hosts' cProfile tables are counted apart.
    assert html.count('<table class="top cprofile-group">') == 2
    assert html.count('<table class="top cprofile">') == 6  # one per host
    assert "cprofile.tottime_pct" in html  # the outlier, named with its function


def test_summary_md_has_each_groups_top_functions_by_cprofile_own_time() -> None:
    summary = render_markdown(build_report(META, _fleet()))
    assert "## cProfile per group" in summary
    table = summary.split("## cProfile per group")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| model-")]
    assert rows[0].split("|")[1:8] == [
        " model-a ",
        " decode ",
        " app.py:1 ",
        " 40 ",
        " 50.0 ",
        " 50.0 ",
        " 4 ",
    ], rows[0]
    assert {row.split("|")[1].strip() for row in rows} == {"model-a", "model-b"}


def test_summary_md_has_no_cprofile_group_table_without_cprofile() -> None:
    hosts = [HostView(f"h{i}", "box", "x86_64", "ok") for i in range(3)]
    assert "cProfile per group" not in render_markdown(build_report(META, hosts))
