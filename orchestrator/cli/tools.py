"""`fleetprof tools fetch` (the controller's tool cache) and `fleetprof inspect` (one raw
artifact of a profiler, parsed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from orchestrator import toolcache
from orchestrator.cli.live import fail, make_console
from orchestrator.cli.options import JSON_NOT_TABLE, JSON_NOT_TABLES, campaign_or_exit, json_option
from orchestrator.report.terminal import render_inspection
from orchestrator.stages.inspect import InspectError, inspect_file


@click.group(name="tools")
def tools_group() -> None:
    """The controller's tool cache: the py-spy builds fleetprof pushes to devices."""


@tools_group.command(name="fetch")
@click.option(
    "--arch",
    "arches",
    multiple=True,
    metavar="ARCH",
    help="An architecture (uname -m spelling; repeat). Default: every one py-spy publishes.",
)
@json_option(JSON_NOT_TABLE)
def tools_fetch(arches: tuple[str, ...], as_json: bool) -> None:
    """Fill the tool cache from the package index and verify every binary, so that a
    controller without internet can use a copy of it (FLEETPROF_CACHE_DIR).

    Exit 0: every architecture cached or without a build; 1: the index could not be
    reached or a file did not verify (the message says what to do); 2: bad input.
    """
    wanted = [toolcache.normalize_arch(arch) for arch in arches] or list(toolcache.SUPPORTED_ARCHES)
    unknown = [arch for arch in wanted if arch not in toolcache.SUPPORTED_ARCHES]
    if unknown:
        fail(
            f"--arch {', '.join(unknown)}: not an architecture py-spy is built for "
            f"(one of {', '.join(toolcache.SUPPORTED_ARCHES)})"
        )
    err = make_console(stderr=True)
    try:
        results = toolcache.fill_pyspy_cache(wanted, log=lambda line: err.print(escape(line)))
    except toolcache.ToolCacheError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    rows: list[dict[str, Any]] = [
        {"arch": arch, "cached": False, "reason": str(found)}
        if isinstance(found, toolcache.ToolUnavailable)
        else {
            "arch": arch,
            "cached": True,
            "version": found.version,
            "path": str(found.path),
            "sha256": found.sha256,
        }
        for arch, found in results.items()
    ]
    if as_json:
        click.echo(json.dumps({"cache": str(toolcache.cache_dir()), "tools": rows}, indent=2))
        return
    table = Table(title=f"py-spy in {escape(str(toolcache.cache_dir()))}")
    table.add_column("arch")
    table.add_column("version")
    table.add_column("sha256 / reason", overflow="fold")
    for row in rows:
        detail = row["sha256"] if row["cached"] else row["reason"]
        table.add_row(str(row["arch"]), str(row.get("version", "-")), escape(str(detail)))
    make_console().print(table)


@click.command(name="inspect")
@click.argument("profiler")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--campaign",
    "campaign_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Parse with this campaign's settings (the run's campaign.yml), not the defaults.",
)
@json_option(JSON_NOT_TABLES)
def inspect_command(profiler: str, file: Path, campaign_file: Path | None, as_json: bool) -> None:
    """Parse one raw artifact of PROFILER (e.g. py-spy.folded) and print what it holds."""
    campaign = None if campaign_file is None else campaign_or_exit(campaign_file)
    try:
        data = inspect_file(profiler, file, campaign)
    except InspectError as err:
        fail(str(err))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = make_console()
    render_inspection(data, console)
