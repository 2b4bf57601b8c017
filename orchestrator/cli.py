"""Commands only: parse arguments, call one function, print. Exit codes (DESIGN.md):
0 every host ok; 2 bad input, nothing run; 3 the run finished but some hosts are not ok;
130 interrupted by the operator (a partial report is still written).

With ``--json`` stdout carries exactly one JSON document (shapes: docs/commands.md and
orchestrator/report/result.py) and everything else goes to stderr; on bad input (exit 2)
stdout stays empty and the message goes to stderr, as without ``--json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click
from click.shell_completion import get_completion_class
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator import __version__, toolcache
from orchestrator.campaign.loader import load_campaign
from orchestrator.campaign.messages import CampaignError
from orchestrator.campaign.model import Campaign
from orchestrator.check.compare import (
    DEFAULT_ALPHA,
    CompareError,
    Comparison,
    FunctionChange,
    compare_runs,
    top_changes,
)
from orchestrator.check.run import BaselineError, Exports, pin_baseline, run_check
from orchestrator.check.store import HistoryStore, StoreError
from orchestrator.cli_stages import stages
from orchestrator.console import ConsoleUi, fail, make_console
from orchestrator.report.history import history_table
from orchestrator.report.result import baseline_document, result_document, schedule_document
from orchestrator.report.terminal import render_check, render_inspection, render_terminal
from orchestrator.schedule import (
    ScheduleError,
    ScheduleSpec,
    check_argv,
    install,
    list_schedules,
    remove,
)
from orchestrator.stages.ansible import REPO_ROOT, kill_playbooks
from orchestrator.stages.finished import RunLoadError, load_run
from orchestrator.stages.flow import (
    CampaignRun,
    RunOutcome,
    build_outputs,
    record_history,
    resume_collect,
)
from orchestrator.stages.inspect import InspectError, inspect_file
from orchestrator.stages.inventory import DEFAULT_INVENTORY, InventoryError, load_inventory
from orchestrator.stages.rundir import UMASK, RunDir, read_json

DEMO_CAMPAIGN = REPO_ROOT / "campaigns" / "demo.yml"
PROG_NAME = "fleetprof"
COMPLETION_SHELLS = ("bash", "zsh", "fish")

JSON_OPTION = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document on stdout (see docs/commands.md); messages go to stderr.",
)


def _console(stderr: bool = False) -> Console:
    return make_console(stderr=stderr)


def _print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2))


def _install_interrupt(cancel: threading.Event, console: Console) -> None:
    """First Ctrl-C / SIGTERM: stop cleanly (runner cancelled, partial report). Second: now."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            kill_playbooks()
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
    kind: str = "run",
    as_json: bool = False,
) -> RunOutcome:
    """Run one campaign with live progress; with ``as_json`` every word goes to stderr,
    keeping stdout for the caller's JSON document."""
    try:
        inventory = load_inventory(inventory_source, campaign.hosts, limit)
    except InventoryError as err:
        fail(str(err))
    try:
        run_dir = RunDir.create(out_root, campaign.name)
    except OSError as err:
        fail(f"-o {out_root}: cannot create the run directory there: {err.strerror or err}")
    console = _console(stderr=as_json)
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
            kind=kind,
            run=run_dir,
        )
        outcome = flow.execute()
    render_terminal(outcome.report, console)
    console.print(
        f"report: {escape(str(outcome.run.path / 'report.html'))}", highlight=False, soft_wrap=True
    )
    return outcome


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=PROG_NAME, message="%(prog)s %(version)s")
def main() -> None:
    """Profile a fleet of devices at once, through Ansible, and compare them."""
    # Everything a command writes (run directories, what Ansible fetches, the history
    # store, the tool cache) is owner-only unless written with an explicit mode.
    os.umask(UMASK)


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
@JSON_OPTION
def run(
    campaign_file: Path,
    inventory: str | None,
    limit: str | None,
    out_root: Path,
    forks: int | None,
    as_json: bool,
) -> None:
    """Run CAMPAIGN_FILE on the inventory's hosts and write a report."""
    try:
        campaign = load_campaign(campaign_file)
    except CampaignError as err:
        fail(str(err))
    outcome = execute(campaign, inventory, limit, out_root, forks, as_json=as_json)
    _finish(outcome, "run", as_json)


