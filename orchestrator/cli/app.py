"""The ``fleetprof`` command: its group, and every command group added to it from its own
module. Exit codes (DESIGN.md): 0 every host ok; 2 bad input, nothing run; 3 the run
finished but some hosts are not ok; 130 interrupted by the operator (a partial report is
still written).

With ``--json`` stdout carries exactly one JSON document (shapes: docs/commands.md and
orchestrator/report/result.py) and everything else goes to stderr; on bad input (exit 2)
stdout stays empty and the message goes to stderr, as without ``--json``.
"""

from __future__ import annotations

import os

import click
from click.shell_completion import get_completion_class

from orchestrator import __version__
from orchestrator.cli import check, compare, run, schedule, stages, tools
from orchestrator.stages.rundir import UMASK

PROG_NAME = "fleetprof"
COMPLETION_SHELLS = ("bash", "zsh", "fish")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=PROG_NAME, message="%(prog)s %(version)s")
def main() -> None:
    """Profile a fleet of devices at once, through Ansible, and compare them."""
    # Everything a command writes (run directories, what Ansible fetches, the history
    # store, the tool cache) is owner-only unless written with an explicit mode.
    os.umask(UMASK)


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


for command in (
    run.run,
    run.demo,
    run.report,
    run.collect_command,
    check.check_command,
    check.baseline_group,
    check.history_command,
    schedule.schedule_group,
    tools.tools_group,
    tools.inspect_command,
    compare.compare_command,
    stages.stages,
):
    main.add_command(command)


if __name__ == "__main__":
    main()
