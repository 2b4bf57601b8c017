"""The CPU probe's repetitions on a busy or throttled device: a window that is mostly gone
before it could start is marked missed (not timed as a sliver), the all-core windows open
once every worker is up, and the parser leaves missed repetitions out with a note."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.stages.probe import parse_probe
from tests.support.probes import probe_doc, write
from tests.support.session import load_runner

# Starts the real worker command after a delay: an interpreter that is slow to come up.
SLOW_START = (
    "import os, sys, time; time.sleep(float(sys.argv[1])); os.execv(sys.argv[2], sys.argv[2:])"
)


def test_a_window_mostly_gone_before_its_turn_is_missed_not_timed() -> None:
    runner = load_runner()
    now = time.time()
    gone, sliver, ahead = [now - 1.0, now - 0.5], [now - 0.09, now + 0.01], [now, now + 0.05]
    reps = runner.probe_cpu([gone, sliver, ahead])
    assert reps[0]["missed"] is True and reps[0]["iterations"] == 0
    assert reps[1]["missed"] is True  # 10 ms of a 100 ms window left: not a rate
    assert "missed" not in reps[2]
    assert reps[2]["iterations"] > 0 and reps[2]["seconds"] >= 0.04


def log(_: str) -> None:
    pass


def test_all_core_windows_open_once_slow_workers_are_up(tmp_path: Path) -> None:
    """Workers that take 0.3 s to start (a throttled board) would have missed every window
    fixed 0.25 s after spawning; the windows now wait for them (up to half the all-core
    time, 0.75 s here)."""
    runner = load_runner()
    children: list[Any] = []

    def spawn(label: str, argv: list[str], cwd: str) -> Any:
        slow = [sys.executable, "-c", SLOW_START, "0.3", *argv]
        child = runner.Child(slow, cwd, f"{cwd}/{label}.stdout", f"{cwd}/{label}.stderr")
        children.append(child)
        return child

    probe = runner.Probe({"probe": ["cpu"], "probe_repeats": 4}, str(tmp_path), log)
    result: dict[str, Any] = {}
    start = time.time()
    probe._cpu(result, spawn, start + 3.0, start + 5.0)
    assert all(child.exited() for child in children)
    assert result["all"]["ready"] == result["all"]["processes"]
    assert 0.3 <= result["all"]["ready_s"] < 0.8
    reps = result["all"]["reps"]
    assert len(reps) == 4
    for rep in reps:
        for worker in rep["workers"]:
            assert "missed" not in worker and worker["iterations"] > 0, rep
    assert not list(tmp_path.glob("probe-cpu-*")) and not list(tmp_path.glob(".probe-cpu-go*"))


def test_missed_repetitions_are_left_out_with_a_note(tmp_path: Path) -> None:
    timed = {"iterations": 100, "seconds": 1.0, "late_s": 0.0}
    missed = {"iterations": 0, "seconds": 0.0, "late_s": 0.9, "missed": True}
    sliver = {"iterations": 2000, "seconds": 0.0002, "late_s": 0.3}  # the old sliver's rate
    doc = probe_doc(
        cpu={
            "single": {"reps": [timed, timed, missed, dict(missed)]},
            "all": {"reps": [{"workers": [timed, timed]}, {"workers": [timed, missed]}]},
        }
    )
    result = parse_probe(write(tmp_path, doc), ["cpu"])
    assert result.samples["probe.cpu.single_ops_per_s"] == [100.0, 100.0]
    # An all-core worker that missed its window did nothing in it: the repetition counts,
    # with that worker's share at zero (leaving it out would flatter a throttled device).
    assert result.samples["probe.cpu.all_ops_per_s"] == [200.0, 100.0]
    notes = " | ".join(result.data_quality)
    assert "probe.cpu.single_ops_per_s: 2 of 4 repetitions missed their window" in notes
    assert "all_ops_per_s" not in notes
    assert "malformed" not in notes
    # Without the mark, a sliver is still a rate: the device decides what it timed.
    doc = probe_doc(cpu={"single": {"reps": [timed, sliver]}, "all": {"reps": []}})
    rates = parse_probe(write(tmp_path, doc), ["cpu"]).samples["probe.cpu.single_ops_per_s"]
    assert max(rates) > 1e6
    assert json.loads((tmp_path / "probe.json").read_text())["schema"] == "fleetprof.probe/1"
