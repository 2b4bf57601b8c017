"""tracemalloc's tables in report.html and summary.md: a part per host, hostile file names
escaped, the page's strict CSP kept (no inline style or script added)."""

from __future__ import annotations

import re
from typing import Any

from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown
from tests.support.reports import PWN_MD, PWN_SCRIPT, fleet_report, start_tags


def with_allocations() -> dict[str, Any]:
    report = fleet_report()
    site = {
        "file": PWN_SCRIPT,
        "line": 14,
        "size": 3145728,
        "size_mb": 3.0,
        "count": 300,
        "traceback": [f"{PWN_SCRIPT}:14", f"{PWN_MD}:3"],
    }
    growth = dict(site, size_diff=3145728, count_diff=300, growth_mb=3.0, mb_per_min=1.5)
    host = report["hosts"][0]
    host.setdefault("tables", {}).update(
        {
            "tracemalloc.by_size": [site],
            "tracemalloc.by_count": [site],
            "tracemalloc.growth": [growth],
        }
    )
    host["metrics"].update({"tracemalloc.peak_mb": 4.25, "tracemalloc.growth_mb_per_min": 1.5})
    return report


def test_each_host_with_tracemalloc_tables_gets_an_allocations_part():
    report = with_allocations()
    page = render_html(report)
    assert page.count("<h3>Allocations") == 1
    assert "Growth by site, first snapshot to last" in page
    assert "Top sites by size" in page and "Top sites by count" in page
    assert "<script>document.title" not in page
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;:14" in page
    # The folded traceback holds the frames below the site.
    assert "| [click](javascript:alert(1)) `code` # head:3" in page
    # Nothing inline the CSP would have to allow: no style attribute, one script.
    tags = start_tags(page)
    assert len([t for t in tags if t[0] == "script"]) == 1
    assert re.search(r"<table class=\"top allocations growth\">", page)


def test_summary_md_lists_each_hosts_top_growth_site():
    text = render_markdown(with_allocations())
    section = text.split("## Allocations per host", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith("| edge-01"))
    assert "&lt;script&gt;" in row and "<script>" not in row
    assert row.endswith("| 3.000 | 1.500 | 1.500 | 4.25 |")


def test_no_tracemalloc_no_part():
    report = fleet_report()
    assert "<h3>Allocations" not in render_html(report)
    assert "## Allocations per host" not in render_markdown(report)
