"""``fleetprof history``'s table and sparklines, as a user reads them on the terminal."""

from __future__ import annotations

import pytest
from rich.console import Console
from rich.table import Table

from orchestrator.check.store import SeriesPoint
from orchestrator.report.history import history_table, sparkline
from orchestrator.report.terminal import MISSING


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], ""),
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], "▁▂▃▄▅▆▇█"),
        ([0.0, 100.0], "▁█"),
        ([5.0, 5.0, 5.0], "▄▄▄"),
        ([42.0], "▄"),
        ([1.0, None, 3.0], "▁ █"),
        ([None, None], "  "),
        ([1.0, float("nan"), 2.0], "▁ █"),
        ([-10.0, 0.0, 10.0], "▁▅█"),
    ],
)
def test_sparkline(values: list[float | None], expected: str) -> None:
    assert sparkline(values) == expected


def point(
    run: int,
    value: float,
    *,
    host: str = "edge-1",
    metric: str = "probe.cpu_ms",
    campaign: str = "nightly",
) -> SeriesPoint:
    return SeriesPoint(
        f"r{run}", f"2025-03-0{run + 1}T02:00:00+00:00", campaign, host, metric, value
    )


def rendered(table: Table) -> list[str]:
    console = Console(width=160, record=True, color_system=None)
    console.print(table)
    return console.export_text().splitlines()


def cells(table: Table) -> list[list[str]]:
    """The table's rows as the plain text of their cells."""
    columns = [[str(cell) for cell in column.cells] for column in table.columns]
    return [list(row) for row in zip(*columns, strict=True)]


def test_one_row_per_host_and_metric_with_first_latest_change_and_trend() -> None:
    points = [
        point(0, 10.0),
        point(1, 12.0),
        point(2, 15.0),
        point(0, 2.0, host="edge-2"),
        point(2, 2.0, host="edge-2"),
        point(1, 1500.0, metric="mem.rss_mb"),
    ]
    table = history_table(points, title="nightly: last 3 runs")

    assert [column.header for column in table.columns] == [
        "host",
        "metric",
        "runs",
        "first",
        "latest",
        "change",
        "trend",
    ]
    assert cells(table) == [
        ["edge-1", "mem.rss_mb", "1", "1500", "1500", MISSING, " ▄ "],
        ["edge-1", "probe.cpu_ms", "3", "10", "15", "+50.0%", "▁▄█"],
        # edge-2 missed the second run: a gap on the campaign's shared axis.
        ["edge-2", "probe.cpu_ms", "2", "2", "2", "+0.0%", "▄ ▄"],
    ]
    assert rendered(table)[0].strip() == "nightly: last 3 runs"


def test_several_campaigns_get_a_column_and_an_axis_each() -> None:
    points = [
        point(0, 1.0, campaign="nightly", host="b"),
        point(0, 1.0, campaign="demo", host="z"),
        point(1, 3.0, campaign="demo", host="a"),
    ]
    table = history_table(points, title="history")
    assert table.columns[0].header == "campaign"
    assert [(row[0], row[1], row[-1]) for row in cells(table)] == [
        ("demo", "a", " ▄"),
        ("demo", "z", "▄ "),
        ("nightly", "b", "▄"),
    ]


def test_large_values_and_a_zero_start() -> None:
    row = cells(history_table([point(0, 0.0), point(1, 123456.7)], title="t"))[0]
    assert row[3:] == ["0", "123,457", MISSING, "▁█"]


def test_device_strings_print_literally() -> None:
    hostile = "[bold red]pwn[/bold red]\x1b[2J"
    lines = rendered(history_table([point(0, 1.0, host=hostile)], title="[blink]t[/blink]"))
    text = "\n".join(lines)
    assert "[bold red]pwn[/bold red]" in text
    assert "\x1b" not in text and "\\x1b" in text
    assert lines[0].strip() == "[blink]t[/blink]"


def test_no_points_is_an_empty_table() -> None:
    table = history_table([], title="nothing recorded")
    assert table.row_count == 0
