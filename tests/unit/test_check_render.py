"""The nightly check in summary.md and report.html: verdict, baseline, findings (confirmed
and not), the regressions with their fingerprint and stability, and the trend charts from
``history{}`` (docs/check.md). Device strings stay literal text; a report without
``check{}`` or ``history{}`` renders as before.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from orchestrator.report.charts import OTHER_HOSTS_COLOUR, PALETTE, trend_charts
from orchestrator.report.html import render_html
from orchestrator.report.markdown import check_markdown, render_markdown
from tests.support.check_reports import BASELINE_RUN, NASTY, check_report, passing_report
from tests.support.reports import cells, fleet_report, start_tags, unescape

# -- Markdown ------------------------------------------------------------------------------


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    rest = text[start + len(heading) :]
    end = min((rest.index(h) for h in ("\n## ", "\n### ") if h in rest), default=len(rest))
    return rest[:end]


def _rows(section: str) -> list[str]:
    return [line for line in section.splitlines() if line.startswith("|")]


def test_markdown_starts_with_the_check() -> None:
    summary = render_markdown(check_report())
    assert summary.index("## Check") < summary.index("## Fleet")
    check = _section(summary, "## Check")
    assert "**verdict: 3 findings** (exit code 1) · 4 hosts judged" in check
    assert f"**baseline** {BASELINE_RUN} (pinned) · /srv/reports/nightly/" in check
    assert "**regression threshold** 5.0 %" in check
    assert "**tests** 12" in check
    # The regressions live in the check's section, not again at the end.
    assert summary.count("Regressions") == 1
    assert "\n## Regressions" not in summary


def test_markdown_findings_and_unconfirmed_apart() -> None:
    summary = render_markdown(check_report())
    findings = _rows(_section(summary, "### Findings"))
    assert len(findings) == 2 + 3
    for row in findings:
        assert len(cells(row)) == 4  # a | in a host name cannot add a column
    assert [unescape(c).strip() for c in cells(findings[2])][:2] == [
        "regression",
        NASTY.replace("\n", " "),
    ]
    unconfirmed = _section(summary, "### Unconfirmed")
    assert "do not fail the check" in unconfirmed
    assert len(_rows(unconfirmed)) == 2 + 2
    assert "thermal.max\\_c" in unconfirmed


def test_markdown_regressions_table() -> None:
    summary = render_markdown(check_report())
    rows = _rows(_section(summary, "### Regressions"))
    header = [c.strip() for c in cells(rows[0])]
    assert header == [
        "host", "metric", "baseline", "value", "change %", "q", "confirmed", "stability",
        "fingerprint",
    ]  # fmt: skip
    assert len(rows) == 2 + 2
    nasty = [unescape(c).strip() for c in cells(rows[2])]
    assert nasty[:8] == [
        NASTY.replace("\n", " "), "probe.cpu.ops_per_s", "1,000.00", "800.00", "-20.0",
        "0.0021", "yes (re-measure -19.5 %)", "3/5",
    ]  # fmt: skip
    assert nasty[8] == (
        "kernel: 5.10.120-tegra (peers: 5.15.136-tegra); "
        "governor: <b>powersave</b> (peers: performance (2))"
    )
    edge = [unescape(c).strip() for c in cells(rows[3])]
    assert edge[6] == "no (re-measure -0.2 %)"


def test_markdown_escapes_device_strings_in_the_check() -> None:
    summary = render_markdown(check_report())
    assert "<script>" not in summary and "<b>" not in summary and "<img" not in summary
    assert "&lt;script&gt;" in summary
    for row in _rows(summary):
        assert "\n" not in row


def test_markdown_verdicts() -> None:
    assert "**verdict: pass** (exit code 0)" in render_markdown(passing_report())
    report = check_report()
    report["check"].update(verdict="incomplete", exit_code=3)
    report["check"]["findings"] = report["check"]["findings"][1:]
    report["check"]["baseline"] = {"run_id": None, "source": "none", "path": None}
    summary = render_markdown(report)
    assert "**verdict: incomplete · 2 findings** (exit code 3)" in summary
    assert "**baseline** none (nothing to compare with)" in summary
    assert "No confirmed findings." in render_markdown(passing_report())


def test_check_markdown_is_the_check_then_the_summary() -> None:
    report = check_report()
    out = check_markdown(report)
    assert out == render_markdown(report)
    assert out.index("**verdict:") < out.index("## Fleet")
    plain = fleet_report()
    assert "## Check" not in render_markdown(plain)
    assert "This report has no check results." in check_markdown(plain)
    assert check_markdown(plain).endswith(render_markdown(plain).split("## Fleet", 1)[1])


def test_markdown_regressions_without_a_check_keep_their_section() -> None:
    report = check_report()
    del report["check"]
    summary = render_markdown(report)
    assert "## Check" not in summary
    rows = _rows(_section(summary, "## Regressions"))
    assert len(rows) == 4 and "3/5" in rows[2]


# -- HTML ----------------------------------------------------------------------------------


def _between(page: str, start: str, end: str = "</section>") -> str:
    at = page.index(start)
    return page[at : page.index(end, at)]


def test_html_check_section_at_the_top() -> None:
    page = render_html(check_report())
    assert page.index('<section id="check">') < page.index("<h2>Fleet</h2>")
    check = _between(page, '<section id="check">')
    assert '<span class="badge big v-findings">3 findings</span>' in check
    assert "exit code 1" in check and "4 hosts judged" in check
    assert BASELINE_RUN in check and "(pinned)" in check
    findings = _between(check, '<table id="check-findings">', "</table>")
    assert findings.count("<tr>") == 1 + 3
    assert "not in this run" in findings
    unconfirmed = _between(check, '<table id="check-unconfirmed">', "</table>")
    assert unconfirmed.count("<tr>") == 1 + 2
    assert "do not fail the check" in check


def test_html_regressions_with_fingerprint_and_stability() -> None:
    page = render_html(check_report())
    table = _between(page, '<table id="regressions">', "</table>")
    assert table.count("<tr>") == 1 + 2
    assert "-20.0" in table and "0.0021" in table and "3/5" in table and "1/5" in table
    assert "kernel: 5.10.120-tegra (peers: 5.15.136-tegra)" in table
    assert "governor: &lt;b&gt;powersave&lt;/b&gt; (peers: performance (2))" in table
    assert 'class="conf-yes"' in table and 'class="conf-no"' in table
    assert "welch-t, p = 0.0004, n = 5 (baseline 5)" in table  # the q cell's tooltip
    assert 'href="#host-2"' in table  # the regressed host links to its section
    assert page.count('<table id="regressions">') == 1  # not again below


def test_html_escapes_device_strings_in_check_and_trends() -> None:
    page = render_html(check_report())
    assert "<script>alert" not in page and "<b>powersave" not in page and "<img" not in page
    assert page.count("<script") == 1  # the page's own
    elements = start_tags(page)
    assert not [(tag, a) for tag, attrs in elements for a, _ in attrs if a.startswith("on")]
    assert not [tag for tag, _ in elements if tag in ("img", "iframe", "object", "embed")]
    assert "edge &#34;02&#34; \\ &lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_html_fleet_report_with_a_check_still_escapes_everything() -> None:
    report = fleet_report()
    check = check_report()
    report.update(check=check["check"], regressions=check["regressions"], history=check["history"])
    page = render_html(report)
    for raw in ("<script>document", "<img src", "<script>alert"):
        assert raw not in page
    assert page.count("<script") == 1
    hrefs = [v for _, attrs in start_tags(page) for a, v in attrs if a in ("href", "src")]
    assert all(re.fullmatch(r"#host-\d+", v or "") for v in hrefs)


def test_html_trend_charts_one_line_per_host() -> None:
    page = render_html(check_report())
    trends = _between(page, '<section id="trends">')
    svgs = [ET.fromstring(s) for s in re.findall(r'<svg class="chart".*?</svg>', trends, re.S)]
    assert len(svgs) == 2  # one per metric of history.series
    cpu = svgs[0]  # the flagged metric comes first
    assert (cpu.findtext("title") or "").startswith("probe.cpu.ops_per_s")
    groups = cpu.findall("g")
    assert [g.findtext("title") for g in groups] == ["edge-01", NASTY, "edge-03"]
    ticks = [t.text for t in cpu.iter("text")]
    assert "11-25 02:00" in ticks and "run" in ticks
    tips = [t.text or "" for t in cpu.iter("title")]
    assert f"{NASTY} · 20261125-020000-ab12 · 2026-11-25T02:00:00+00:00: 800" in tips
    nasty_line = groups[1]
    assert nasty_line.find("polyline").get("stroke-width") == "2.5"  # flagged: thicker
    # edge-03 has no value for the first run: its line starts at the second.
    assert len(groups[2].findall("circle")) == 2


def test_trend_charts_grey_out_unflagged_hosts_in_a_big_fleet() -> None:
    hosts = {f"edge-{i:02}": [100.0, 101.0 + i] for i in range(30)}
    history = {
        "runs": [{"run_id": "a"}, {"run_id": "b"}],
        "series": {"probe.x_per_s": hosts, "other": {"edge-00": [None, None]}},
    }
    (chart,) = trend_charts(history, {"probe.x_per_s": ["edge-07"]})
    assert chart.legend == [("edge-07", PALETTE[0]), ("29 other hosts", OTHER_HOSTS_COLOUR)]
    svg = ET.fromstring(str(chart.svg))
    assert [g.get("stroke") for g in svg.findall("g")].count(OTHER_HOSTS_COLOUR) == 29
    assert svg.findall("g")[-1].findtext("title") == "edge-07"  # drawn on top
    assert trend_charts(None) == [] and trend_charts({"runs": [], "series": {}}) == []


def test_html_without_check_or_history_renders_as_before() -> None:
    page = render_html(fleet_report())
    assert 'id="check"' not in page and 'id="trends"' not in page
    assert "<h2>Regressions</h2>" not in page  # regressions: [] shows nothing
    report = check_report()
    del report["check"], report["history"]
    page = render_html(report)
    assert 'id="check"' not in page and 'id="trends"' not in page
    section = _between(page, "<h2>Regressions</h2>")
    assert '<table id="regressions">' in section and "3/5" in section


def test_html_passing_check() -> None:
    page = render_html(passing_report())
    check = _between(page, '<section id="check">')
    assert '<span class="badge big v-pass">pass</span>' in check
    assert "No confirmed findings." in check
    assert "check-unconfirmed" not in check and 'id="regressions"' not in check


def test_unknown_regression_keys_get_a_column() -> None:
    report: dict[str, Any] = check_report()
    report["regressions"][0]["effect_size"] = 1.75
    page = render_html(report)
    assert "<th>effect_size</th>" in page and "<td>1.75</td>" in page
    summary = render_markdown(report)
    assert "effect\\_size" in summary and "| 1.75 |" in summary


def test_every_outlier_line_names_its_metric_and_the_function_of_a_share() -> None:
    from rich.console import Console

    from orchestrator.report.terminal import outlier_line

    share = {
        "host": "edge-3",
        "hw_model": "orin",
        "metric": "function.self_pct",
        "value": 41.0,
        "group_median": 10.5,
        "robust_z": 10.3,
        "kind": "function_share",
        "function": "decode_frame",
        "file": "pipeline.py",
        "rule": "robust_z",
    }
    loss = {
        "host": "edge-4",
        "hw_model": "orin",
        "metric": "probe.cpu.all_ops_per_s",
        "value": 629852.0,
        "group_median": 1700000.0,
        "robust_z": -1.8,
        "kind": "metric",
        "function": None,
        "file": None,
        "rule": "relative_loss",
        "peers_median": 1900000.0,
    }
    console = Console(width=300, record=True, color_system=None)
    for outlier in (share, loss):
        console.print(outlier_line(outlier))
    first, second = console.export_text().splitlines()
    assert "function.self_pct of decode_frame (pipeline.py) = 41.00" in first
    assert "probe.cpu.all_ops_per_s = 629,852.00" in second
    assert "relative loss against its peers' 1,900,000.00" in second
    # The markdown table says the rule too.
    text = render_markdown({"hosts": [], "outliers": [share, loss]})
    assert "metric \\(relative loss\\)" in text  # markdown-escaped parentheses
    assert "decode\\_frame (pipeline.py)" in text
