"""A session whose archive could not be made (a full device disk): the collect play
fetched its files one by one into hosts/<host>/loose/, and the controller takes them into
hosts/<host>/session/ as safely as it unpacks a tarball (orchestrator/stages/safetar.py
``safe_copy_dir``, RunDir.unpack, ingest_archives)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from orchestrator.stages.handoff import ingest_archives
from orchestrator.stages.rundir import LOOSE_DIR, RunDir
from orchestrator.stages.safetar import MAX_REJECTED_KEPT, UnsafeArchive, safe_copy_dir
from tests.support.runs import prepared_run

MANIFEST = {"status": "partial", "reason": "device disk full: the archive ...", "profilers": {}}


def loose_dir(path: Path, files: dict[str, bytes]) -> Path:
    path.mkdir(parents=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


def test_a_fetched_workdir_is_taken_in_with_owner_only_modes(tmp_path: Path) -> None:
    source = loose_dir(
        tmp_path / "loose", {"manifest.json": b"{}", "system.jsonl": b'{"t":1}\n' * 100}
    )
    os.chmod(source / "system.jsonl", 0o644)

    result = safe_copy_dir(source, tmp_path / "session")

    assert result.files == ["manifest.json", "system.jsonl"]
    assert result.total_bytes == 2 + 800 and result.rejected_count == 0
    assert (tmp_path / "session" / "system.jsonl").read_bytes() == b'{"t":1}\n' * 100
    assert stat.S_IMODE(os.stat(tmp_path / "session").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "session" / "system.jsonl").st_mode) == 0o600


def test_links_directories_fifos_and_control_characters_are_skipped_and_named(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("controller's own file")
    source = loose_dir(tmp_path / "loose", {"manifest.json": b"{}", "a\x1bb": b"x"})
    (source / "link").symlink_to(secret)
    os.link(secret, source / "hard")
    (source / "sub").mkdir()
    os.mkfifo(source / "fifo")

    result = safe_copy_dir(source, tmp_path / "session")

    assert result.files == ["manifest.json"]
    assert result.rejected_count == 5
    reasons = "; ".join(result.rejected)
    for expected in (
        "'link': symbolic link",
        "'hard': hard link",
        "'sub': directory",
        "'fifo': not a regular file",
        "control characters",
    ):
        assert expected in reasons, reasons
    assert sorted(os.listdir(tmp_path / "session")) == ["manifest.json"]


def test_past_a_cap_nothing_is_taken_and_an_older_session_stays(tmp_path: Path) -> None:
    source = loose_dir(tmp_path / "loose", {"manifest.json": b"{}", "big": b"x" * 5000})
    dest = loose_dir(tmp_path / "session", {"old": b"kept"})

    with pytest.raises(UnsafeArchive, match="max_member_bytes"):
        safe_copy_dir(source, dest, max_member_bytes=4096)
    with pytest.raises(UnsafeArchive, match="max_total_bytes"):
        safe_copy_dir(source, dest, max_total_bytes=4096)
    with pytest.raises(UnsafeArchive, match="more than 1 files"):
        safe_copy_dir(source, dest, max_members=1)

    assert os.listdir(dest) == ["old"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".session")] == []


def test_a_flood_of_bad_names_keeps_only_the_first_few_reasons(tmp_path: Path) -> None:
    source = loose_dir(tmp_path / "loose", {"manifest.json": b"{}"})
    for index in range(200):
        (source / f"l{index:03d}").symlink_to("/" + "x" * 200)

    result = safe_copy_dir(source, tmp_path / "session")

    assert result.rejected_count == 200 and len(result.rejected) == MAX_REJECTED_KEPT
    assert len(result.rejected_summary() or "") <= 1000


def test_ingest_takes_a_fetched_workdir_and_the_manifest_says_partial(tmp_path: Path) -> None:
    run: RunDir = prepared_run(tmp_path, ["full", "lost"])
    loose_dir(
        run.host_dir("full") / LOOSE_DIR,
        {"manifest.json": json.dumps(MANIFEST).encode(), "system.jsonl": b'{"t":1}\n'},
    )

    assert run.fetched("full") and not run.fetched("lost")
    assert ingest_archives(run) == {"full": "collected", "lost": "failed"}

    assert run.read_manifest("full") == MANIFEST
    assert (run.session_dir("full") / "system.jsonl").read_bytes() == b'{"t":1}\n'
    assert not (run.host_dir("full") / LOOSE_DIR).exists(), "the fetched copies are removed"
    assert run.read_status("full")["status"] == "collected"
