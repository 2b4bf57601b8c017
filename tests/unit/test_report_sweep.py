"""A sweep in report.html and summary.md: per KPI a chart and a table with each value's
group median and range and the best value; names from the device escaped."""

from __future__ import annotations

from typing import Any

from orchestrator.report.html import render_html
from orchestrator.report.markdown import render_markdown
from tests.support.reports import fleet_report as sample_report


def swept_report() -> dict[str, Any]:
    report = sample_report()
    report["sweep"] = {
        "variable": "BATCH",
        "values": ["1", "4", "8"],
        "groups": {
            "jetson<b>": {
                "items_per_s": {
                    "values": {
                        "1": {"median": 19.6, "min": 19.2, "max": 19.9, "n": 3},
                        "8": {"median": 61.0, "min": 60.1, "max": 62.5, "n": 3},
                    },
                    "best": "8",
                }
            }
        },
    }
    return report


def test_the_page_has_a_chart_and_a_table_per_kpi() -> None:
    page = render_html(swept_report())
    section = page[page.index('id="sweep"') :]
    assert "over BATCH: 1, 4, 8" in section
    assert "BATCH=4" in section and "19.600" in section and "[60.100\u201362.500, n=3]" in section
    assert "jetson&lt;b&gt;" in section and "jetson<b>" not in section
    assert "<svg" in section[: section.index("</section>")]


def test_summary_md_has_the_table_with_the_best_value() -> None:
    text = render_markdown(swept_report())
    assert "## Sweep over BATCH" in text and "### items\\_per\\_s" in text
    row = next(line for line in text.splitlines() if line.startswith("| jetson"))
    assert "19.600" in row and "61.000" in row and row.endswith("| 8 |")
    assert "&lt;b&gt;" in row


def test_no_sweep_no_section() -> None:
    assert 'id="sweep"' not in render_html(sample_report())
    assert "## Sweep" not in render_markdown(sample_report())
