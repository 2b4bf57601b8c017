"""Commands only: parse arguments, call one function, print. Exit codes (DESIGN.md):
0 every host ok; 2 bad input, nothing run; 3 the run finished but some hosts are not ok;
130 interrupted by the operator (a partial report is still written).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import NoReturn

import click
from rich.console import Console
from rich.markup import escape

from orchestrator import __version__
from orchestrator.ansible import REPO_ROOT
from orchestrator.campaign import Campaign, CampaignError, load_campaign
from orchestrator.console import ConsoleUi
from orchestrator.flow import CampaignRun, RunOutcome, build_outputs
from orchestrator.inspect import InspectError, inspect_file
from orchestrator.inventory import DEFAULT_INVENTORY, InventoryError, load_inventory
from orchestrator.report.terminal import render_inspection, render_terminal
from orchestrator.runs import RunDir

DEMO_CAMPAIGN = REPO_ROOT / "campaigns" / "demo.yml"
BAD_INPUT = 2


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")) or None)


def _fail(message: str) -> NoReturn:
    _console(stderr=True).print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True
    )
    sys.exit(BAD_INPUT)


def _install_interrupt(cancel: threading.Event, console: Console) -> None:
    """First Ctrl-C / SIGTERM: stop cleanly (runner cancelled, partial report). Second: now."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            os._exit(130)
        cancel.set()
        console.print(
            "[yellow]interrupted: stopping; device sessions end at their own deadline. "
            "Press Ctrl-C again to exit at once.[/]"
        )

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def execute(
    campaign: Campaign,
    inventory_source: str | None,
    limit: str | None,
    out_root: Path,
    forks: int | None,
) -> RunOutcome:
    try:
        inventory = load_inventory(inventory_source, campaign.hosts, limit)
    except InventoryError as err:
        _fail(str(err))
    console = _console()
    cancel = threading.Event()
    _install_interrupt(cancel, console)
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
        )
        outcome = flow.execute()
    render_terminal(outcome.report, console)
    console.print(f"report: {escape(str(outcome.run.path / 'report.html'))}", highlight=False)
    return outcome


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fleetprof")
def main() -> None:
    """Profile a fleet of devices at once, through Ansible, and compare them."""


@main.command()
@click.argument("campaign_file", type=click.Path(path_type=Path))
@click.option("-i", "--inventory", help="Any Ansible inventory (file, directory, host list).")
@click.option("-l", "--limit", help="Further limit the hosts (Ansible pattern).")
@click.option(
    "-o",
    "--out",
    "out_root",
    type=click.Path(path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Output root; the run goes to OUT/<campaign>/<run id>/.",
)
@click.option("-f", "--forks", type=click.IntRange(1, 1000), help="Parallel connections.")
def run(
    campaign_file: Path, inventory: str | None, limit: str | None, out_root: Path, forks: int | None
) -> None:
    """Run CAMPAIGN_FILE on the inventory's hosts and write a report."""
    try:
        campaign = load_campaign(campaign_file)
    except CampaignError as err:
        _fail(str(err))
    sys.exit(execute(campaign, inventory, limit, out_root, forks).exit_code)


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


@main.command()
@click.option(
    "-o",
    "--out",
    "out_root",
    type=click.Path(path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Output root.",
)
def demo(out_root: Path) -> None:
    """Profile the sample video pipeline on this machine (campaigns/demo.yml)."""
    try:
        campaign = demo_campaign()
    except CampaignError as err:
        _fail(str(err))
    sys.exit(execute(campaign, str(DEFAULT_INVENTORY), None, out_root, None).exit_code)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
def report(run_dir: Path) -> None:
    """Rebuild report.json, report.html and the summary from RUN_DIR alone."""
    if not (run_dir / "run.json").is_file():
        _fail(f"{run_dir}: not a fleetprof run directory (no run.json)")
    try:
        campaign = load_campaign(run_dir / "campaign.yml")
    except CampaignError as err:
        _fail(str(err))
    result = build_outputs(RunDir(run_dir), campaign)
    console = _console()
    render_terminal(result, console)
    console.print(f"report: {escape(str(run_dir / 'report.html'))}", highlight=False)


@main.command(name="inspect")
@click.argument("profiler")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def inspect_command(profiler: str, file: Path, as_json: bool) -> None:
    """Parse one raw artifact of PROFILER (e.g. py-spy.folded) and print what it holds."""
    try:
        data = inspect_file(profiler, file)
    except InspectError as err:
        _fail(str(err))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = _console()
    render_inspection(data, console)


if __name__ == "__main__":
    main()
