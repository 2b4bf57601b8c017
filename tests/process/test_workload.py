"""The demo workload: it measures itself, stops cleanly, and its stages own their CPU time.

fleetprof's demo and integration tests profile this workload and compare the profile
with the workload's own per-stage timing, so these properties are what they rely on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO

WORKLOAD = REPO / "examples" / "workloads" / "video_pipeline.py"
STAGES = ("decode_frame", "detect_motion", "summarize_scene", "write_results")
SHARE_TOLERANCE = 0.08  # fraction of all samples


def start_workload(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    fps_file = tmp_path / "fps.json"
    process = subprocess.Popen(
        [
            sys.executable,
            str(WORKLOAD),
            "--fps-file",
            str(fps_file),
            "--out",
            str(tmp_path / "out"),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    return process, fps_file


def wait_for_frames(process: subprocess.Popen[str], fps_file: Path, timeout: float = 30.0) -> None:
    """Wait until the workload has written an fps file with frames in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"workload exited early with {process.returncode}")
        if fps_file.exists() and json.loads(fps_file.read_text())["frames"] > 0:
            return
        time.sleep(0.05)
    pytest.fail("workload wrote no frames in time")


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


def check_report(report: dict[str, Any]) -> None:
    assert report["frames"] > 0
    assert report["fps"] > 0
    assert report["elapsed_s"] > 0
    assert set(report["stage_seconds"]) == set(STAGES)
    assert set(report["stage_share"]) == set(STAGES)
    assert all(report["stage_seconds"][stage] > 0 for stage in STAGES)
    assert sum(report["stage_share"].values()) == pytest.approx(1.0, abs=1e-3)


def leaf_samples(folded: str) -> Counter[str]:
    """Samples per leaf function in a py-spy raw (folded) profile: its self time."""
    samples: Counter[str] = Counter()
    for line in folded.splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        leaf = stack.split(";")[-1]  # "func (file.py:12)"
        samples[leaf.split(" (")[0].strip()] += int(count)
    return samples


def disagreements(samples: Counter[str], measured: dict[str, float]) -> list[str]:
    total = sum(samples.values())
    assert total > 0, "the profile has no samples"
    problems = []
    for stage in STAGES:
        profiled = samples[stage] / total
        if abs(profiled - measured[stage]) > SHARE_TOLERANCE:
            problems.append(
                f"{stage}: py-spy self share {profiled:.3f}, workload's own {measured[stage]:.3f}"
            )
    return problems


def test_runs_for_its_duration_and_reports_stage_times(tmp_path: Path) -> None:
    process, fps_file = start_workload(tmp_path, "--duration", "2")
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    report = json.loads(fps_file.read_text())
    check_report(report)
    assert report["final"] is True
    assert report["pid"] == process.pid
    assert report["elapsed_s"] == pytest.approx(2.0, abs=0.5)
    lines = stdout.splitlines()
    assert lines[0] == f"video_pipeline: pid {process.pid}"
    assert lines[-2].endswith(" fps") and lines[-1].startswith("video_pipeline: stage shares ")
    shares = json.loads(lines[-1].split("stage shares ", 1)[1])
    assert shares == report["stage_share"]
    results = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert results, "no results were written"
    assert all("frames" in json.loads(line) for line in results)
    assert not list(tmp_path.glob(".fps.json.*")), "a temporary fps file was left behind"


def test_sigterm_finishes_the_frame_and_exits_zero(tmp_path: Path) -> None:
    process, fps_file = start_workload(tmp_path)
    try:
        wait_for_frames(process, fps_file)
    finally:
        _, stderr = stop(process)

    assert process.returncode == 0, stderr
    report = json.loads(fps_file.read_text())
    check_report(report)
    assert report["final"] is True


def test_sigint_is_a_clean_stop_too(tmp_path: Path) -> None:
    process, fps_file = start_workload(tmp_path)
    try:
        wait_for_frames(process, fps_file)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        stop(process)

    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert json.loads(fps_file.read_text())["final"] is True


def find_py_spy() -> str | None:
    beside_python = Path(sys.executable).parent / "py-spy"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("py-spy")


def record_profile(py_spy: str, pid: int, output: Path) -> subprocess.CompletedProcess[str]:
    argv = [py_spy, "record", "--pid", str(pid), "--duration", "3", "--rate", "97"]
    argv += ["--format", "raw", "--output", str(output)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_py_spy_self_time_matches_the_workloads_own_stage_shares(tmp_path: Path) -> None:
    py_spy = find_py_spy()
    if py_spy is None:
        pytest.skip("py-spy is not installed (pip install py-spy)")
    process, fps_file = start_workload(tmp_path)
    samples: Counter[str] = Counter()
    try:
        wait_for_frames(process, fps_file)
        # 3 s at 97 Hz is about 290 samples: a few points of sampling noise per stage, more
        # on a loaded machine where py-spy falls behind and takes its samples in bursts.
        # When the first profile is off, a second one is pooled with it; a stage that does
        # not own its time stays off however many samples there are.
        for attempt in range(2):
            profiler = record_profile(py_spy, process.pid, tmp_path / f"profile-{attempt}.txt")
            if profiler.returncode != 0:
                break
            samples += leaf_samples((tmp_path / f"profile-{attempt}.txt").read_text())
            running = json.loads(fps_file.read_text())["stage_share"]
            if not disagreements(samples, running):
                break
    finally:
        _, stderr = stop(process)

    if profiler.returncode != 0:
        message = profiler.stdout + profiler.stderr
        if any(
            hint in message
            for hint in ("Permission denied", "Operation not permitted", "ptrace", "root")
        ):
            pytest.skip(f"py-spy may not attach here (uid {os.getuid()}): {message.strip()}")
        pytest.fail(f"py-spy failed with {profiler.returncode}: {message}")
    assert process.returncode == 0, stderr

    measured = json.loads(fps_file.read_text())["stage_share"]
    problems = disagreements(samples, measured)
    assert not problems, f"{problems}; all samples by leaf function: {dict(samples)}"


def test_it_writes_its_own_metrics_where_fleetprof_names_a_file(tmp_path: Path) -> None:
    """FLEETPROF_METRICS_FILE set (as the runner sets it): a rate each second and each
    frame's time, as JSON lines; the frames it timed are the frames it counted."""
    metrics = tmp_path / "workload.jsonl"
    process = subprocess.run(
        [sys.executable, str(WORKLOAD), "--duration", "2.5", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "FLEETPROF_METRICS_FILE": str(metrics)},
        timeout=60,
    )
    assert process.returncode == 0, process.stderr
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    frames = int(process.stdout.split(" frames in ")[0].rsplit(" ", 1)[1])
    assert sum(1 for line in lines if line["name"] == "frame_ms") == frames
    fps = [line for line in lines if line["name"] == "fps"]
    assert len(fps) == 2 and all(line["unit"] == "frames/s" and line["value"] > 0 for line in fps)
    assert {line["name"] for line in lines} == {"fps", "frame_ms"}
