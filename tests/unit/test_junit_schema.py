"""The check's JUnit XML against its strictest readers: valid against the Jenkins
xunit-plugin schema junit-10.xsd (tests/fixtures/junit/, see SOURCES.md) and read by
junit2html, for a check with findings of every kind, an incomplete host, hostile names
and durations that str() would write with an exponent."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from junit2htmlreport.parser import Junit  # type: ignore[import-untyped,unused-ignore]

from orchestrator.campaign.model import CheckSpec
from orchestrator.check.judge import Baseline, check_document, judge_run
from orchestrator.report.junit import write_junit
from tests.support.check_reports import NASTY, check_report, passing_report
from tests.support.paths import FIXTURES

SCHEMA = xmlschema.XMLSchema(FIXTURES / "junit" / "junit-10.xsd")
CPU = "probe.cpu.single_ops_per_s"


def judged_report() -> dict[str, Any]:
    """A report whose check{} the judgement itself wrote: b2 regressed, b3 started late
    (incomplete window: not judged), b4 is missing from the run."""

    def host(name: str, center: float, incomplete: str | None = None) -> dict[str, Any]:
        reps = [center * (1 + d) for d in (-0.01, 0.0, 0.01, 0.005, -0.005)]
        return {
            "name": name,
            "hw_model": "board",
            "group": "board",
            "status": "partial" if incomplete else "ok",
            "reason": incomplete,
            "incomplete": incomplete,
            "metrics": {CPU: center},
            "samples": {CPU: reps},
        }

    baseline_hosts = [host(f"b{i}", 1000.0) for i in range(5)]
    baseline = Baseline(
        "r1",
        "pinned",
        None,
        {h["name"]: h["samples"] for h in baseline_hosts},
        {h["name"]: "ok" for h in baseline_hosts},
    )
    hosts = [
        host("b0", 1000.0),
        host("b1", 1000.0),
        host("b2", 500.0),
        host("b3", 2.0, "started 10.2 s late in a 15 s window"),
    ]
    report = {
        "schema": "fleetprof.report/1",
        "campaign": "nightly",
        "run_id": "r2",
        "started_at": "2026-11-25T02:00:00+00:00",
        "duration_s": 1e-05,
        "hosts": hosts,
        "outliers": [],
    }
    judgement = judge_run(report, baseline, CheckSpec())
    document = check_document(
        judgement,
        report,
        baseline,
        CheckSpec(),
        confirm_run=None,
        stability=(1, {}),
        history={"runs": [], "series": {}},
    )
    return {**report, **document}


def reports() -> list[dict[str, Any]]:
    huge = copy.deepcopy(check_report())
    huge["duration_s"] = 1.5e16
    return [check_report(), passing_report(), judged_report(), huge]


@pytest.mark.parametrize("index", range(4))
def test_the_junit_file_is_valid_against_jenkins_junit_10_xsd(index: int, tmp_path: Path) -> None:
    path = tmp_path / "check.xml"
    write_junit(reports()[index], path)
    errors = [f"{e.reason} at {e.path}" for e in SCHEMA.iter_errors(str(path))]
    assert errors == []


def test_junit2html_reads_it_and_sees_what_the_check_found(tmp_path: Path) -> None:
    path = tmp_path / "check.xml"
    write_junit(check_report(), path)
    [suite] = Junit(filename=str(path)).suites
    assert suite.name == "fleetprof check nightly-variability"
    failed = {case.name for case in suite.failed()}
    assert f"{NASTY}: regressions" in failed
    assert "pi-01: status" in failed
    assert Junit(filename=str(path)).html()  # renders


def test_an_incomplete_host_fails_its_status_case_and_skips_the_others(tmp_path: Path) -> None:
    report = judged_report()
    assert report["check"]["verdict"] == "findings"  # b2 regressed
    kinds = {(f["host"], f["kind"]) for f in report["check"]["findings"]}
    assert kinds == {("b2", "regression"), ("b3", "incomplete"), ("b4", "missing")}
    path = tmp_path / "check.xml"
    write_junit(report, path)
    [suite] = Junit(filename=str(path)).suites
    cases = {case.name: case for case in suite.all()}
    assert cases["b3: status"].failed()
    assert "started 10.2 s late" in (cases["b3: status"].failure_msg or "")
    for name in ("b3: outliers", "b3: regressions"):
        assert cases[name].skipped is not None and not cases[name].failed()
        assert "incomplete window" in (cases[name].skipped_msg or cases[name].skipped or "")
    assert not cases["b0: regressions"].failed() and cases["b2: regressions"].failed()
