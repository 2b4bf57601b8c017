"""`fleetprof schedule install|list|remove` on a unit directory and a crontab file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

CAMPAIGN = REPO / "campaigns/nightly-variability.yml"


def fleetprof(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_install_list_and_remove_a_systemd_schedule(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    installed = fleetprof(
        "schedule",
        "install",
        str(CAMPAIGN),
        "--at",
        "2:05",
        "-i",
        "inventory/localhost.yml",
        "-o",
        str(tmp_path / "out"),
        "--junit",
        str(tmp_path / "n.xml"),
        "--unit-dir",
        str(units),
    )
    assert installed.returncode == 0, installed.stderr
    assert "systemctl" in installed.stdout  # not activated: the hints say how
    (entry,) = json.loads(fleetprof("schedule", "list", "--unit-dir", str(units), "--json").stdout)
    assert entry["name"] == "fleetprof-nightly-variability" and entry["at"] == "02:05"
    command = entry["command"]
    assert Path(command[0]).name == "fleetprof" and command[1:3] == ["check", str(CAMPAIGN)]
    assert command[command.index("--junit") + 1] == str(tmp_path / "n.xml")
    removed = fleetprof("schedule", "remove", entry["name"], "--unit-dir", str(units))
    assert removed.returncode == 0 and list(units.iterdir()) == []
    again = fleetprof("schedule", "remove", entry["name"], "--unit-dir", str(units))
    assert again.returncode == 2 and "Traceback" not in again.stderr


def test_a_crontab_line_and_bad_input(tmp_path: Path) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_text("MAILTO=ops@example.org\n")
    ok = fleetprof(
        "schedule", "install", str(CAMPAIGN), "--at", "03:00", "--cron-file", str(crontab)
    )
    assert ok.returncode == 0, ok.stderr
    lines = crontab.read_text().splitlines()
    assert lines[0] == "MAILTO=ops@example.org" and lines[1].startswith("0 3 * * * ")
    bad_time = fleetprof(
        "schedule", "install", str(CAMPAIGN), "--at", "24:00", "--cron-file", str(crontab)
    )
    assert bad_time.returncode == 2 and "--at" in bad_time.stderr
    bad_campaign = tmp_path / "bad.yml"
    bad_campaign.write_text("name: x\n")
    refused = fleetprof(
        "schedule", "install", str(bad_campaign), "--at", "03:00", "--cron-file", str(crontab)
    )
    assert refused.returncode == 2 and "bad.yml" in refused.stderr
    assert len(crontab.read_text().splitlines()) == 2
