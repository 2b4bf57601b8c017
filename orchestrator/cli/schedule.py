"""`fleetprof schedule install|list|remove`: run `fleetprof check` every night (a systemd
timer or a crontab line).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.live import fail, make_console
from orchestrator.cli.options import (
    EXPORT_OPTIONS,
    HISTORY_OUT_HELP,
    JSON_NOT_TABLE,
    campaign_or_exit,
    export_options,
    inventory_option,
    json_option,
    out_option,
    print_json,
)
from orchestrator.report.result import schedule_document
from orchestrator.schedule import (
    ScheduleError,
    ScheduleSpec,
    check_argv,
    install,
    list_schedules,
    remove,
)


@click.group(name="schedule")
def schedule_group() -> None:
    """Run `fleetprof check` every night: a systemd timer, or a crontab line."""


UNIT_DIR_OPTION = click.option(
    "--unit-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the systemd units go (default: /etc/systemd/system; with --user "
    "~/.config/systemd/user). Given, nothing is activated: the hints say how.",
)


CRON_FILE_OPTION = click.option(
    "--cron-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Use this crontab file instead of systemd, /etc/cron.d or the user's crontab.",
)


USER_OPTION = click.option("--user", is_flag=True, help="The user's systemd/crontab, not root's.")


def _fleetprof_script() -> Path:
    """The console script beside this interpreter (the venv's), whatever ran this one."""
    beside = Path(sys.executable).parent / "fleetprof"
    return beside if beside.is_file() else Path(sys.argv[0]).resolve()


@schedule_group.command(name="install")
@click.argument("campaign_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--at", "at", required=True, metavar="HH:MM", help="Time of day (local).")
@inventory_option()
@out_option(HISTORY_OUT_HELP, file_okay=False)
@click.option("--name", default="", help="Schedule name (default: fleetprof-<campaign>).")
@export_options(prometheus_help="Prometheus.")
@USER_OPTION
@UNIT_DIR_OPTION
@CRON_FILE_OPTION
@json_option()
def schedule_install(
    campaign_file: Path,
    at: str,
    inventory: str | None,
    out_root: Path,
    name: str,
    junit: Path | None,
    prometheus: Path | None,
    markdown: Path | None,
    user: bool,
    unit_dir: Path | None,
    cron_file: Path | None,
    as_json: bool,
) -> None:
    """Run `fleetprof check CAMPAIGN_FILE` every day at --at."""
    campaign_or_exit(campaign_file)
    extra: list[str] = []
    for option, path in zip(EXPORT_OPTIONS, (junit, prometheus, markdown), strict=True):
        if path is not None:
            extra += [option, str(path.resolve())]
    try:
        spec = ScheduleSpec(
            campaign=campaign_file,
            at=at,
            inventory=inventory,
            out_root=out_root,
            user=user,
            extra=tuple(extra),
            name=name,
        )
        argv = check_argv(spec, _fleetprof_script())
        result = install(spec, argv, unit_dir=unit_dir, cron_file=cron_file)
    except ScheduleError as err:
        fail(str(err))
    console = make_console(stderr=as_json)
    state = "active" if result.activated else "written, not active yet"
    console.print(f"{escape(spec.name)}: {result.kind} schedule at {spec.at} ({state})")
    for path in result.paths:
        console.print(f"  {escape(str(path))}", highlight=False)
    for hint in result.hints:
        console.print(f"  [yellow]next:[/] {escape(hint)}", highlight=False)
    if as_json:
        print_json(
            schedule_document(
                "installed",
                spec.name,
                paths=result.paths,
                kind=result.kind,
                at=spec.at,
                activated=result.activated,
                command=argv,
                hints=result.hints,
            )
        )


@schedule_group.command(name="list")
@USER_OPTION
@UNIT_DIR_OPTION
@CRON_FILE_OPTION
@json_option(JSON_NOT_TABLE)
def schedule_list(user: bool, unit_dir: Path | None, cron_file: Path | None, as_json: bool) -> None:
    """The schedules fleetprof installed."""
    try:
        found = list_schedules(unit_dir=unit_dir, user=user, cron_file=cron_file)
    except ScheduleError as err:
        fail(str(err))
    if as_json:
        rows = [
            {
                **dataclasses.asdict(s),
                "paths": [str(p) for p in s.paths],
                "workdir": str(s.workdir) if s.workdir else None,
            }
            for s in found
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="fleetprof schedules", title_justify="left")
    for column in ("name", "kind", "at", "command", "files"):
        table.add_column(column)
    for s in found:
        table.add_row(
            escape(s.name),
            s.kind,
            s.at,
            escape(shlex.join(s.command)),
            escape(", ".join(str(p) for p in s.paths)),
        )
    make_console().print(table)


@schedule_group.command(name="remove")
@click.argument("name")
@USER_OPTION
@UNIT_DIR_OPTION
@CRON_FILE_OPTION
@json_option()
def schedule_remove(
    name: str, user: bool, unit_dir: Path | None, cron_file: Path | None, as_json: bool
) -> None:
    """Remove the schedule NAME (its timer and service, or its crontab line)."""
    try:
        removed = remove(name, unit_dir=unit_dir, user=user, cron_file=cron_file)
    except ScheduleError as err:
        fail(str(err))
    console = make_console(stderr=as_json)
    for path in removed:
        console.print(f"removed {escape(name)} from {escape(str(path))}", highlight=False)
    if as_json:
        print_json(schedule_document("removed", name, paths=removed))
