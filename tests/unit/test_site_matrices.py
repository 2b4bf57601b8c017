"""Allocation sites across hosts (orchestrator/analysis/sites.py): tracemalloc's growth
and memray's peak, site by host, in report.json, report.html and summary.md."""

from __future__ import annotations

from typing import Any

from orchestrator.analysis.fleet import HostView, build_report
from orchestrator.analysis.sites import site_matrix
from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown

META = {"campaign": "c", "run_id": "r", "started_at": "t", "duration_s": 5.0, "mode": "launch"}


def _site(function: str, line: int, mb: float, key: str, file: str = "app.py") -> dict[str, Any]:
    return {"function": function, "file": file, "line": line, key: mb}


def _host(name: str, model: str, growth: dict[str, float], status: str = "ok") -> HostView:
    rows = [_site(f, 10 + i, mb, "growth_mb") for i, (f, mb) in enumerate(growth.items())]
    return HostView(name, model, "x86_64", status, tables={"tracemalloc.growth": rows})


def test_each_site_is_a_row_each_host_a_column_and_absent_sites_are_null() -> None:
    tables = {
        "b": [_site("leak", 12, 4.0, "growth_mb"), _site("load", 30, 1.0, "growth_mb")],
        "a": [_site("leak", 12, 0.5, "growth_mb")],
        "c": [],
    }
    matrix = site_matrix(["a", "b", "c"], tables, "growth_mb")
    assert matrix is not None
    assert matrix["hosts"] == ["a", "b"]  # c lists no site
    assert matrix["functions"] == [
        {"function": "leak", "file": "app.py:12"},
        {"function": "load", "file": "app.py:30"},
    ]
    assert matrix["cells"] == [[0.5, 4.0], [None, 1.0]]
    assert matrix["deviant"] == [[False, False], [False, False]]


def test_rows_without_a_file_or_a_number_are_left_out_and_no_site_is_no_matrix() -> None:
    tables = {
        "a": [
            {"function": "f", "line": 1, "growth_mb": 2.0},  # no file
            {"function": "g", "file": "x.py", "line": 2, "growth_mb": "2"},
            {"function": "h", "file": "x.py", "line": 3, "growth_mb": float("nan")},
            {"function": "i", "file": "x.py", "line": True, "growth_mb": True},
        ]
    }
    assert site_matrix(["a"], tables, "growth_mb") is None
    assert site_matrix([], {}, "growth_mb") is None


def test_the_largest_sites_on_any_host_are_kept_up_to_the_limit() -> None:
    tables = {"a": [_site(f"f{i}", i, float(i), "size_mb") for i in range(1, 40)]}
    matrix = site_matrix(["a"], tables, "size_mb", limit=3)
    assert matrix is not None
    assert [f["function"] for f in matrix["functions"]] == ["f39", "f38", "f37"]


def test_the_report_lays_out_growth_by_site_per_host_grouped_by_model() -> None:
    hosts = [
        _host("b-1", "model-b", {"leak": 0.1}),
        _host("a-2", "model-a", {"leak": 6.0, "cache": 2.0}),
        _host("a-1", "model-a", {"leak": 0.2}),
        _host("a-3", "model-a", {"leak": 9.0}, status="failed"),  # its data is not the group's
    ]
    report = build_report(META, hosts)
    matrix = report["tracemalloc_growth_matrix"]
    assert matrix["hosts"] == ["a-1", "a-2", "b-1"]
    assert matrix["cells"][0] == [0.2, 6.0, 0.1]
    assert "memray_peak_matrix" not in report  # no host has memray

    html = render_html(report)
    assert "tracemalloc: growth by site across hosts" in html
    part = html.split('id="growth-matrix"')[1].split("</table>")[0]
    assert "leak" in part and "app.py:10" in part
    summary = render_markdown(report)
    section = summary.split("## tracemalloc: growth by site per host")[1].split("\n## ")[0]
    assert "| leak" in section and "6.0" in section


def test_a_report_without_allocation_tables_has_no_site_matrix() -> None:
    report = build_report(META, [HostView("h", "m", "x86_64", "ok")])
    assert "tracemalloc_growth_matrix" not in report and "memray_peak_matrix" not in report
    assert "by site" not in render_markdown(report)
