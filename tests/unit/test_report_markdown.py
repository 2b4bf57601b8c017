"""summary.md for tickets and CI comments, rendered from a report.json-shaped dict.

Device strings are hostile: they must come out as literal text, never as a link, an
image, raw HTML, a code span, a heading, or a broken table row.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from orchestrator.report.markdown import md_text, render_markdown
from tests.support.reports import (
    PWN_IMG,
    PWN_MD,
    PWN_SCRIPT,
    cells,
    fleet_report,
    unescape,
)


@pytest.fixture
def summary() -> str:
    return render_markdown(fleet_report())


@pytest.mark.parametrize(
    "raw",
    [PWN_IMG, PWN_SCRIPT, PWN_MD, "[x](http://evil)", "![i](http://e/x.png)", "a|b", "`c`",
     "# h", "<b>&amp;</b>", "*em* _u_ ~~s~~", "back\\slash", "line\nbreak"],
)  # fmt: skip
def test_md_text_is_literal(raw: str) -> None:
    out = md_text(raw)
    assert "\n" not in out
    assert "<" not in out and ">" not in out
    assert not re.search(r"(?<!\\)[`|\[\]#*_]", out)  # every special is escaped
    assert unescape(out) == raw.replace("\n", " ")


def test_header_and_status_counts(summary: str) -> None:
    first = summary.splitlines()[0]
    assert first.startswith("# fleetprof: ")
    assert first.count("#") == 2 and "\\#" in first  # the campaign's # is escaped
    assert "**run** 20261125\\-111500" in summary or "**run** 20261125-111500-ab12" in summary
    assert "**5 hosts:** 4 ok · 1 partial · 0 failed · 0 unreachable · 0 skipped" in summary
    assert "**duration** 60.0 s" in summary


def _table(summary: str, heading: str) -> list[str]:
    section = summary[summary.index(heading) :].split("\n\n")[1]
    return section.splitlines()


def test_fleet_table_rows_keep_their_columns(summary: str) -> None:
    rows = _table(summary, "## Fleet")
    header = cells(rows[0])
    assert [c.strip() for c in header][:3] == ["host", "group", "status"]
    assert "fps" in rows[0] and "max °C" in rows[0]
    assert len(rows) == 2 + 5
    for row in rows:
        assert len(cells(row)) == len(header)  # a pipe in a name cannot add a column
    hot = next(r for r in rows if "document.title" in r and "partial" in r)
    assert "**partial**" in hot
    assert "12.0" in hot and "84.0" in hot and "| ⚠ 1 data-quality note |" in hot


def test_outliers_table(summary: str) -> None:
    rows = _table(summary, "## Outliers")
    assert len(rows) == 2 + 2
    assert "\\-27.30" in rows[2] or "-27.30" in rows[2]
    assert "+9.40" in rows[3]
    assert "function\\_share" in rows[3]
    for row in rows:
        assert len(cells(row)) == 7


def test_top_functions_per_group(summary: str) -> None:
    section = summary[summary.index("## Top functions per group") :]
    assert "### jetson\\-orin\\-nx" in section or "### jetson-orin-nx" in section
    assert "decode\\_frame" in section
    assert "55.6" in section
    assert section.count("### ") == 2


def test_group_top_functions_win_over_the_matrix() -> None:
    report = fleet_report()
    report["groups"][0]["top_functions"] = [
        {"function": "decode_frame", "file": "v.py", "self_pct": 44.0, "total_pct": 45.0}
    ]
    section = render_markdown(report).split("## Top functions per group")[1]
    first = section.split("### ")[1]
    assert "| decode\\_frame | v.py | 44.0 | 45.0 |" in first


def test_no_raw_html_or_links_survive(summary: str) -> None:
    assert "<" not in summary.replace("&lt;", "")
    assert not re.search(r"(?<!\\)\]\(", summary)  # no [text](url) link
    assert not re.search(r"(?<!\\)`", summary)


def test_sparse_and_empty_reports() -> None:
    assert render_markdown({}).startswith("# fleetprof: ")
    out = render_markdown({"hosts": [{"name": "x"}, "junk"], "outliers": "junk", "groups": [3]})
    assert "| x |" in out
    assert "None: every host is within its group." in out


def test_regressions_table_when_present() -> None:
    report: dict[str, Any] = dict(fleet_report(), regressions=[{"host": PWN_IMG, "delta": 1.5}])
    out = render_markdown(report)
    assert "## Regressions" in out
    assert "| 1.50 |" in out
