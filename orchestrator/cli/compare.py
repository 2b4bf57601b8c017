"""`fleetprof compare RUN_A RUN_B`: which functions and metrics changed between two runs
(the tables: orchestrator/report/compare.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape

from orchestrator.check.compare import DEFAULT_ALPHA, CompareError, compare_runs
from orchestrator.cli.live import fail, make_console
from orchestrator.cli.options import JSON_NOT_TABLES, json_option
from orchestrator.report.compare import render_comparison
from orchestrator.stages.finished import RunLoadError, load_run


@click.command(name="compare")
@click.argument("run_a", type=click.Path(path_type=Path, file_okay=False))
@click.argument("run_b", type=click.Path(path_type=Path, file_okay=False))
@json_option(JSON_NOT_TABLES)
@click.option(
    "--alpha",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=DEFAULT_ALPHA,
    show_default=True,
    help="False discovery rate for calling a function's change significant.",
)
@click.option(
    "--top", type=click.IntRange(1), default=10, show_default=True, help="Functions per table."
)
def compare_command(run_a: Path, run_b: Path, as_json: bool, alpha: float, top: int) -> None:
    """Compare RUN_A (before) with RUN_B (after): per host and fleet-wide, which
    functions' shares changed significantly and which metrics moved."""
    try:
        report_a, profiles_a = load_run(run_a, "RUN_A")
        report_b, profiles_b = load_run(run_b, "RUN_B")
    except RunLoadError as err:
        fail(str(err))
    try:
        result = compare_runs(report_a, report_b, profiles_a, profiles_b, alpha=alpha)
    except CompareError as err:
        fail(str(err))
    errors = make_console(stderr=True)
    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    render_comparison(result, make_console(), top)
