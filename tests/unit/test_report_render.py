"""The HTML page and the terminal summary, rendered from a report.json-shaped dict.

Device strings are hostile here on purpose: host, function and file names and reasons
that would run script or restyle the terminal if they came out unescaped.
"""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrator.analysis.stacks import flame_tree, parse_folded, read_folded, top_functions
from orchestrator.report.html import render_html
from orchestrator.report.terminal import render_terminal

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "py-spy"

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
