"""Real campaigns on the embedded default inventory (this machine, local connection).

Each test goes through the real command line, ansible-runner, the device-side runner and
py-spy, and checks the report against what the profiled process really does.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import FLEETPROF_ARGV, needs_ptrace
from tests.support.workloads import SPLIT_WORKLOAD, function_pct

pytestmark = [pytest.mark.integration, needs_ptrace]


def write_campaign(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def test_attach_to_an_unknown_process_reports_its_real_hot_functions(
    fleetprof: Any, workload: Any, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    proc = workload(SPLIT_WORKLOAD, f"--token={token}")
    time.sleep(0.5)
    campaign = write_campaign(
        tmp_path / "attach.yml",
        f"name: attach-it\nduration: 6s\nstart: {{lead: 4s}}\n"
        f"target:\n  attach:\n    process: 'workload_.*--token={token}'\n"
        "profilers:\n  py-spy: {rate: 97}\n",
    )
    result = fleetprof("run", str(campaign))
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.report("attach-it")
    assert report["schema"] == "fleetprof.report/1"
    assert report["summary"]["ok"] == 1
    [host] = report["hosts"]
    assert host["name"] == "localhost"
    assert host["status"] == "ok", host["reason"]
    assert host["profilers"]["py-spy"]["status"] == "ok"
    assert abs(function_pct(host, "alpha_work") - 70.0) <= 6.0
    assert abs(function_pct(host, "beta_work") - 30.0) <= 6.0
    assert host["metrics"]["pyspy.samples"] >= 6 * 97 * 0.7
    assert abs(host["start_offset_ms"]) < 1000
    assert host["flamegraph"]["value"] == host["metrics"]["pyspy.samples"]
    run_dir = result.run_dir("attach-it")
    # The target was only observed: it is still running, and the report page exists.
    assert proc.poll() is None
    html = (run_dir / "report.html").read_text()
    assert "alpha_work" in html and "<svg" in html
    manifest = json.loads((run_dir / "hosts/localhost/session/manifest.json").read_text())
    assert manifest["target"]["pid"] == proc.pid
    assert "report.html" in result.stdout


def test_demo_launches_the_pipeline_and_its_stage_shares_match_the_profile(
    fleetprof: Any,
) -> None:
    result = fleetprof("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.report("demo")
    [host] = report["hosts"]
    assert host["status"] == "ok", host["reason"]
    run_dir = result.run_dir("demo")
    # The truth: what the pipeline printed when it stopped (its own clock and counts).
    printed = (run_dir / "hosts/localhost/session/target.stdout").read_text()
    found = re.search(r"(\d+) frames in ([\d.]+) s, ([\d.]+) fps", printed)
    shares = re.search(r"stage shares (\{.*\})", printed)
    assert found and shares, printed
    for stage, share in json.loads(shares.group(1)).items():
        assert abs(function_pct(host, stage) - 100 * share) <= 8.0, (stage, share)
    # Its own metrics came through FLEETPROF_METRICS_FILE: a rate each second, every
    # frame's time; their means agree with its whole-run figure.
    fps = float(found.group(3))
    metrics = host["metrics"]
    assert metrics["workload.fps"] == pytest.approx(fps, rel=0.05)
    assert metrics["workload.frame_ms"] == pytest.approx(1000.0 / fps, rel=0.05)
    assert metrics["workload.frame_ms.count"] == int(found.group(1))
    assert metrics["workload.fps.count"] >= 15  # 20 s window, one a second
    assert report["compare"]["directions"] == {"fps": "higher", "frame_ms": "lower"}
    # The launched command was stopped at the deadline: nothing of it is left running.
    leftover = subprocess.run(
        ["pgrep", "-f", "examples/workloads/video_pipeline.py"], capture_output=True, text=True
    )
    assert leftover.stdout.strip() == ""
    assert str(run_dir / "report.html") in result.stdout.replace("\n", "")


def test_a_target_that_matches_nothing_fails_that_host_with_the_reason(
    fleetprof: Any, tmp_path: Path
) -> None:
    campaign = write_campaign(
        tmp_path / "nothing.yml",
        "name: nothing\nduration: 2s\nstart: {lead: 4s}\n"
        "target:\n  attach:\n    process: 'no-such-process-$(id);rm -rf /tmp/x'\n",
    )
    result = fleetprof("run", str(campaign))
    assert result.returncode == 3, result.stdout + result.stderr
    [host] = result.report("nothing")["hosts"]
    assert host["status"] == "failed"
    assert "no process matches" in host["reason"]


def test_report_rebuilds_every_output_from_the_run_directory(
    fleetprof: Any, workload: Any, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    workload(SPLIT_WORKLOAD, f"--token={token}")
    campaign = write_campaign(
        tmp_path / "again.yml",
        f"name: again\nduration: 2s\nstart: {{lead: 4s}}\n"
        f"target:\n  attach:\n    process: '--token={token}'\n",
    )
    first = fleetprof("run", str(campaign))
    assert first.returncode == 0, first.stdout + first.stderr
    run_dir = first.run_dir("again")
    before = json.loads((run_dir / "report.json").read_text())
    (run_dir / "report.json").unlink()
    (run_dir / "report.html").unlink()
    rebuilt = subprocess.run(
        [*FLEETPROF_ARGV, "report", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads((run_dir / "report.json").read_text()) == before
    assert (run_dir / "report.html").is_file()
