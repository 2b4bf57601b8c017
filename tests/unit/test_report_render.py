"""The HTML page and the terminal summary, rendered from a report.json-shaped dict.

Device strings are hostile here on purpose: host, function and file names and reasons
that would run script or restyle the terminal if they came out unescaped.
"""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from rich.console import Console

from orchestrator.analysis.stacks import parse_folded, read_folded
from orchestrator.report.html import render_html
from orchestrator.report.terminal import render_terminal
from tests.support.paths import FIXTURES as _FIXTURES
from tests.support.reports import (
    PWN_IMG,
    PWN_SCRIPT,
    _host_from,
    fleet_report,
    start_tags,
)

FIXTURES = _FIXTURES / "py-spy"

IMG = "<img src=x onerror=alert(1)>"
SCRIPT = '"><script>alert(1)</script>'
MARKUP = "[bold red]x"
ESC = "\x1b[2Jcleared"

HOSTILE_FOLDED = (
    f"main (app.py:1);{IMG} ({SCRIPT}:3) 60\n"
    f"main (app.py:1);{SCRIPT} ({IMG}:9) 30\n"
    f"main (app.py:1);{MARKUP} (app.py:4) 10\n"
)


@pytest.fixture
def report() -> dict[str, Any]:
    cpu = _host_from("edge-01", read_folded(FIXTURES / "cpu-two-stages.threads-idle.folded.txt"))
    hostile = _host_from(SCRIPT, parse_folded(HOSTILE_FOLDED), status="partial")
    hostile["hw_model"] = IMG
    hostile["reason"] = f"target exited early {IMG}"
    hostile["data_quality"] = [f"py-spy fell behind {SCRIPT}"]
    failed = {
        "name": "edge-03",
        "hw_model": "rpi4",
        "arch": "aarch64",
        "status": "failed",
        "reason": f"no process matched {IMG}",
        "start_offset_ms": None,
        "profilers": {"py-spy": {"status": "failed", "reason": "no target"}},
        "metrics": {},
        "top_functions": [],
        "flamegraph": None,
        "data_quality": [],
    }
    return {
        "schema": "fleetprof.report/1",
        "campaign": "demo",
        "run_id": "20261125-111500-ab12",
        "started_at": "2026-11-25T11:15:00+00:00",
        "duration_s": 30.0,
        "mode": "attach",
        "summary": {"hosts": 3, "ok": 1, "partial": 1, "failed": 1, "unreachable": 0, "skipped": 0},
        "hosts": [cpu, hostile, failed],
        "groups": [
            {
                "hw_model": IMG,
                "hosts": [SCRIPT],
                "metrics": {"workload.fps": {"median": 29.5, "mad": 0.0, "n": 1}},
            }
        ],
        "outliers": [
            {
                "host": SCRIPT,
                "hw_model": IMG,
                "metric": "workload.fps",
                "value": 12.0,
                "group_median": 29.5,
                "robust_z": -5.1,
            }
        ],
    }


def test_html_escapes_every_device_string(report: dict[str, Any]) -> None:
    page = render_html(report)
    for raw in (IMG, SCRIPT, "<script>alert(1)", "<img"):
        assert raw not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # No element carries an event handler, and the only script is the page's own.
    assert not re.search(r"<[^>]*\son\w+\s*=", page)
    assert page.count("<script") == 1


def test_html_is_self_contained(report: dict[str, Any]) -> None:
    page = render_html(report)
    assert "http://" not in page
    assert "https://" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*//""", page)
    assert not re.search(r"<link\b|@import|url\(", page)


def test_csp_allows_exactly_the_page_script(report: dict[str, Any]) -> None:
    page = render_html(report)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert csp
    assert "default-src 'none'" in csp.group(1)
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    assert script
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp.group(1)


def test_html_has_header_and_fleet_table(report: dict[str, Any]) -> None:
    page = render_html(report)
    for text in ("demo", "20261125-111500-ab12", "2026-11-25T11:15:00+00:00", "30.0 s", "attach"):
        assert text in page
    for text in ("ok: 1", "partial: 1", "failed: 1", "unreachable: 0", "skipped: 0"):
        assert text in page
    fleet = page[page.index('<table id="fleet">') : page.index("</table>")]
    assert fleet.count("<tr>") == 4  # header + three hosts
    for text in ("edge-01", "edge-03", "jetson-orin-nx", "rpi4", "81.4", "199", "1.2"):
        assert text in fleet
    assert 'class="badge st-failed"' in fleet
    assert '<td class="num">199</td>' in fleet  # a sample count, though stored as a float
    assert "no process matched" in fleet


