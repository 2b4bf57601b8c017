"""Per-host exports: a speedscope file and normalized folded stacks, from the host's
py-spy output in the run directory. Device strings are hostile on purpose."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from orchestrator.analysis.stacks import Frame, parse_folded, read_folded
from orchestrator.report.exports import (
    FOLDED_FILE,
    SPEEDSCOPE_FILE,
    SPEEDSCOPE_SCHEMA,
    folded_text,
    speedscope,
    write_exports,
)
from orchestrator.stages.rundir import RunDir
from tests.support.paths import FIXTURES as _FIXTURES

FIXTURES = _FIXTURES / "py-spy"
CPU_FOLDED = FIXTURES / "cpu-two-stages.threads-idle.folded.txt"
PYSPY_SPEEDSCOPE = FIXTURES / "cpu-two-stages.speedscope.json"

HOSTILE_FOLDED = (
    'process 7:"python3 x";thread (0x1F): Main;main (app.py:1);'
    '<img src=x onerror=alert(1)> ("><script>alert(1)</script>:3) 60\n'
    "main (app.py:1);\x1b[2Jcleared (C:\\Program Files (x86)\\a.py:9) 30\n"
    "main (app.py:1);[bold red]x \\u0000 (app.py) 10\n"
    "main (app.py:1);name with spaces 5\n"
    " 7\n"
    "not a count line\n"
)


def _run_with(tmp_path: Path, folded: dict[str, str]) -> RunDir:
    run = RunDir.create(tmp_path / "reports", "camp", "20260101-000000-abcd")
    for host, text in folded.items():
        session = run.session_dir(host)
        session.mkdir(parents=True)
        (session / "py-spy.folded").write_text(text, encoding="utf-8")
    return run


def _check_speedscope(document: dict[str, Any], total: int) -> None:
    assert document["$schema"] == SPEEDSCOPE_SCHEMA
    frames = document["shared"]["frames"]
    assert all(isinstance(f["name"], str) for f in frames)
    assert all(isinstance(f.get("file", ""), str) for f in frames)
    assert all(isinstance(f.get("line", 0), int) for f in frames)
    [profile] = document["profiles"]
    assert profile["type"] == "sampled"
    assert profile["unit"] == "none"
    assert len(profile["samples"]) == len(profile["weights"])
    assert all(0 <= i < len(frames) for stack in profile["samples"] for i in stack)
    assert sum(profile["weights"]) == total
    assert profile["endValue"] - profile["startValue"] == total
    # Every frame is used and none twice.
    used = {i for stack in profile["samples"] for i in stack}
    assert used == set(range(len(frames)))
    assert len({json.dumps(f, sort_keys=True) for f in frames}) == len(frames)


def test_speedscope_has_py_spys_own_structure_and_the_same_stacks() -> None:
    profile = read_folded(CPU_FOLDED)
    ours = speedscope(profile, "edge-1")
    _check_speedscope(ours, profile.total_samples)
    theirs = json.loads(PYSPY_SPEEDSCOPE.read_text())
    assert set(theirs) <= set(ours)
    assert set(theirs["profiles"][0]) == set(ours["profiles"][0])
    assert theirs["profiles"][0]["type"] == ours["profiles"][0]["type"]
    assert {f["name"] for f in ours["shared"]["frames"]} == {
        f["name"] for f in theirs["shared"]["frames"]
    }

    # Rebuilding the stacks from the export gives back the profile.
    frames = ours["shared"]["frames"]
    rebuilt: dict[tuple[Frame, ...], int] = {}
    sampled = ours["profiles"][0]
    for stack, weight in zip(sampled["samples"], sampled["weights"], strict=True):
        key = tuple(
            Frame(frames[i]["name"], frames[i].get("file"), frames[i].get("line")) for i in stack
        )
        rebuilt[key] = rebuilt.get(key, 0) + weight
    assert rebuilt == profile.stacks


def test_hostile_names_survive_as_data_in_both_exports() -> None:
    profile = parse_folded(HOSTILE_FOLDED)
    document = speedscope(profile, '<script>"host"')
    _check_speedscope(document, profile.total_samples)
    names = {f["name"] for f in document["shared"]["frames"]}
    assert "<img src=x onerror=alert(1)>" in names
    assert "␛[2Jcleared" in names  # control characters made visible (docs/security.md)
    assert "name with spaces" in names
    files = {f.get("file") for f in document["shared"]["frames"]}
    assert '"><script>alert(1)</script>' in files
    assert "C:\\Program Files (x86)\\a.py" in files
    # Pseudo-frames are not functions.
    assert not any(n.startswith(("thread (", "process ")) for n in names)
    # The JSON round-trips exactly.
    assert json.loads(json.dumps(document)) == document

    text = folded_text(profile)
    again = parse_folded(text)
    assert again.malformed_lines == 0
    # The empty-stack samples have no line in the folded export; everything else does.
    assert {k: v for k, v in profile.stacks.items() if k} == again.stacks
    assert again.total_samples == profile.total_samples - 7
    assert all(line.rsplit(" ", 1)[1].isdigit() for line in text.splitlines())


def test_folded_export_is_normalized_and_largest_first() -> None:
    profile = read_folded(CPU_FOLDED)
    lines = folded_text(profile).splitlines()
    counts = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert counts == sorted(counts, reverse=True)
    assert not any("thread (" in line for line in lines)
    assert lines[0].startswith("<module> (work.py:12);")
    assert sum(counts) == sum(v for k, v in profile.stacks.items() if k)


def test_write_exports_writes_both_files_per_host_with_stacks(tmp_path: Path) -> None:
    run = _run_with(
        tmp_path,
        {"edge-1": CPU_FOLDED.read_text(), "edge-2": HOSTILE_FOLDED, "empty": "garbage\n"},
    )
    run.host_dir("no-session").mkdir()
    written = write_exports(run)
    host_dir = run.path / "hosts"
    assert sorted(p.relative_to(host_dir).as_posix() for p in written) == [
        f"edge-1/{FOLDED_FILE}",
        f"edge-1/{SPEEDSCOPE_FILE}",
        f"edge-2/{FOLDED_FILE}",
        f"edge-2/{SPEEDSCOPE_FILE}",
    ]
    document = json.loads((host_dir / "edge-1" / SPEEDSCOPE_FILE).read_text())
    _check_speedscope(document, read_folded(CPU_FOLDED).total_samples)
    assert "edge-1" in document["name"]
    assert not (host_dir / "empty" / SPEEDSCOPE_FILE).exists()
    # A rebuild writes the same bytes.
    before = (host_dir / "edge-2" / SPEEDSCOPE_FILE).read_bytes()
    write_exports(run)
    assert (host_dir / "edge-2" / SPEEDSCOPE_FILE).read_bytes() == before


def test_a_link_in_place_of_the_stacks_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.folded"
    shutil.copy(CPU_FOLDED, secret)
    run = _run_with(tmp_path, {})
    session = run.session_dir("edge-1")
    session.mkdir(parents=True)
    (session / "py-spy.folded").symlink_to(secret)
    assert write_exports(run) == []
