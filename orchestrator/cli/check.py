"""`fleetprof check`, `baseline set` and `history`: the nightly check and the history
it keeps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import click
from rich.markup import escape

from orchestrator.campaign.model import Campaign
from orchestrator.check.run import BaselineError, Exports, pin_baseline, run_check
from orchestrator.check.store import HistoryStore, StoreError
from orchestrator.cli.live import fail, make_console
from orchestrator.cli.options import (
    EXPORT_OPTIONS,
    HISTORY_OUT_HELP,
    JSON_NOT_TABLE,
    campaign_or_exit,
    export_options,
    forks_option,
    inventory_option,
    json_option,
    out_option,
    print_json,
)
from orchestrator.cli.run import execute
from orchestrator.report.history import history_table
from orchestrator.report.result import baseline_document, result_document
from orchestrator.report.terminal import render_check
from orchestrator.stages.flow import RunOutcome


def _writable(path: Path | None, option: str) -> None:
    """Fail before the run, not after it, when an export cannot be written."""
    if path is None:
        return
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        fail(f"{option} {path}: cannot write there (the folder must exist and be writable)")


@click.command(name="check")
@click.argument("campaign_file", type=click.Path(path_type=Path))
@inventory_option()
@out_option(HISTORY_OUT_HELP, file_okay=False)
@click.option(
    "--baseline",
    "baseline",
    metavar="last|RUN_DIR",
    help="Compare with the last run, or a run directory (default: the pinned baseline, "
    "else the last run).",
)
@export_options()
@forks_option()
@json_option()
def check_command(
    campaign_file: Path,
    inventory: str | None,
    out_root: Path,
    baseline: str | None,
    junit: Path | None,
    prometheus: Path | None,
    markdown: Path | None,
    forks: int | None,
    as_json: bool,
) -> None:
    """Run CAMPAIGN_FILE and judge every host against its peers and its own baseline.

    Exit 0: pass; 1: findings; 2: bad input; 3: hosts failed or missing, nothing else."""
    campaign = campaign_or_exit(campaign_file)
    for path, option in zip((junit, prometheus, markdown), EXPORT_OPTIONS, strict=True):
        _writable(path, option)
    console = make_console(stderr=as_json)

    def run_one(chosen: Campaign, limit: str | None, kind: str) -> RunOutcome:
        return execute(chosen, inventory, limit, out_root, forks, kind=kind, as_json=as_json)

    try:
        result = run_check(
            campaign,
            out_root,
            run_one,
            baseline=baseline,
            exports=Exports(junit, prometheus, markdown),
            note=lambda text: console.print(f"[cyan]check:[/] {escape(text)}", highlight=False),
        )
    except (BaselineError, StoreError) as err:
        fail(str(err))
    render_check(result.report, console)
    for text in result.notes:
        console.print(f"[cyan]check:[/] {escape(text)}", highlight=False)
    if as_json:
        print_json(
            result_document(
                result.report,
                result.run.run.path,
                command="check",
                interrupted=result.run.interrupted,
                notes=result.notes,
            )
        )
    sys.exit(result.exit_code)


@click.group(name="baseline")
def baseline_group() -> None:
    """The baseline each host is compared with by `fleetprof check`."""


@baseline_group.command(name="set")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@json_option()
def baseline_set(run_dir: Path, as_json: bool) -> None:
    """Pin RUN_DIR as its campaign's baseline (in the history of the output root above it)."""
    out_root = run_dir.resolve().parent.parent
    try:
        with HistoryStore.open(out_root) as store:
            campaign, run_id = pin_baseline(store, run_dir)
    except (BaselineError, StoreError) as err:
        fail(str(err))
    make_console(stderr=as_json).print(
        f"baseline of [bold]{escape(campaign)}[/]: {escape(run_id)} "
        f"(history: {escape(str(out_root / 'history.sqlite'))})",
        highlight=False,
    )
    if as_json:
        print_json(baseline_document(campaign, run_id, run_dir, out_root / "history.sqlite"))


@click.command(name="history")
@out_option(HISTORY_OUT_HELP, file_okay=False)
@click.option("--campaign", help="Only this campaign.")
@click.option("--host", help="Only this host.")
@click.option("--metric", help="Only this metric.")
@click.option("-n", "--runs", "limit", type=click.IntRange(1, 1000), default=30, show_default=True)
@json_option(JSON_NOT_TABLE)
def history_command(
    out_root: Path,
    campaign: str | None,
    host: str | None,
    metric: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Each host x metric over the last runs, with a sparkline."""
    if not (out_root / "history.sqlite").is_file():
        fail(f"{out_root}: no history here yet (history.sqlite appears with the first run)")
    try:
        with HistoryStore.open(out_root) as store:
            points = store.series(campaign=campaign, host=host, metric=metric, limit_runs=limit)
    except StoreError as err:
        fail(str(err))
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(p) for p in points], indent=2))
        return
    console = make_console()
    if not points:
        console.print("no recorded values match")
        return
    console.print(history_table(points, title=f"history: {out_root / 'history.sqlite'}"))