def test_flame_graph_per_host_with_samples(report: dict[str, Any]) -> None:
    page = render_html(report)
    svgs = re.findall(r'<svg class="flame".*?</svg>', page, re.S)
    assert len(svgs) == 2  # the failed host has none
    for svg in svgs:
        ET.fromstring(svg)  # escaping kept the SVG well-formed
    cpu = ET.fromstring(svgs[0])
    titles = [t.text for t in cpu.iter("title")]
    assert "decode (work.py) — 91 samples, 45.73%" in titles
    assert "all — 199 samples, 100.00%" in titles
    rects = {r.get("fill") for r in cpu.iter("rect")}
    assert len(rects) >= 3  # root grey plus a colour per function
    hostile = ET.fromstring(svgs[1])
    assert f"{IMG} ({SCRIPT}) — 60 samples, 60.00%" in [t.text for t in hostile.iter("title")]


def test_failed_host_shows_its_reason(report: dict[str, Any]) -> None:
    page = render_html(report)
    section = page[page.index('id="host-3"') :]
    section = section[: section.index("</details>")]
    assert "edge-03" in section
    assert "no process matched &lt;img" in section
    assert "<svg" not in section
    assert "Top functions" not in section


def test_top_functions_table_and_bars(report: dict[str, Any]) -> None:
    page = render_html(report)
    section = page[page.index('id="host-1"') : page.index('id="host-2"')]
    assert "45.73" in section
    assert 'style="width: 45.73%"' in section
    assert 'style="width: 100.0%"' in section


def test_big_fleet_collapses_sections(report: dict[str, Any]) -> None:
    hosts = [dict(report["hosts"][0], name=f"edge-{i:03}") for i in range(120)]
    page = render_html(dict(report, hosts=hosts))
    assert page.count('<details class="host"') == 120
    assert '<details class="host" id="host-1" open' not in page
    small = render_html(report)
    assert '<details class="host" id="host-1" open>' in small


def test_html_survives_a_sparse_report() -> None:
    page = render_html({"schema": "fleetprof.report/1", "hosts": [{"name": "x"}, "junk"]})
    assert "x" in page
    assert "st-unknown" in page


def _terminal(report: dict[str, Any]) -> str:
    console = Console(record=True, width=200, color_system="truecolor")
    render_terminal(report, console)
    return console.export_text()


def test_terminal_summary(report: dict[str, Any]) -> None:
    out = _terminal(report)
    for text in ("demo", "edge-01", "edge-03", "jetson-orin-nx", "199", "81.4", "/ 97"):
        assert text in out
    assert "decode  45.7%" in out
    assert "199.0" not in out
    assert "no process matched" in out
    assert "3 hosts: 1 ok, 1 partial, 1 failed, 0 unreachable, 0 skipped" in out
    assert "outlier" in out
    assert "robust z -5.10" in out


def test_terminal_prints_device_strings_literally(report: dict[str, Any]) -> None:
    report["hosts"][0]["name"] = MARKUP
    report["hosts"][0]["top_functions"][0]["function"] = ESC
    out = _terminal(report)
    assert MARKUP in out
    assert SCRIPT in out
    assert "\x1b" not in out
    assert "\\x1b[2Jcleared" in out


def test_terminal_survives_a_sparse_report() -> None:
    out = _terminal({"hosts": [{"name": "x"}, 3]})
    assert "x" in out
    assert "unknown" in out


# -- a realistic fleet report with hostile strings everywhere (also used by the Markdown
# and browser tests) ----------------------------------------------------------------------


# -- the fleet sections: groups, outliers, matrix, diffs, charts --------------------------


def _svgs(page: str, cls: str) -> list[ET.Element]:
    found = re.findall(rf'<svg class="{cls}".*?</svg>', page, re.S)
    return [ET.fromstring(svg) for svg in found]  # escaping kept every SVG well-formed


def test_fleet_report_escapes_every_device_string() -> None:
    page = render_html(fleet_report())
    for raw in (PWN_IMG, PWN_SCRIPT, "<script>document", "<img src"):
        assert raw not in page
    elements = start_tags(page)
    assert not [(tag, a) for tag, attrs in elements for a, _ in attrs if a.startswith("on")]
    assert [tag for tag, _ in elements if tag in ("script", "img", "iframe", "a")].count(
        "script"
    ) == 1
    assert not [tag for tag, _ in elements if tag in ("img", "iframe", "object", "embed")]
    hrefs = [v for _, attrs in elements for a, v in attrs if a in ("href", "src")]
    assert hrefs and all(re.fullmatch(r"#host-\d+", v or "") for v in hrefs)
    assert not re.search(r"""(href|src)\s*=\s*["']?\s*javascript:""", page, re.I)
    assert page.count("<script") == 1
    assert "http://" not in page and "https://" not in page