def _finish(outcome: RunOutcome, command: str, as_json: bool) -> NoReturn:
    if as_json:
        _print_json(
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
@JSON_OPTION
def demo(out_root: Path, as_json: bool) -> None:
    """Profile the sample video pipeline on this machine (campaigns/demo.yml)."""
    try:
        campaign = demo_campaign()
    except CampaignError as err:
        fail(str(err))
    outcome = execute(campaign, str(DEFAULT_INVENTORY), None, out_root, None, as_json=as_json)
    _finish(outcome, "demo", as_json)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@JSON_OPTION
def report(run_dir: Path, as_json: bool) -> None:
    """Rebuild report.json, report.html, summary.md and the exports from RUN_DIR alone."""
    if not (run_dir / "run.json").is_file():
        fail(f"{run_dir}: not a fleetprof run directory (no run.json)")
    try:
        campaign = load_campaign(run_dir / "campaign.yml")
    except CampaignError as err:
        fail(str(err))
    result = build_outputs(RunDir(run_dir), campaign)
    console = _console(stderr=as_json)
    problem = record_history(RunDir(run_dir), result)
    if problem:
        console.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)
    render_check(result, console)
    console.print(
        f"report: {escape(str(run_dir / 'report.html'))}", highlight=False, soft_wrap=True
    )
    if as_json:
        _print_json(result_document(result, run_dir, command="report"))


OUT_OPTION = click.option(
    "-o",
    "--out",
    "out_root",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("reports"),
    show_default=True,
    help="Output root; it holds the runs and their history (history.sqlite).",
)


def _writable(path: Path | None, option: str) -> None:
    """Fail before the run, not after it, when an export cannot be written."""
    if path is None:
        return
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        fail(f"{option} {path}: cannot write there (the folder must exist and be writable)")


@main.command(name="check")
@click.argument("campaign_file", type=click.Path(path_type=Path))
@click.option("-i", "--inventory", help="Any Ansible inventory (file, directory, host list).")
@OUT_OPTION
@click.option(
    "--baseline",
    "baseline",
    metavar="last|RUN_DIR",
    help="Compare with the last run, or a run directory (default: the pinned baseline, "
    "else the last run).",
)
@click.option("--junit", type=click.Path(path_type=Path, dir_okay=False), help="JUnit XML.")
@click.option(
    "--prometheus",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Prometheus text file (node_exporter textfile collector).",
)
@click.option("--markdown", type=click.Path(path_type=Path, dir_okay=False), help="Markdown.")
@click.option("-f", "--forks", type=click.IntRange(1, 1000), help="Parallel connections.")
@JSON_OPTION
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
    try:
        campaign = load_campaign(campaign_file)
    except CampaignError as err:
        fail(str(err))
    for path, option in (
        (junit, "--junit"),
        (prometheus, "--prometheus"),
        (markdown, "--markdown"),
    ):
        _writable(path, option)
    console = _console(stderr=as_json)

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
        _print_json(
            result_document(
                result.report,
                result.run.run.path,
                command="check",
                interrupted=result.run.interrupted,
                notes=result.notes,
            )
        )
    sys.exit(result.exit_code)


@main.group(name="baseline")
def baseline_group() -> None:
    """The baseline each host is compared with by `fleetprof check`."""


@baseline_group.command(name="set")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@JSON_OPTION
def baseline_set(run_dir: Path, as_json: bool) -> None:
    """Pin RUN_DIR as its campaign's baseline (in the history of the output root above it)."""
    out_root = run_dir.resolve().parent.parent
    try:
        with HistoryStore.open(out_root) as store:
            campaign, run_id = pin_baseline(store, run_dir)
    except (BaselineError, StoreError) as err:
        fail(str(err))
    _console(stderr=as_json).print(
        f"baseline of [bold]{escape(campaign)}[/]: {escape(run_id)} "
        f"(history: {escape(str(out_root / 'history.sqlite'))})",
        highlight=False,
    )
    if as_json:
        _print_json(baseline_document(campaign, run_id, run_dir, out_root / "history.sqlite"))


