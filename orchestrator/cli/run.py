"""`fleetprof run`, `demo`, `report` and `collect`: a campaign run with live progress, and
the report of a run rebuilt or collected again.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click
from rich.markup import escape

from orchestrator.campaign.loader import load_campaign
from orchestrator.campaign.messages import CampaignError
from orchestrator.campaign.model import Campaign
from orchestrator.cli.live import ConsoleUi, fail, make_console
from orchestrator.cli.options import (
    RUN_OUT_HELP,
    campaign_or_exit,
    forks_option,
    install_interrupt,
    inventory_option,
    inventory_or_exit,
    json_option,
    limit_option,
    out_option,
    print_json,
)
from orchestrator.paths import REPO_ROOT
from orchestrator.report.result import result_document
from orchestrator.report.terminal import render_check, render_terminal
from orchestrator.stages.flow import (
    CampaignRun,
    RunOutcome,
    build_outputs,
    record_history,
    resume_collect,
)
from orchestrator.stages.inventory import DEFAULT_INVENTORY
from orchestrator.stages.rundir import RunDir, read_json

INTERRUPTED_MESSAGE = (
    "[yellow]interrupted: stopping; device sessions end at their own deadline. "
    "Press Ctrl-C again to exit at once.[/]"
)

DEMO_CAMPAIGN = REPO_ROOT / "campaigns" / "demo.yml"


def execute(
    campaign: Campaign,
    inventory_source: str | None,
    limit: str | None,
    out_root: Path,
    forks: int | None,
    kind: str = "run",
    as_json: bool = False,
) -> RunOutcome:
    """Run one campaign with live progress; with ``as_json`` every word goes to stderr,
    keeping stdout for the caller's JSON document."""
    inventory = inventory_or_exit(inventory_source, campaign.hosts, limit)
    try:
        run_dir = RunDir.create(out_root, campaign.name)
    except OSError as err:
        fail(f"-o {out_root}: cannot create the run directory there: {err.strerror or err}")
    console = make_console(stderr=as_json)
    cancel = install_interrupt(console, INTERRUPTED_MESSAGE)
    console.print(
        f"fleetprof: campaign [bold]{escape(campaign.name)}[/] on {len(inventory.hosts)} "
        f"host(s), {campaign.duration_s:g}s window"
    )
    with ConsoleUi(console) as ui:
        flow = CampaignRun(
            campaign,
            inventory,
            out_root,
            forks=forks,
            ui=ui,
            cancel=cancel,
            tool_log=lambda text: ui.note(escape(text)),
            kind=kind,
            run=run_dir,
        )
        outcome = flow.execute()
    render_terminal(outcome.report, console)
    console.print(
        f"report: {escape(str(outcome.run.path / 'report.html'))}", highlight=False, soft_wrap=True
    )
    return outcome


@click.command()
@click.argument("campaign_file", type=click.Path(path_type=Path))
@inventory_option()
@limit_option()
@out_option(RUN_OUT_HELP)
@forks_option()
@json_option()
def run(
    campaign_file: Path,
    inventory: str | None,
    limit: str | None,
    out_root: Path,
    forks: int | None,
    as_json: bool,
) -> None:
    """Run CAMPAIGN_FILE on the inventory's hosts and write a report."""
    campaign = campaign_or_exit(campaign_file)
    outcome = execute(campaign, inventory, limit, out_root, forks, as_json=as_json)
    finish(outcome, "run", as_json)


def finish(outcome: RunOutcome, command: str, as_json: bool) -> NoReturn:
    if as_json:
        print_json(
            result_document(
                outcome.report, outcome.run.path, command=command, interrupted=outcome.interrupted
            )
        )
    sys.exit(outcome.exit_code)


def demo_campaign() -> Campaign:
    """campaigns/demo.yml with the workload's path made absolute, so it runs from anywhere."""
    campaign = load_campaign(DEMO_CAMPAIGN)
    launch = campaign.target.launch
    assert launch is not None
    command = [
        str(REPO_ROOT / arg) if (REPO_ROOT / arg).is_file() else arg for arg in launch.command
    ]
    target = campaign.target.model_copy(
        update={"launch": launch.model_copy(update={"command": command})}
    )
    return campaign.model_copy(update={"target": target})


@click.command()
@out_option("Output root.")
@json_option()
def demo(out_root: Path, as_json: bool) -> None:
    """Profile the sample video pipeline on this machine (campaigns/demo.yml)."""
    try:
        campaign = demo_campaign()
    except CampaignError as err:
        fail(str(err))
    outcome = execute(campaign, str(DEFAULT_INVENTORY), None, out_root, None, as_json=as_json)
    finish(outcome, "demo", as_json)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@json_option()
def report(run_dir: Path, as_json: bool) -> None:
    """Rebuild report.json, report.html, summary.md and the exports from RUN_DIR alone."""
    if not (run_dir / "run.json").is_file():
        fail(f"{run_dir}: not a fleetprof run directory (no run.json)")
    campaign = campaign_or_exit(run_dir / "campaign.yml")
    result = build_outputs(RunDir(run_dir), campaign)
    console = make_console(stderr=as_json)
    problem = record_history(RunDir(run_dir), result)
    if problem:
        console.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)
    render_check(result, console)
    console.print(
        f"report: {escape(str(run_dir / 'report.html'))}", highlight=False, soft_wrap=True
    )
    if as_json:
        print_json(result_document(result, run_dir, command="report"))


@click.command(name="collect")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@inventory_option("The inventory (default: the one the run used).")
@forks_option()
@json_option()
def collect_command(run_dir: Path, inventory: str | None, forks: int | None, as_json: bool) -> None:
    """Fetch what the devices finished for RUN_DIR (its controller was lost) and build
    the report. Hosts already collected keep what they had."""
    if not (run_dir / "run.json").is_file():
        fail(f"{run_dir}: not a fleetprof run directory (no run.json)")
    try:
        campaign = load_campaign(run_dir / "campaign.yml")
        meta = read_json(run_dir / "run.json")
    except CampaignError as err:
        fail(str(err))
    except (OSError, ValueError) as err:
        fail(f"{run_dir}/run.json: unreadable: {err}")
    source = inventory or meta.get("inventory")
    loaded = inventory_or_exit(source, campaign.hosts)
    console = make_console(stderr=as_json)
    cancel = install_interrupt(console, INTERRUPTED_MESSAGE)
    with ConsoleUi(console) as ui:
        flow = CampaignRun(
            campaign,
            loaded,
            run_dir.parent.parent,
            forks=forks,
            ui=ui,
            cancel=cancel,
            kind=str(meta.get("kind") or "run"),
            run=RunDir(run_dir),
        )
        outcome = resume_collect(flow)
    render_check(outcome.report, console)
    console.print(
        f"report: {escape(str(run_dir / 'report.html'))}", highlight=False, soft_wrap=True
    )
    finish(outcome, "collect", as_json)
