"""The controller's side of a run whose device-side stages ran in ansible-playbook or AWX
(orchestrator/stages/handoff.py): the extra variables site.yml gets, and bringing back what its
collect play fetched, on run directories laid out as `fleetprof stages prepare` leaves them.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from orchestrator import device_bundle
from orchestrator.stages.handoff import (
    NOT_COLLECTED,
    StagesError,
    extravars_text,
    ingest_archives,
    resolve_run_dir,
    site_extravars,
)
from orchestrator.stages.rundir import ARCHIVE
from tests.support.paths import REPO
from tests.support.runs import (
    prepared_run,
)


def tarball(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_fetched_tarballs_are_unpacked_and_hosts_without_one_stay_resumable(
    tmp_path: Path,
) -> None:
    run = prepared_run(tmp_path, ["good", "dotdot", "corrupt", "lost"])
    manifest = json.dumps({"status": "ok", "profilers": {}}).encode()
    tarball(run.host_dir("good") / ARCHIVE, {"manifest.json": manifest, "probe.json": b"{}"})
    tarball(run.host_dir("dotdot") / ARCHIVE, {"manifest.json": manifest, "../escape": b"x"})
    (run.host_dir("corrupt") / ARCHIVE).write_bytes(b"not a tarball")

    outcome = ingest_archives(run)

    assert outcome == {
        "good": "collected",
        "dotdot": "collected",
        "corrupt": "failed",
        "lost": "failed",
    }
    assert run.read_manifest("good") == {"status": "ok", "profilers": {}}
    assert run.read_status("good") == {
        "host": "good",
        "stage": "collect",
        "status": "collected",
        "reason": None,
    }
    # What safetar refuses stays out and is named, as in `fleetprof run`.
    assert "../escape" in run.read_status("dotdot")["reason"]
    assert not (run.host_dir("dotdot") / "escape").exists()
    corrupt = run.read_status("corrupt")
    assert (corrupt["stage"], corrupt["status"]) == ("collect", "failed")
    assert corrupt["reason"].startswith("unsafe archive:")
    # Stage "session" is where `fleetprof collect RUN_DIR` resumes a host from.
    assert run.read_status("lost") == {
        "host": "lost",
        "stage": "session",
        "status": "failed",
        "reason": NOT_COLLECTED,
    }
    # Ingesting again leaves what was brought back as it is.
    assert ingest_archives(run) == {"corrupt": "failed", "lost": "failed"}
    assert run.read_status("good")["status"] == "collected"


def test_the_extra_variables_are_what_site_yml_reads(tmp_path: Path) -> None:
    run = prepared_run(tmp_path, ["a", "b"])
    text = extravars_text(site_extravars(run, ["a", "b"], 5.4321))
    assert yaml.safe_load(text) == {
        "fleetprof_run_dir": str(run.path.resolve()),
        "fleetprof_hosts": "a,b",
        "fleetprof_lead_s": 5.432,
        **device_bundle.extravars(),
    }
    written = tmp_path / "vars.yml"
    written.write_text(text)
    assert resolve_run_dir(written) == run.path.resolve()
    assert resolve_run_dir(run.path) == run.path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("fleetprof_hosts: a\n", "fleetprof_run_dir: expected the run directory's path"),
        ("fleetprof_run_dir: [1]\n", "fleetprof_run_dir: expected the run directory's path"),
        ("fleetprof_run_dir: [unclosed\n", "not a readable extra-variables file"),
    ],
)
def test_a_bad_extra_variables_file_names_the_file_and_the_key(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "vars.yml"
    path.write_text(content)
    with pytest.raises(StagesError, match=expected) as caught:
        resolve_run_dir(path)
    assert str(path) in str(caught.value)


def test_ingest_on_bad_input_exits_2_with_the_reason_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "vars.yml"
    bad.write_text("fleetprof_hosts: a\n")
    for target, expected in (
        (bad, f"{bad}: fleetprof_run_dir: expected"),
        (tmp_path / "missing", "no such run directory or extra-variables file"),
        (tmp_path, "not a fleetprof run directory (no run.json)"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli.stages", "ingest", str(target)],
            capture_output=True,
            text=True,
            timeout=60,
            env={"NO_COLOR": "1", "COLUMNS": "300", "PATH": "/usr/bin:/bin"},
            cwd=REPO,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr
        assert "Traceback" not in done.stderr
