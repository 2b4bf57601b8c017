"""nsys's NVTX ranges in report.html and summary.md: a part per host that has them, hostile
range names escaped (a range name is the program's own string), the page's one script kept.
The rows are written here in the parser's shape (test_profiler_nsys_nvtx.py reads real
output into it)."""

from __future__ import annotations

from typing import Any

from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown
from tests.support.reports import PWN_SCRIPT, fleet_report, start_tags


def with_nvtx() -> dict[str, Any]:
    report = fleet_report()
    rows = [
        {
            "name": ":decode",
            "style": None,
            "count": 1,
            "total_ms": 2782.360479,
            "avg_us": 2782360.479,
            "med_us": 2782360.479,
            "min_us": 2782360.479,
            "max_us": 2782360.479,
            "pct": 65.88,
        },
        {
            "name": PWN_SCRIPT + "\x1b[2J",
            "style": "PushPop",
            "count": 4,
            "total_ms": 401.811376,
            "avg_us": 100452.844,
            "med_us": 22405.077,
            "min_us": 17208.883,
            "max_us": 339792.339,
            "pct": 9.51,
        },
    ]
    report["hosts"][0].setdefault("tables", {})["nvtx_ranges"] = rows
    return report


def test_a_host_with_nvtx_ranges_gets_the_part_escaped() -> None:
    page = render_html(with_nvtx())

    assert page.count("<h3>NVTX ranges") == 1
    assert "<code>:decode</code>" in page and ">2,782.360<" in page
    assert "<script>document.title" not in page and "\x1b" not in page
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;\u241b[2J" in page
    assert len([t for t in start_tags(page) if t[0] == "script"]) == 1


def test_summary_md_lists_each_hosts_ranges() -> None:
    text = render_markdown(with_nvtx())

    section = text.split("## NVTX ranges per host (nsys)", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| edge-01")]
    assert len(rows) == 2
    assert rows[0].endswith("| :decode |  | 1 | 2,782.360 | 2,782,360.5 | 65.9 |")
    assert "&lt;script&gt;" in rows[1] and "<script>" not in rows[1] and "\x1b" not in rows[1]
    assert "| PushPop | 4 | 401.811 |" in rows[1]


def test_no_nvtx_no_part() -> None:
    report = fleet_report()

    assert "<h3>NVTX ranges" not in render_html(report)
    assert "## NVTX ranges" not in render_markdown(report)
