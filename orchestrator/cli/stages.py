"""`fleetprof stages prepare|ingest`: the controller's side of a campaign whose device-side
stages run in ansible-playbook or AWX (playbooks/site.yml; docs/awx.md). Commands only:
parse arguments, call orchestrator.stages.handoff, print. Exit codes as every command's: 0 every
host ok; 2 bad input, nothing run; 3 some hosts not ok (or none planned); 130 interrupted.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click
from rich.markup import escape

from orchestrator.cli.live import ConsoleUi, fail, make_console
from orchestrator.cli.options import (
    INTERRUPTED,
    RUN_OUT_HELP,
    campaign_or_exit,
    forks_option,
    install_interrupt,
    inventory_option,
    inventory_or_exit,
    json_option,
    limit_option,
    out_option,
)
from orchestrator.report.terminal import render_check
from orchestrator.stages.flow import CampaignRun
from orchestrator.stages.handoff import (
    EXTRAVARS_FILE,
    StagesError,
    ingest,
    prepare,
    resolve_run_dir,
)
from orchestrator.stages.rundir import RunDir

SOME_NOT_OK = 3
INTERRUPTED_MESSAGE = "[yellow]interrupted: stopping (Ctrl-C again to exit at once)[/]"


@click.group(name="stages", context_settings={"help_option_names": ["-h", "--help"]})
def stages() -> None:
    """Run a campaign's device-side stages with ansible-playbook or AWX (docs/awx.md):
    `prepare` here, then playbooks/site.yml there, then `ingest` here."""


@stages.command(name="prepare")
@click.argument("campaign_file", type=click.Path(path_type=Path))
@inventory_option()
@limit_option()
@out_option(RUN_OUT_HELP, file_okay=False)
@forks_option()
@click.option(
    "--vars-out",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"Also write the extra variables here (always in RUN_DIR/{EXTRAVARS_FILE}).",
)
@json_option("Print the result as JSON on stdout.")
def prepare_command(
    campaign_file: Path,
    inventory: str | None,
    limit: str | None,
    out_root: Path,
    forks: int | None,
    vars_out: Path | None,
    as_json: bool,
) -> None:
    """Load CAMPAIGN_FILE, preflight the hosts and plan their sessions; write the run
    directory and the extra variables for playbooks/site.yml. Nothing is pushed or run."""
    campaign = campaign_or_exit(campaign_file)
    loaded = inventory_or_exit(inventory, campaign.hosts, limit)
    if vars_out is not None and not vars_out.parent.is_dir():
        fail(f"--vars-out {vars_out}: its folder does not exist")
    console = make_console(stderr=as_json)
    cancel = install_interrupt(console, INTERRUPTED_MESSAGE)
    with ConsoleUi(console) as ui:
        flow = CampaignRun(
            campaign,
            loaded,
            out_root,
            forks=forks,
            ui=ui,
            cancel=cancel,
            tool_log=lambda text: ui.note(escape(text)),
        )
        prepared = prepare(flow, vars_out)
    if cancel.is_set():
        sys.exit(INTERRUPTED)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run_dir": str(prepared.run.path),
                    "extravars_file": str(prepared.extravars_file),
                    "extravars": prepared.extravars,
                    "planned": prepared.planned,
                    "dropped": {h: prepared.run.read_status(h) for h in prepared.dropped},
                },
                indent=2,
            )
        )
    else:
        for host in prepared.dropped:
            status = prepared.run.read_status(host)
            console.print(
                f"[yellow]{escape(host)}[/]: {escape(str(status.get('status')))} at "
                f"{escape(str(status.get('stage')))}: {escape(str(status.get('reason') or ''))}",
                highlight=False,
            )
        shown = shlex.quote(str(prepared.extravars_file))
        console.print(
            f"planned {len(prepared.planned)} of {len(prepared.planned) + len(prepared.dropped)}"
            f" host(s); lead {prepared.lead_s:.1f}s\n"
            f"run: {escape(str(prepared.run.path))}\n"
            f"next: ansible-playbook -i INVENTORY playbooks/site.yml -e @{escape(shown)}\n"
            f"then: fleetprof stages ingest {escape(shlex.quote(str(prepared.run.path)))}",
            highlight=False,
            soft_wrap=True,
        )
    sys.exit(0 if prepared.planned and not prepared.dropped else SOME_NOT_OK)


@stages.command(name="ingest")
@click.argument("run", type=click.Path(path_type=Path))
def ingest_command(run: Path) -> None:
    """Bring RUN (a run directory, or the extra-variables file `prepare` wrote) back
    after playbooks/site.yml: unpack what its collect play fetched, then build the
    report and record the run in the history, as `fleetprof run` ends."""
    try:
        run_dir = resolve_run_dir(run)
    except StagesError as err:
        fail(str(err))
    if not (run_dir / "run.json").is_file():
        fail(f"{run_dir}: not a fleetprof run directory (no run.json)")
    campaign = campaign_or_exit(run_dir / "campaign.yml")
    report, problem = ingest(RunDir(run_dir), campaign)
    console = make_console()
    if problem:
        console.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)
    render_check(report, console)
    console.print(f"report: {escape(str(run_dir / 'report.html'))}", highlight=False)
    summary = report["summary"]
    sys.exit(0 if summary["hosts"] > 0 and summary["ok"] == summary["hosts"] else SOME_NOT_OK)


if __name__ == "__main__":
    stages(prog_name="fleetprof stages")
