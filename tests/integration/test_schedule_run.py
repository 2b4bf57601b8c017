"""A scheduled nightly check really runs: install it, read back what the timer (or cron)
would run, run exactly that the way the scheduler would, and find the check's report.

Nothing is activated: the units go to a temporary directory and the crontab line to a
temporary file; the command runs with a scheduler's bare environment, not the test's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.schedule import ScheduleSpec, check_argv, install, list_schedules
from tests.support.cron import cron_hands_to_shell
from tests.support.paths import REPO

FLEETPROF = Path(sys.executable).parent / "fleetprof"
CAMPAIGN = "name: sched-smoke\nduration: 3s\nstart: {lead: 4s}\ntarget: {probe: [cpu]}\n"
# What systemd's manager gives a service, and cron a job: no venv on PATH, no terminal.
SYSTEMD_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
    "HOME": os.environ.get("HOME", "/root"),
    "NO_COLOR": "1",  # the unit's Environment=
}
CRON_ENV = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "SHELL": "/bin/sh"}


pytestmark = pytest.mark.integration


def nightly(tmp_path: Path) -> ScheduleSpec:
    campaign = tmp_path / "sched-smoke.yml"
    campaign.write_text(CAMPAIGN)
    return ScheduleSpec(
        campaign=campaign,
        inventory=str(REPO / "inventory" / "localhost.yml"),
        out_root=tmp_path / "out",
        at="02:00",
        workdir=REPO,
    )


def assert_checked(proc: subprocess.CompletedProcess[str], out: Path) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(out.glob("sched-smoke/*/report.json")), proc.stdout[-3000:]


def test_the_systemd_service_runs_the_check(tmp_path: Path) -> None:
    spec = nightly(tmp_path)
    assert spec.name == "fleetprof-sched-smoke"
    install(spec, check_argv(spec, FLEETPROF), unit_dir=tmp_path / "units", activate=False)

    [scheduled] = list_schedules(unit_dir=tmp_path / "units")
    assert scheduled.command[:2] == [str(FLEETPROF), "check"]
    assert scheduled.workdir is not None
    proc = subprocess.run(
        scheduled.command,
        cwd=scheduled.workdir,
        env=SYSTEMD_ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert_checked(proc, tmp_path / "out")


def test_the_crontab_line_runs_the_check(tmp_path: Path) -> None:
    spec = nightly(tmp_path)
    crontab = tmp_path / "crontab"
    install(spec, check_argv(spec, FLEETPROF), cron_file=crontab)

    [line] = crontab.read_text().splitlines()
    command = line.split(" ", 5)[5]  # after minute, hour, day, month, weekday
    proc = subprocess.run(
        ["/bin/sh", "-c", cron_hands_to_shell(command)],
        cwd=CRON_ENV["HOME"],
        env=CRON_ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert_checked(proc, tmp_path / "out")
