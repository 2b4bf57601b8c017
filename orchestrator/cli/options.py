"""What every command shares: the option declarations (-i, -l, -o, -f, --json), reading
the campaign and the inventory (bad input: exit 2), the one interrupt handler, and
printing a JSON document on stdout."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click
from rich.console import Console

from orchestrator.campaign.loader import load_campaign
from orchestrator.campaign.messages import CampaignError
from orchestrator.campaign.model import Campaign
from orchestrator.cli.live import fail
from orchestrator.stages.ansible import kill_playbooks
from orchestrator.stages.inventory import Inventory, InventoryError, load_inventory

F = TypeVar("F", bound=Callable[..., Any])

INVENTORY_HELP = "Any Ansible inventory (file, directory, host list)."
RUN_OUT_HELP = "Output root; the run goes to OUT/<campaign>/<run id>/."
HISTORY_OUT_HELP = "Output root; it holds the runs and their history (history.sqlite)."
# --json: one document on stdout; its help says what the command prints instead.
JSON_HELP = "Print one JSON document on stdout (see docs/commands.md); messages go to stderr."
JSON_NOT_TABLE = "Print JSON instead of a table."
JSON_NOT_TABLES = "Print JSON instead of tables."
# Ctrl-C exits with 130, as a shell reports a process ended by SIGINT.
INTERRUPTED = 130


def inventory_option(help: str = INVENTORY_HELP) -> Callable[[F], F]:
    return click.option("-i", "--inventory", help=help)


def limit_option() -> Callable[[F], F]:
    return click.option("-l", "--limit", help="Further limit the hosts (Ansible pattern).")


def out_option(help: str, *, file_okay: bool = True) -> Callable[[F], F]:
    return click.option(
        "-o",
        "--out",
        "out_root",
        type=click.Path(path_type=Path, file_okay=file_okay),
        default=Path("reports"),
        show_default=True,
        help=help,
    )


def forks_option() -> Callable[[F], F]:
    return click.option("-f", "--forks", type=click.IntRange(1, 1000), help="Parallel connections.")


def json_option(help: str = JSON_HELP) -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=help)


# The check's exports, in the order the check writes them and a schedule passes them on.
EXPORT_OPTIONS = ("--junit", "--prometheus", "--markdown")
PROMETHEUS_HELP = "Prometheus text file (node_exporter textfile collector)."


def export_options(prometheus_help: str = PROMETHEUS_HELP) -> Callable[[F], F]:
    """--junit, --prometheus and --markdown: a file each, written by the check."""
    helps = {"--junit": "JUnit XML.", "--prometheus": prometheus_help, "--markdown": "Markdown."}

    def apply(command: F) -> F:
        for option in reversed(EXPORT_OPTIONS):
            kind = click.Path(path_type=Path, dir_okay=False)
            command = click.option(option, type=kind, help=helps[option])(command)
        return command

    return apply


def campaign_or_exit(path: Path) -> Campaign:
    """The campaign in ``path``; a bad one ends the command with its message (exit 2)."""
    try:
        return load_campaign(path)
    except CampaignError as err:
        fail(str(err))


def inventory_or_exit(source: str | None, hosts: str, limit: str | None = None) -> Inventory:
    """The inventory's hosts for a campaign; a bad inventory ends the command (exit 2)."""
    try:
        return load_inventory(source, hosts, limit)
    except InventoryError as err:
        fail(str(err))


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2))


def install_interrupt(console: Console, message: str) -> threading.Event:
    """First Ctrl-C / SIGTERM: set the returned event (the stage in flight is cancelled,
    the command stops cleanly and says ``message``). Second: stop the playbooks and
    exit 130 at once, whatever the command was doing."""
    cancel = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            kill_playbooks()
            os._exit(INTERRUPTED)
        cancel.set()
        console.print(message)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return cancel