def test_outliers_table_has_kind_function_and_signed_z() -> None:
    page = render_html(fleet_report())
    table = page[page.index('<table id="outliers">') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr>") == 3
    assert "function share" in table
    assert "-27.30" in table and "+9.40" in table
    assert "&#34;&gt;&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in table
    assert 'href="#host-3"' in table  # the outlier links to its host's section


def test_function_matrix_groups_columns_and_marks_deviant_cells() -> None:
    page = render_html(fleet_report())
    table = page[page.index('<table class="matrix"') :]
    table = table[: table.index("</table>")]
    assert '<th class="grp" colspan="3">jetson-orin-nx</th>' in table
    assert 'colspan="2">&#34;&gt;&lt;script&gt;' in table
    assert table.count(" deviant") == 1
    assert "55.6" in table
    assert "background: rgba(230,85,13,0.80)" in table  # the hottest cell is the darkest
    assert '<td class="cell">\u2013</td>' in table  # a function absent on a host


def test_diff_flame_graphs_per_host_and_between_groups() -> None:
    page = render_html(fleet_report())
    diffs = _svgs(page, "flame diff")
    assert len(diffs) == 6  # five hosts against their group, one group pair
    titles = [t.text or "" for svg in diffs for t in svg.iter("title")]
    assert any(
        t.startswith("decode_frame (video_pipeline.py) — ") and "points)" in t for t in titles
    )
    fills = {r.get("fill") for svg in diffs for r in svg.iter("rect")}
    assert any(f and f.startswith("rgb(214,39,40)") for f in fills)  # host has more: red
    assert any(f and f != "rgb(236,236,236)" and f.endswith("200)") for f in fills)  # less: blue


def test_diff_flame_width_fits_children_into_their_parent() -> None:
    from orchestrator.report.html import FLAME_WIDTH, diff_flame_svg

    tree = {
        "name": "all", "a": 1.0, "b": 1.0,
        "children": [
            {"name": "x", "a": 0.9, "b": 0.1, "children": []},
            {"name": "y", "a": 0.1, "b": 0.9, "children": []},
        ],
    }  # fmt: skip
    svg = ET.fromstring(str(diff_flame_svg(tree, "a", "b")))
    widths = [float(r.get("width") or 0) for r in svg.iter("rect")]
    assert widths[0] == FLAME_WIDTH
    assert sum(widths[1:]) == pytest.approx(FLAME_WIDTH)
    assert diff_flame_svg({"name": "all", "a": 0, "b": 0}, "a", "b") is None


def test_charts_per_host_and_overlaid_per_group() -> None:
    page = render_html(fleet_report())
    charts = _svgs(page, "chart")
    # 6 per host (CPU, memory, system memory, I/O, temperature, frequency) for 5 hosts,
    # and 7 overlays for each of the 2 groups.
    assert len(charts) == 5 * 6 + 2 * 7
    first = charts[0]
    assert first.find("title") is not None
    assert len(list(first.iter("polyline"))) >= 1
    texts = [t.text for t in first.iter("text")]
    assert "time (s)" in texts
    overlay = page[page.index("Over time, one line per host") :]
    assert "&lt;img src=x onerror=" in overlay[: overlay.index("</figure>") + 2000]


def test_chart_breaks_its_line_where_values_are_missing() -> None:
    from orchestrator.report.charts import Line, line_chart

    chart = line_chart("x", "%", [Line("a", "#000", [0, 1, 2, 3, 4], [1, 2, None, 3, 4])])
    assert chart is not None
    svg = ET.fromstring(str(chart.svg))
    assert len(list(svg.iter("polyline"))) == 2
    assert line_chart("x", "%", [Line("a", "#000", [0], [None])]) is None


def test_chart_scales_bytes_and_ratios_for_display() -> None:
    from orchestrator.report.charts import display_unit, nice_ticks

    assert display_unit("bytes/s", 5 * 1024 * 1024) == ("MiB/s", 1 / 1024**2)
    assert display_unit("ratio", 1.0) == ("% of max", 100.0)
    assert nice_ticks(0, 97) == [0, 25, 50, 75, 100]


def test_old_reports_without_new_sections_still_render(report: dict[str, Any]) -> None:
    sparse = {
        "schema": "fleetprof.report/1",
        "hosts": [{"name": "x", "series": {"t": [0, 1], "system.cpu_pct": "junk"}}],
        "groups": [{"hw_model": "m", "hosts": "junk"}],
        "function_matrix": {"functions": [{"function": "f"}], "hosts": ["x"], "cells": "junk"},
        "diffs": {"host_vs_group": {"x": "junk"}, "group_vs_group": [{"a": "m", "tree": None}]},
        "outliers": [{"host": "x"}],
    }
    page = render_html(sparse)
    assert "x" in page
    assert render_html(report)  # the report without diffs, matrix or series