@main.command(name="history")
@OUT_OPTION
@click.option("--campaign", help="Only this campaign.")
@click.option("--host", help="Only this host.")
@click.option("--metric", help="Only this metric.")
@click.option("-n", "--runs", "limit", type=click.IntRange(1, 1000), default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
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
    console = _console()
    if not points:
        console.print("no recorded values match")
        return
    console.print(history_table(points, title=f"history: {out_root / 'history.sqlite'}"))


@main.group(name="schedule")
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
@click.option("-i", "--inventory", help="Any Ansible inventory (file, directory, host list).")
@OUT_OPTION
@click.option("--name", default="", help="Schedule name (default: fleetprof-<campaign>).")
@click.option("--junit", type=click.Path(path_type=Path, dir_okay=False), help="JUnit XML.")
@click.option("--prometheus", type=click.Path(path_type=Path, dir_okay=False), help="Prometheus.")
@click.option("--markdown", type=click.Path(path_type=Path, dir_okay=False), help="Markdown.")
@USER_OPTION
@UNIT_DIR_OPTION
@CRON_FILE_OPTION
@JSON_OPTION
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
    try:
        load_campaign(campaign_file)
    except CampaignError as err:
        fail(str(err))
    extra: list[str] = []
    for option, path in (
        ("--junit", junit),
        ("--prometheus", prometheus),
        ("--markdown", markdown),
    ):
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
    console = _console(stderr=as_json)
    state = "active" if result.activated else "written, not active yet"
    console.print(f"{escape(spec.name)}: {result.kind} schedule at {spec.at} ({state})")
    for path in result.paths:
        console.print(f"  {escape(str(path))}", highlight=False)
    for hint in result.hints:
        console.print(f"  [yellow]next:[/] {escape(hint)}", highlight=False)
    if as_json:
        _print_json(
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
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
    _console().print(table)


@schedule_group.command(name="remove")
@click.argument("name")
@USER_OPTION
@UNIT_DIR_OPTION
@CRON_FILE_OPTION
@JSON_OPTION
def schedule_remove(
    name: str, user: bool, unit_dir: Path | None, cron_file: Path | None, as_json: bool
) -> None:
    """Remove the schedule NAME (its timer and service, or its crontab line)."""
    try:
        removed = remove(name, unit_dir=unit_dir, user=user, cron_file=cron_file)
    except ScheduleError as err:
        fail(str(err))
    console = _console(stderr=as_json)
    for path in removed:
        console.print(f"removed {escape(name)} from {escape(str(path))}", highlight=False)
    if as_json:
        _print_json(schedule_document("removed", name, paths=removed))


@main.command(name="collect")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("-i", "--inventory", help="The inventory (default: the one the run used).")
@click.option("-f", "--forks", type=click.IntRange(1, 1000), help="Parallel connections.")
@JSON_OPTION
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
    try:
        loaded = load_inventory(source, campaign.hosts)
    except InventoryError as err:
        fail(str(err))
    console = _console(stderr=as_json)
    cancel = threading.Event()
    _install_interrupt(cancel, console)
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
    _finish(outcome, "collect", as_json)


@main.command(name="inspect")
@click.argument("profiler")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def inspect_command(profiler: str, file: Path, as_json: bool) -> None:
    """Parse one raw artifact of PROFILER (e.g. py-spy.folded) and print what it holds."""
    try:
        data = inspect_file(profiler, file)
    except InspectError as err:
        fail(str(err))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = _console()
    render_inspection(data, console)


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


def _render_comparison(result: Comparison, console: Console, top: int) -> None:
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
            for column in ("metric", "A", "B", "change", "%"):
                table.add_column(column, justify="left" if column == "metric" else "right")
            for m in moved:
                table.add_row(
                    escape(m.metric),
                    f"{m.a:g}",
                    f"{m.b:g}",
                    f"{m.delta:+g}",
                    f"{m.delta_pct:+.1f}" if m.delta_pct is not None else "new",
                )
            console.print(table)
        else:
            console.print(f"  no metric moved by more than {result.metric_threshold_pct:g}%")


@main.command(name="compare")
@click.argument("run_a", type=click.Path(path_type=Path, file_okay=False))
@click.argument("run_b", type=click.Path(path_type=Path, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
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
    errors = _console(stderr=True)
    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    _render_comparison(result, _console(), top)


@main.command(name="completion")
@click.argument("shell", type=click.Choice(COMPLETION_SHELLS))
def completion_command(shell: str) -> None:
    """Print the shell completion script for SHELL.

    docs/commands.md says where each shell wants it; the script asks fleetprof itself
    what to complete."""
    complete = get_completion_class(shell)
    assert complete is not None  # click ships all three
    complete_var = f"_{PROG_NAME}_COMPLETE".upper()
    click.echo(complete(main, {}, PROG_NAME, complete_var).source())


@main.group(name="tools")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
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
    err = _console(stderr=True)
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
    _console().print(table)


main.add_command(stages)


if __name__ == "__main__":
    main()
