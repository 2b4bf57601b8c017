"""memray's tables in report.html and summary.md: a part per host, hostile function and
file names escaped, the page's strict CSP kept (no inline style or script added)."""

from __future__ import annotations

from typing import Any

from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown
from tests.support.reports import PWN_MD, PWN_SCRIPT, fleet_report, start_tags


def with_memray() -> dict[str, Any]:
    report = fleet_report()
    site = {
        "function": PWN_SCRIPT,
        "file": PWN_MD,
        "line": 6,
        "size": 25165848,
        "size_mb": 24.0,
        "count": 24,
        "traceback": [f"hold {PWN_MD}:6", f"<module> {PWN_SCRIPT}:14"],
    }
    host = report["hosts"][0]
    host.setdefault("tables", {}).update(
        {
            "memray.peak": [site],
            "memray.leaked": [site],
            "memray.by_size": [site],
            "memray.by_count": [{k: v for k, v in site.items() if k != "size_mb"}],
        }
    )
    host["metrics"].update(
        {"memray.peak_mb": 24.133, "memray.leaked_mb": 24.04, "memray.total_allocated_mb": 38.5}
    )
    return report


def test_each_host_with_memray_tables_gets_a_memray_part_escaped():
    page = render_html(with_memray())
    assert page.count("<h3>memray") == 1
    for title in ("Sites at the peak", "Not freed when the program stopped"):
        assert title in page
    assert "Top sites by bytes allocated" in page and "Top sites by allocations" in page
    assert "<script>document.title" not in page
    assert (
        "<code>&#34;&gt;&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;</code>" in page
    )
    assert "&lt;module&gt; &#34;&gt;&lt;script&gt;" in page  # the folded stack, escaped
    assert len([t for t in start_tags(page) if t[0] == "script"]) == 1


def test_summary_md_lists_each_hosts_top_site_at_the_peak():
    text = render_markdown(with_memray())
    section = text.split("## memray per host", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith("| edge-01"))
    assert "&lt;script&gt;" in row and "<script>" not in row
    assert row.endswith("| 24.000 | 24.13 | 24.04 | 38.5 |")


def test_no_memray_no_part():
    report = fleet_report()
    assert "<h3>memray" not in render_html(report)
    assert "## memray per host" not in render_markdown(report)
