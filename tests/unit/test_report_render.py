"""The HTML page and the terminal summary, rendered from a report.json-shaped dict.

Device strings are hostile here on purpose: host, function and file names and reasons
that would run script or restyle the terminal if they came out unescaped.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

import pytest
from rich.console import Console

from orchestrator.analysis.stacks import flame_tree, parse_folded, read_folded, top_functions
from orchestrator.report.html import render_html
from orchestrator.report.terminal import render_terminal
from tests.support.paths import FIXTURES as _FIXTURES

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


def _host_from(name: str, folded_profile: Any, status: str = "ok") -> dict[str, Any]:
    return {
        "name": name,
        "hw_model": "jetson-orin-nx",
        "arch": "aarch64",
        "status": status,
        "reason": None,
        "start_offset_ms": 1.25,
        "profilers": {"py-spy": {"status": "ok", "reason": None}},
        "metrics": {
            "pyspy.samples": float(folded_profile.total_samples),
            "pyspy.effective_rate_hz": 81.4,
            "pyspy.requested_rate_hz": 97,
            "workload.fps": 29.5,
        },
        "top_functions": [
            {
                "function": s.function,
                "file": s.file,
                "self_pct": s.self_pct,
                "total_pct": s.total_pct,
            }
            for s in top_functions(folded_profile)
        ],
        "flamegraph": flame_tree(folded_profile),
        "data_quality": [],
    }


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

PWN_IMG = "<img src=x onerror=\"document.title='pwned'\">"
PWN_SCRIPT = "\"><script>document.title='pwned'</script>"
PWN_LINK = "javascript:document.title='pwned'"
PWN_MD = "| [click](javascript:alert(1)) `code` # head"


DECODE = "decode_frame (video_pipeline.py:20)"


def _folded(stages: dict[str, int]) -> str:
    lines = []
    for stack, count in stages.items():
        lines.append(f"{stack} {count}")
    return "\n".join(lines) + "\n"


def _diff_tree(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """A diff tree (shares of two flame trees) as analysis would put it in report.json."""

    def walk(
        x: Mapping[str, Any] | None, y: Mapping[str, Any] | None, ta: float, tb: float
    ) -> dict[str, Any]:
        node = x or y or {}
        kids: dict[tuple[Any, Any], list[Mapping[str, Any] | None]] = {}
        for side, tree in ((0, x), (1, y)):
            for child in (tree or {}).get("children", []):
                kids.setdefault((child["name"], child.get("file")), [None, None])[side] = child
        return {
            "name": node["name"],
            "file": node.get("file"),
            "a": (x or {}).get("value", 0) / ta,
            "b": (y or {}).get("value", 0) / tb,
            "children": [walk(p, q, ta, tb) for p, q in kids.values()],
        }

    return walk(a, b, float(a["value"]), float(b["value"]))


def _series(seed: int, hot: bool) -> dict[str, list[float | None]]:
    n = 120
    t = [round(i * 0.5, 3) for i in range(n)]
    wave = [math.sin(i / 9.0 + seed) for i in range(n)]
    return {
        "system.t": t,
        "system.cpu_pct": [round(55 + 20 * w + seed, 2) for w in wave],
        "system.target.cpu_pct": [None] + [round(80 + 15 * w, 2) for w in wave[1:]],
        "system.target.rss_mb": [round(180 + i * (0.9 if hot else 0.05), 2) for i in range(n)],
        "system.target.read_bytes_per_s": [None] + [1000.0 * (5 + w) for w in wave[1:]],
        "system.target.write_bytes_per_s": [None] + [2.0e6 * (3 + w) for w in wave[1:]],
        "system.thermal.max_c": [
            round((78 if hot else 52) + 3 * w + i * 0.05, 1) for i, w in enumerate(wave)
        ],
        "system.cpufreq.min_ratio": [round(0.62 if hot and i > 40 else 1.0, 3) for i in range(n)],
        "system.mem.used_pct": [round(40 + 2 * w, 2) for w in wave],
        "memory.t": t[::2],
        "memory.rss_mb": [round(180 + i * (1.8 if hot else 0.1), 2) for i in range(n // 2)],
        "memory.pss_mb": [round(160 + i * (1.7 if hot else 0.1), 2) for i in range(n // 2)],
        "iotop.t": [float(i) for i in range(59)],
        "iotop.target.write_bytes_per_s": [3.0e6 * (2 + math.cos(i / 5 + seed)) for i in range(59)],
        "iotop.total.write_bytes_per_s": [4.0e6 * (2 + math.cos(i / 5 + seed)) for i in range(59)],
    }


def fleet_report() -> dict[str, Any]:
    """Two groups, five hosts, every section filled; hostile device strings throughout."""
    hosts_spec = [
        ("edge-01", "jetson-orin-nx", False, 45),
        ("edge-02", "jetson-orin-nx", False, 44),
        (PWN_IMG, "jetson-orin-nx", True, 70),
        ("pi-01", PWN_SCRIPT, False, 30),
        (PWN_MD, PWN_SCRIPT, False, 31),
    ]
    hosts = []
    trees = {}
    for i, (name, group, hot, decode) in enumerate(hosts_spec):
        folded = parse_folded(
            _folded(
                {
                    f"main (app.py:1);run (pipeline.py:10);{DECODE}": decode * 10,
                    "main (app.py:1);run (pipeline.py:10);infer (model.py:5)": 300,
                    f"main (app.py:1);run (pipeline.py:10);{PWN_SCRIPT} ({PWN_IMG}:3)": 80,
                    f"main (app.py:1);{PWN_LINK} (x.py:1)": 40 + i * 10,
                    "main (app.py:1);idle (sched.py:2)": 120,
                }
            )
        )
        tree = flame_tree(folded)
        trees[name] = tree
        host = _host_from(name, folded, status="partial" if hot else "ok")
        host.update(
            group=group,
            hw_model=group,
            series=_series(i, hot),
            data_quality=[f"py-spy fell behind {PWN_IMG}"] if hot else [],
        )
        host["metrics"].update(
            {"workload.fps": 12.0 if hot else 29.0 + i / 10, "thermal.max_c": 84.0 if hot else 55.0}
        )
        hosts.append(host)
    groups = []
    for group in ("jetson-orin-nx", PWN_SCRIPT):
        members = [h for h in hosts if h["group"] == group]
        groups.append(
            {
                "hw_model": group,
                "hosts": [h["name"] for h in members],
                "metrics": {
                    "workload.fps": {"median": 29.1, "mad": 0.2, "n": len(members)},
                    PWN_IMG: {"median": 1.0, "mad": 0.0, "n": len(members)},
                },
                "flamegraph": members[0]["flamegraph"],
            }
        )
    functions = [
        {"function": "decode_frame", "file": "video_pipeline.py"},
        {"function": "infer", "file": "model.py"},
        {"function": PWN_SCRIPT, "file": PWN_IMG},
        {"function": PWN_LINK, "file": "x.py"},
    ]
    cells: list[list[float | None]] = []
    for f in functions:
        row: list[float | None] = []
        for h in hosts:
            match = [t["self_pct"] for t in h["top_functions"] if t["function"] == f["function"]]
            row.append(match[0] if match else None)
        cells.append(row)
    cells[1][4] = None
    deviant = [[j == 2 and i == 0 for j in range(5)] for i in range(4)]
    return {
        "schema": "fleetprof.report/1",
        "campaign": PWN_MD,
        "run_id": "20261125-111500-ab12",
        "started_at": "2026-11-25T11:15:00+00:00",
        "duration_s": 60.0,
        "mode": "attach",
        "summary": {"hosts": 5, "ok": 4, "partial": 1, "failed": 0, "unreachable": 0, "skipped": 0},
        "start_skew_ms": 8.5,
        "compare": {"group_by": "hw_model", "threshold": 3.5},
        "hosts": hosts,
        "groups": groups,
        "outliers": [
            {
                "host": PWN_IMG,
                "hw_model": "jetson-orin-nx",
                "metric": "workload.fps",
                "value": 12.0,
                "group_median": 29.1,
                "robust_z": -27.3,
                "kind": "metric",
                "function": None,
                "file": None,
            },
            {
                "host": PWN_IMG,
                "hw_model": "jetson-orin-nx",
                "metric": "self_pct",
                "value": 52.1,
                "group_median": 41.0,
                "robust_z": 9.4,
                "kind": "function_share",
                "function": PWN_SCRIPT,
                "file": PWN_LINK,
            },
        ],
        "function_matrix": {
            "functions": functions,
            "hosts": [h["name"] for h in hosts],
            "cells": cells,
            "deviant": deviant,
        },
        "diffs": {
            "host_vs_group": {
                h["name"]: _diff_tree(
                    trees[h["name"]],
                    groups[0 if h["group"] == "jetson-orin-nx" else 1]["flamegraph"],
                )
                for h in hosts
            },
            "group_vs_group": [
                {
                    "a": "jetson-orin-nx",
                    "b": PWN_SCRIPT,
                    "tree": _diff_tree(trees["edge-01"], trees["pi-01"]),
                }
            ],
        },
        "regressions": [],
    }


# -- the fleet sections: groups, outliers, matrix, diffs, charts --------------------------


def _elements(page: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every start tag the page really has, as a browser's tokenizer sees it."""
    found: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, attrs))

    Collector().feed(page)
    return found


def _svgs(page: str, cls: str) -> list[ET.Element]:
    found = re.findall(rf'<svg class="{cls}".*?</svg>', page, re.S)
    return [ET.fromstring(svg) for svg in found]  # escaping kept every SVG well-formed


def test_fleet_report_escapes_every_device_string() -> None:
    page = render_html(fleet_report())
    for raw in (PWN_IMG, PWN_SCRIPT, "<script>document", "<img src"):
        assert raw not in page
    elements = _elements(page)
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
