"""What a red-team pass found (docs/security.md), re-run on the real SSH test fleet: no
controller secret in the run directory, and a host key that changed is refused on the
next run even while an SSH master from the run before could still be open."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from orchestrator.stages.ansible import control_dir
from tests.fleet.fixtures import requires_fleet
from tests.support.cli import FLEETPROF_ARGV
from tests.support.paths import REPO

pytestmark = [pytest.mark.integration, requires_fleet]

CAMPAIGN = "name: hostile\nduration: 2s\nstart: {lead: 4s}\ntarget: {probe: [cpu]}\n"


def test_no_secret_owner_only_modes_and_a_changed_host_key_refused_on_the_next_run(
    fleet_factory: Any, fleetprof: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs (one fleet, for CI time): the first leaves no controller secret in its
    run directory, only owner-only files, and no SSH master behind; the second, with a
    changed host key in known_hosts, is refused for that host."""
    secret = "fleetprof-test-secret-7f3a9c2e51"
    monkeypatch.setenv("FLEETPROF_TEST_TOKEN", secret)
    fleet = fleet_factory({"board": 2})
    campaign = tmp_path / "hostile.yml"
    campaign.write_text(CAMPAIGN)
    first = fleetprof("run", str(campaign), "-i", str(fleet.inventory))
    assert first.returncode == 0, first.stdout + first.stderr

    run_dir = first.run_dir("hostile")
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
    history = first.out_root / "history.sqlite"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600

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


def hostile_tarball(path: Path, payload: str) -> None:
    """What a broken or compromised device may send back instead of its session."""
    ok = json.dumps({"status": "ok", "profilers": {}}).encode()
    deep = b"[" * 100_000 + b"]" * 100_000
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []

    def add(name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        members.append((info, data))

    if payload == "deep-manifest":
        add("manifest.json", deep)
    elif payload == "deep-workload":
        add("manifest.json", ok)
        add("workload.jsonl", deep + b"\n")
    elif payload == "huge-manifest":
        add("manifest.json", b" " * (17 * 1024 * 1024) + ok)
    elif payload == "escapes":
        rude = {"status": "partial", "reason": "\x1b[2J\x1b]0;owned\x07", "profilers": {}}
        add("manifest.json", json.dumps(rude).encode())
    elif payload == "link-flood":
        for index in range(2000):
            info = tarfile.TarInfo(f"l{index}")
            info.type = tarfile.SYMTYPE
            info.linkname = "t" * 100_000
            members.append((info, None))
        add("manifest.json", ok)
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


# A light session (the machine's two cores are shared by the whole fleet): the runner's
# own sampler on a launched sleep.
LIGHT = (
    "name: hostile\nduration: 2s\nstart: {lead: 4s}\n"
    "target: {launch: {command: [sleep, '30']}}\nprofilers: {system: {}}\n"
)
PAYLOADS = ["deep-manifest", "deep-workload", "huge-manifest", "escapes", "link-flood"]


def test_hostile_payloads_through_real_collect_leave_the_honest_host_its_report(
    fleet_factory: Any, fleetprof: Any, tmp_path: Path
) -> None:
    """Each payload replaces one device's session archive and goes through `fleetprof
    collect` over real SSH (fetch, safe unpack, parse, report): the honest host always has
    its report, the hostile one a status with a reason, and the command never crashes."""
    fleet = fleet_factory({"board": 2})
    honest, hostile = fleet.hosts[0].name, fleet.hosts[1]
    campaign = tmp_path / "hostile.yml"
    campaign.write_text(LIGHT)
    first = fleetprof("run", str(campaign), "-i", str(fleet.inventory))
    assert first.returncode == 0, first.stdout + first.stderr
    run_dir = first.run_dir("hostile")
    plan = json.loads((run_dir / "hosts" / hostile.name / "plan.json").read_text())
    on_device = hostile.private_path(plan["archive"])
    for payload in PAYLOADS:
        hostile_tarball(on_device, payload)
        # The run's controller "lost" this host after its session: collect fetches it again.
        host_dir = run_dir / "hosts" / hostile.name
        shutil.rmtree(host_dir / "session", ignore_errors=True)
        (host_dir / "session.tar.gz").unlink(missing_ok=True)
        status = {"host": hostile.name, "stage": "session", "status": "running", "reason": None}
        (host_dir / "status.json").write_text(json.dumps(status))

        done = subprocess.run(
            [*FLEETPROF_ARGV, "collect", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=REPO,
            env={**os.environ, "NO_COLOR": "1"},
        )

        shown = f"{payload}: {done.stdout}{done.stderr}"
        assert done.returncode in (0, 3), shown
        assert "Traceback" not in done.stderr, shown
        hosts = {h["name"]: h for h in json.loads((run_dir / "report.json").read_text())["hosts"]}
        assert hosts[honest]["status"] == "ok", shown
        assert hosts[honest]["metrics"], shown
        victim = hosts[hostile.name]
        assert victim["status"] in ("ok", "partial", "failed"), shown
        if payload in ("deep-manifest", "huge-manifest"):
            assert victim["status"] == "failed" and "manifest.json" in victim["reason"], shown
        if payload == "link-flood":
            assert any("2000 members skipped" in n for n in victim["data_quality"]), shown
        for page in ("report.html", "summary.md"):
            assert "\x1b" not in (run_dir / page).read_text(), (payload, page)
