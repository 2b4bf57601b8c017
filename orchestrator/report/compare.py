"""The comparison of two runs as terminal tables (``fleetprof compare``): per host and
fleet-wide, each function's share before and after, and the metrics that moved."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.check.compare import Comparison, FunctionChange, top_changes


def _pvalue(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def _changes_table(title: str, changes: list[FunctionChange], samples: tuple[int, int]) -> Table:
    table = Table(title=f"{title}: {samples[0]} -> {samples[1]} samples", title_justify="left")
    for column in ("function", "file", "A %", "B %", "delta", "q (BH)", "significant"):
        table.add_column(column, justify="right" if "%" in column or column == "delta" else "left")
    for change in changes:
        table.add_row(
            escape(change.function),
            escape(change.file or ""),
            f"{change.a_pct:.1f}",
            f"{change.b_pct:.1f}",
            f"{change.delta_pct:+.1f}",
            _pvalue(change.q_value),
            f"[bold]yes ({change.direction})[/]" if change.significant else "no",
        )
    return table


def render_comparison(result: Comparison, console: Console, top: int) -> None:
    console.print(
        f"A: {escape(result.a.campaign)} {escape(result.a.run_id)}   "
        f"B: {escape(result.b.campaign)} {escape(result.b.run_id)}   "
        f"alpha {result.alpha:g} (Benjamini-Hochberg across each table's functions)",
        highlight=False,
    )
    for label, hosts in (("only in A", result.only_in_a), ("only in B", result.only_in_b)):
        if hosts:
            console.print(f"hosts {label}: {escape(', '.join(hosts))}", highlight=False)
    if result.fleet is not None and len(result.hosts) > 1:
        console.print(
            _changes_table(
                "fleet (common hosts merged)",
                top_changes(result.fleet, top),
                (result.fleet.a_samples, result.fleet.b_samples),
            )
        )
    for host in result.hosts:
        console.print(
            f"\n[bold]{escape(host.host)}[/] ({escape(host.a_status)} -> {escape(host.b_status)})",
            highlight=False,
        )
        for note in host.notes:
            console.print(f"  [yellow]{escape(note)}[/]", highlight=False)
        if host.profile is not None:
            console.print(
                _changes_table(
                    "functions",
                    top_changes(host.profile, top),
                    (host.profile.a_samples, host.profile.b_samples),
                )
            )
        moved = [m for m in host.metrics if m.changed]
        if moved:
            table = Table(
                title=f"metrics changed by more than {result.metric_threshold_pct:g}% "
                "(single values: no significance test)",
                title_justify="left",
            )
            for column in ("metric", "A", "B", "change", "%", "verdict"):
                table.add_column(column, justify="left" if column == "metric" else "right")
            for m in moved:
                table.add_row(
                    escape(m.metric),
                    f"{m.a:g}",
                    f"{m.b:g}",
                    f"{m.delta:+g}",
                    f"{m.delta_pct:+.1f}" if m.delta_pct is not None else "new",
                    m.verdict or "",
                )
            console.print(table)
        else:
            console.print(f"  no metric moved by more than {result.metric_threshold_pct:g}%")
