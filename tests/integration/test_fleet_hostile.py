"""What a red-team pass found (docs/security.md), re-run on the real SSH test fleet: no
controller secret in the run directory, and a host key that changed is refused on the
next run even while an SSH master from the run before could still be open."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.ansible import control_dir
from tests.fleet.fixtures import requires_fleet

pytestmark = [pytest.mark.integration, requires_fleet]

CAMPAIGN = "name: hostile\nduration: 2s\nstart: {lead: 15s}\ntarget: {probe: [cpu]}\n"


def test_no_environment_secret_reaches_the_run_directory(
    fleet_factory: Any, fleetprof: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "fleetprof-test-secret-7f3a9c2e51"
    monkeypatch.setenv("FLEETPROF_TEST_TOKEN", secret)
    fleet = fleet_factory({"board": 1})
    campaign = tmp_path / "hostile.yml"
    campaign.write_text(CAMPAIGN)

    result = fleetprof("run", str(campaign), "-i", str(fleet.inventory))

    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = result.run_dir("hostile")
    commands = list(run_dir.rglob("command"))
    assert commands, "ansible-runner's command artifacts are where the environment was"
    leaked = [p for p in run_dir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
    # The run's SSH masters were closed and their directory removed.
    assert not control_dir(run_dir).exists()
    # One file-mode policy (docs/security.md): the run directory and all in it owner-only,
    # the history store too.
    wrong = {
        str(p.relative_to(run_dir)): oct(stat.S_IMODE(p.lstat().st_mode))
        for p in [run_dir, *run_dir.rglob("*")]
        if stat.S_IMODE(p.lstat().st_mode) != (0o700 if p.is_dir() else 0o600)
    }
    assert wrong == {}
    history = result.out_root / "history.sqlite"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600


def test_a_changed_host_key_is_refused_on_the_next_run(
    fleet_factory: Any, fleetprof: Any, tmp_path: Path
) -> None:
    fleet = fleet_factory({"board": 2})
    campaign = tmp_path / "hostile.yml"
    campaign.write_text(CAMPAIGN)
    first = fleetprof("run", str(campaign), "-i", str(fleet.inventory))
    assert first.returncode == 0, first.stdout + first.stderr

    # known_hosts now expects another key for the first host: what a swapped device, or a
    # machine in the middle, looks like to the controller.
    impostor = fleet.hosts[0]
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
        check=True,
    )
    other_key = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    lines = fleet.known_hosts.read_text().splitlines()
    prefix = f"[{impostor.address}]:{impostor.port} "
    assert any(line.startswith(prefix) for line in lines)
    fleet.known_hosts.write_text(
        "\n".join(prefix + other_key if line.startswith(prefix) else line for line in lines) + "\n"
    )

    second = fleetprof("run", str(campaign), "-i", str(fleet.inventory))

    assert second.returncode == 3, second.stdout + second.stderr
    latest = sorted((second.out_root / "hostile").iterdir())[-1]
    hosts = {h["name"]: h for h in json.loads((latest / "report.json").read_text())["hosts"]}
    assert hosts[impostor.name]["status"] == "unreachable", hosts[impostor.name]
    assert hosts[fleet.hosts[1].name]["status"] == "ok"
