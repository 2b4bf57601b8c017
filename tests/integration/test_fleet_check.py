"""The nightly check on the real SSH test fleet (tests/fleet): a first check passes and
becomes the baseline; one host is then CPU-throttled, and the second check names that
host, and only that host, as regressed, in its exit code, report, JUnit and Prometheus
files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from junitparser import Failure, JUnitXml
from prometheus_client.parser import text_string_to_metric_families

from tests.fleet import Fleet
from tests.fleet.fixtures import requires_fleet
from tests.support.paths import REPO

pytestmark = [pytest.mark.integration, requires_fleet]

FLEETPROF = str(Path(sys.executable).parent / "fleetprof")


def check(fleet: Fleet, campaign: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``fleetprof check`` on the fleet, in the fleet's controller cgroup: with the hosts'
    priority, so a busy machine neither starves the hosts of their quota nor Ansible of
    the time to start every session within its lead."""
    return subprocess.run(
        [FLEETPROF, "check", str(campaign), "-i", str(fleet.inventory), "-o", str(out), *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        check=False,
        preexec_fn=fleet.controller_cgroup().attach_self,
    )


def latest_report(out: Path, name: str) -> dict[str, Any]:
    """The newest check run's report (confirm runs are not checks)."""
    reports = []
    for path in (out / name).glob("*/report.json"):
        meta = json.loads((path.parent / "run.json").read_text())
        if meta.get("kind") == "check":
            reports.append((meta["run_id"], json.loads(path.read_text())))
    return sorted(reports, key=lambda item: item[0])[-1][1]


def test_a_throttled_host_is_named_as_regressed_and_only_it(
    fleet_factory: Any, tmp_path: Path
) -> None:
    # Each board held to 0.4 of a core, and given it (cpu_priority) even while the machine
    # is busy with other work: the model's speed is its quota, not what other test runs
    # leave of this machine's two cores. Without the priority a loaded machine slowed
    # every board alike, to the throttled one's speed: each became a "regression" against
    # the baseline, and the throttled one was no longer an outlier.
    fleet = fleet_factory({"board": {"count": 4, "cpu": 0.4}}, cpu_priority=True)
    throttled = fleet.hosts[1].name
    campaign = tmp_path / "nightly.yml"
    campaign.write_text(
        "name: nightly\nduration: 5s\nstart: {lead: 4s}\n"
        "target: {probe: [cpu], repeats: 10}\n"
        "check: {confirm: {duration: 4s}}\n"
    )
    out = tmp_path / "out"

    first = check(fleet, campaign, out)
    assert first.returncode == 0, first.stdout + first.stderr
    report = latest_report(out, "nightly")
    assert report["check"]["verdict"] == "pass"
    assert report["check"]["baseline"]["source"] == "none"
    assert "baseline set" in first.stdout

    fleet.set_cpu(throttled, 0.1)
    junit, prom, markdown = tmp_path / "nightly.xml", tmp_path / "fleet.prom", tmp_path / "n.md"
    second = check(
        fleet,
        campaign,
        out,
        "--junit",
        str(junit),
        "--prometheus",
        str(prom),
        "--markdown",
        str(markdown),
    )
    assert second.returncode == 1, second.stdout + second.stderr
    report = latest_report(out, "nightly")
    result = report["check"]
    assert result["verdict"] == "findings"
    assert result["baseline"]["source"] == "pinned"
    assert result["confirm"]["hosts"] and throttled in result["confirm"]["hosts"]
    assert {f["host"] for f in result["findings"]} == {throttled}, result["findings"]
    regressed = [r for r in report["regressions"] if r["confirmed"]]
    assert {r["host"] for r in regressed} == {throttled}
    single = next(r for r in regressed if r["metric"] == "probe.cpu.single_ops_per_s")
    assert single["change_pct"] < -30 and single["q_value"] <= 0.05
    assert single["stability"] == {"flagged": 1, "checks": 2}
    # What differs on that host: the CPU quota the test fleet throttles it with.
    assert any(d["key"] == "cpu_quota_cores" for d in single["fingerprint"]), single

    cases = {case.name: case for suite in JUnitXml.fromfile(str(junit)) for case in suite}
    failing = {
        name for name, case in cases.items() if any(isinstance(r, Failure) for r in case.result)
    }
    assert failing and all(name.startswith(f"{throttled}:") for name in failing), failing
    assert f"{throttled}: regressions" in failing
    assert f"{fleet.hosts[0].name}: regressions" in cases

    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    passed = families["fleetprof_check_passed"].samples[0]
    assert passed.value == 0 and passed.labels["campaign"] == "nightly"
    flagged = {
        s.labels["host"]
        for s in families["fleetprof_check_findings"].samples
        if s.labels["kind"] == "regression" and s.value > 0
    }
    assert flagged == {throttled}
    assert throttled in markdown.read_text()

    history = subprocess.run(
        [
            FLEETPROF,
            "history",
            "-o",
            str(out),
            "--host",
            throttled,
            "--metric",
            "probe.cpu.single_ops_per_s",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert history.returncode == 0, history.stderr
    points = json.loads(history.stdout)
    assert [p["host"] for p in points] == [throttled, throttled]  # two checks, not the confirm
    assert points[1]["value"] < 0.7 * points[0]["value"]
