"""The fleetprof.fleet collection built from this working tree, installed into a clean
collections path, runs a prepared campaign's device-side stages on a test fleet by fully
qualified names only; the execution environment's build context holds it (docs/awx.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.collection import build, read_metadata
from tests.fleet.fixtures import requires_fleet
from tests.support.paths import REPO

pytestmark = [pytest.mark.integration]

BIN = Path(sys.executable).parent
BUSY = (
    "import time\n"
    "def busy_loop():\n"
    "    end = time.perf_counter() + 0.01\n"
    "    while time.perf_counter() < end:\n"
    "        pass\n"
    "while True:\n"
    "    busy_loop()\n"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tarball `make collection` would write, built from the working tree."""
    return build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def installed(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clean collections path holding only the built collection."""
    path = tmp_path_factory.mktemp("collections")
    done = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "install", str(built), "-p", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield path


def outside_the_repository(tmp_path: Path, collections: Path) -> dict[str, str]:
    """An environment where only the installed collection can supply fleetprof's roles,
    modules and playbooks: no ansible.cfg, no roles path, no library path of the repo."""
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ANSIBLE_") or k == "ANSIBLE_NOCOLOR"
    }
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "ANSIBLE_COLLECTIONS_PATH": str(collections),
            "ANSIBLE_ROLES_PATH": str(empty),
            "ANSIBLE_LIBRARY": str(empty),
            "ANSIBLE_NOCOLOR": "1",
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
    )
    return env


def fleetprof(*args: str, module: str = "orchestrator.cli") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        check=False,
    )


@requires_fleet
def test_a_prepared_run_runs_from_the_installed_collection_by_fqcn_and_reports(
    installed: Path, fleet_factory: Any, tmp_path: Path
) -> None:
    fleet = fleet_factory({"edge-a": {"count": 2, "cpu": 0.5}})
    campaign = tmp_path / "site-fqcn.yml"
    campaign.write_text(
        yaml.safe_dump(
            {
                "name": "site-fqcn",
                "duration": "3s",
                "start": {"lead": "4s"},
                "target": {"launch": {"command": ["/usr/bin/python3", "-c", BUSY]}},
                "profilers": {"py-spy": {"rate": 97}},
            }
        )
    )
    out = tmp_path / "reports"

    # The controller: load, preflight, plan; nothing on the devices yet.
    prepared = fleetprof(
        "prepare", str(campaign), "-i", str(fleet.inventory), "-o", str(out), "--json",
        module="orchestrator.cli.stages",
    )  # fmt: skip
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    result = json.loads(prepared.stdout)
    run_dir = Path(result["run_dir"])
    assert sorted(result["planned"]) == sorted(h.name for h in fleet.hosts)
    planned_t0 = {
        h.name: json.loads((run_dir / f"hosts/{h.name}/plan.json").read_text())["t0_device"]
        for h in fleet.hosts
    }

    # The operator's (or AWX's) side: one playbook naming the collection's site playbook.
    playbook = tmp_path / "fleet-profile.yml"
    playbook.write_text(
        "- name: A prepared fleetprof run's device-side stages\n"
        "  ansible.builtin.import_playbook: fleetprof.fleet.site\n"
    )
    played = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(fleet.inventory),
            str(playbook),
            "-e",
            f"@{result['extravars_file']}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=outside_the_repository(tmp_path, installed),
        check=False,
    )
    assert played.returncode == 0, played.stdout[-4000:] + played.stderr[-2000:]
    for role in ("fleetprof_tools", "fleetprof_session"):
        assert f"fleetprof.fleet.{role} :" in played.stdout
    for host in fleet.hosts:
        assert (run_dir / f"hosts/{host.name}/session.tar.gz").is_file()
        plan = json.loads((run_dir / f"hosts/{host.name}/plan.json").read_text())
        assert plan["t0_device"] > planned_t0[host.name]  # T0 chosen before the session
        # collect left nothing of the session on the device.
        assert not Path(host.private_path(plan["workdir"])).exists()

    # The controller again: unpack, then the report from the run directory alone.
    ingested = fleetprof("ingest", str(run_dir), module="orchestrator.cli.stages")
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    reported = fleetprof("report", str(run_dir))
    assert reported.returncode == 0, reported.stdout + reported.stderr
    report = json.loads((run_dir / "report.json").read_text())
    assert report["summary"]["ok"] == 2
    for host in report["hosts"]:
        assert host["status"] == "ok", (host["name"], host["reason"])
        assert host["profilers"]["py-spy"]["status"] == "ok"
        assert host["top_functions"][0]["function"] == "busy_loop"
        assert host["metrics"]["pyspy.samples"] >= 3 * 97 * 0.5
        # Started at the T0 the schedule play wrote, not the stale one prepare planned.
        assert abs(host["start_offset_ms"]) < 1000, host["start_offset_ms"]


def test_ansible_builder_creates_a_build_context_holding_the_collection(
    built: Path, tmp_path: Path
) -> None:
    # The EE definition's paths are relative to it: lay it out with the built tarball.
    shutil.copy(REPO / "execution-environment.yml", tmp_path)
    shutil.copytree(REPO / "ee", tmp_path / "ee")
    (tmp_path / "dist").mkdir()
    shutil.copy(built, tmp_path / "dist")
    context = tmp_path / "context"
    done = subprocess.run(
        [
            str(BIN / "ansible-builder"),
            "create",
            "-f",
            str(tmp_path / "execution-environment.yml"),
            "-c",
            str(context),
            "--output-filename",
            "Containerfile",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-galaxy collection install" in containerfile
    assert "-r requirements.yml" in containerfile
    assert "requirements.txt" in containerfile
    assert "ansible-core>=2.16 ansible-runner>=2.4" in containerfile
    build_dir = context / "_build"
    assert (build_dir / "requirements.txt").read_text() == (
        REPO / "ee/requirements.txt"
    ).read_text()
    galaxy = yaml.safe_load((build_dir / "requirements.yml").read_text())
    assert galaxy["collections"][0]["name"].endswith(built.name)
    # The image's galaxy step, run here as the Containerfile runs it (in _build).
    target = tmp_path / "ee-collections"
    step = subprocess.run(
        [
            str(BIN / "ansible-galaxy"),
            "collection",
            "install",
            "-r",
            "requirements.yml",
            "-p",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=build_dir,
        check=False,
    )
    assert step.returncode == 0, step.stdout + step.stderr
    manifest = json.loads(
        (target / "ansible_collections/fleetprof/fleet/MANIFEST.json").read_text()
    )
    meta = read_metadata()
    assert manifest["collection_info"]["version"] == meta.version
    assert (target / "ansible_collections/fleetprof/fleet/plugins/modules").is_dir()
