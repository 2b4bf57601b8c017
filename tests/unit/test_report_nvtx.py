"""nsys's NVTX ranges in report.html and summary.md: a part per host that has them, hostile
range names escaped (a range name is the program's own string), the page's one script kept.
The rows are the parser's reading of real nsys output (tests/fixtures/SOURCES.md), one of
them given a hostile name here."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from orchestrator.campaign.model import Campaign
from orchestrator.profilers import nsys
from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown
from tests.support.reports import PWN_SCRIPT, fleet_report, start_tags
from tests.unit.test_profiler_nsys_nvtx import PUSHPOP

CAMPAIGN = {
    "name": "unit",
    "duration": "30s",
    "target": {"launch": {"command": ["python3", "train.py"]}},
    "profilers": {"nsys": {}},
}


def with_nvtx(tmp_path: Path) -> dict[str, Any]:
    """The parser's table of the real push/pop summary, and a hostile row written here."""
    shutil.copy(PUSHPOP, tmp_path / "nsys-stats_nvtx_sum.csv")
    rows = nsys.parse(tmp_path, {}, Campaign.from_mapping(CAMPAIGN, source=Path("unit.yml")))
    hostile = dict(rows.tables[nsys.NVTX_TABLE][2], name=PWN_SCRIPT + "\x1b[2J")
    report = fleet_report()
    table = [*rows.tables[nsys.NVTX_TABLE][:1], hostile]
    report["hosts"][0].setdefault("tables", {})[nsys.NVTX_TABLE] = table
    return report


def test_a_host_with_nvtx_ranges_gets_the_part_escaped(tmp_path: Path) -> None:
    page = render_html(with_nvtx(tmp_path))

    assert page.count("<h3>NVTX ranges") == 1
    assert "<code>:decode</code>" in page and ">2,782.360<" in page
    assert "<script>document.title" not in page and "\x1b" not in page
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;\u241b[2J" in page
    assert len([t for t in start_tags(page) if t[0] == "script"]) == 1


def test_summary_md_lists_each_hosts_ranges(tmp_path: Path) -> None:
    text = render_markdown(with_nvtx(tmp_path))

    section = text.split("## NVTX ranges per host (nsys)", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| edge-01")]
    assert len(rows) == 2
    assert rows[0].endswith("| :decode |  | 1 | 2,782.360 | 2,782,360.5 | 65.9 |")
    assert "&lt;script&gt;" in rows[1] and "<script>" not in rows[1] and "\x1b" not in rows[1]
    assert "|  | 4 | 401.811 |" in rows[1]


def test_no_nvtx_no_part() -> None:
    report = fleet_report()

    assert "<h3>NVTX ranges" not in render_html(report)
    assert "## NVTX ranges" not in render_markdown(report)
