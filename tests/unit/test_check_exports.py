"""The nightly check's exports (docs/check.md, Exports): JUnit XML for CI and the
node_exporter textfile for Prometheus, written from a report.json-shaped dict and read
back with the libraries their consumers' tooling uses.

Host names are hostile on purpose (quotes, backslashes, newlines, markup, pipes): both
files must still parse and give the same names back.
"""

from __future__ import annotations

import copy
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from junitparser import JUnitXml, TestCase, TestSuite
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.report.junit import write_junit, xml_text
from orchestrator.report.prometheus import KINDS, write_prometheus
from tests.support.check_reports import (
    JETSON,
    NASTY,
    check_report,
    passing_report,
)

# -- JUnit ---------------------------------------------------------------------------------


def _junit(report: dict[str, Any], path: Path) -> TestSuite:
    write_junit(report, path)
    document = JUnitXml.fromfile(str(path))
    suites = list(document)
    assert len(suites) == 1
    return suites[0]


def _cases(suite: TestSuite) -> dict[str, TestCase]:
    cases = {case.name: case for case in suite}
    assert len(cases) == len(list(suite))  # no two cases share a name
    return cases


def test_junit_one_suite_three_cases_per_host(tmp_path: Path) -> None:
    suite = _junit(check_report(), tmp_path / "check.xml")
    assert suite.name == "fleetprof check nightly-variability"
    assert suite.timestamp == "2026-11-25T02:00:00+00:00"
    assert suite.time == pytest.approx(312.5)
    cases = _cases(suite)
    for host in ("edge-01", NASTY, "edge-03", "pi-01"):
        for kind in ("status", "outliers", "regressions"):
            assert f"{host}: {kind}" in cases  # the hostile name came back intact
    assert cases[f"{NASTY}: regressions"].classname == JETSON
    assert cases["pi-01: status"].classname == "rpi4"
    # The missing host (in no hosts[] list) gets its status case only.
    assert [name for name in cases if name.startswith("edge-09")] == ["edge-09: status"]
    assert suite.tests == 4 * 3 + 1
    assert suite.failures == 3


def test_junit_fails_exactly_the_cases_with_confirmed_findings(tmp_path: Path) -> None:
    cases = _cases(_junit(check_report(), tmp_path / "check.xml"))
    failing = {name for name, case in cases.items() if not case.is_passed}
    assert failing == {f"{NASTY}: regressions", "pi-01: status", "edge-09: status"}
    (failure,) = cases[f"{NASTY}: regressions"].result
    assert failure.type == "regression"
    assert failure.message == f"{NASTY}: probe.cpu.ops_per_s fell 20.0% (q 0.0021)"
    assert "probe.cpu.ops_per_s" in (failure.text or "")
    assert cases["pi-01: status"].result[0].type == "failed"
    assert cases["edge-09: status"].result[0].type == "missing"
    assert "not in this run" in cases["edge-09: status"].result[0].message


def test_junit_unconfirmed_findings_go_to_system_out(tmp_path: Path) -> None:
    cases = _cases(_junit(check_report(), tmp_path / "check.xml"))
    outliers = cases["edge-03: outliers"]
    regressions = cases["edge-03: regressions"]
    assert outliers.is_passed and regressions.is_passed
    assert "unconfirmed" in outliers.system_out
    assert "thermal.max_c 79.0" in outliers.system_out
    assert "bandwidth_mb_per_s fell 8.0%" in regressions.system_out
    assert cases["edge-03: status"].system_out is None
    assert cases["edge-01: regressions"].system_out is None


def test_junit_of_a_passing_check_has_no_failures(tmp_path: Path) -> None:
    suite = _junit(passing_report(), tmp_path / "check.xml")
    assert suite.failures == 0 and suite.errors == 0
    assert suite.tests == 12
    assert all(case.is_passed for case in suite)


def test_junit_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "out" / "check.xml"
    _junit(check_report(), path)
    suite = _junit(passing_report(), path)  # overwrites the findings run's file
    assert suite.failures == 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["check.xml"]  # no temp left


def test_junit_survives_characters_xml_cannot_hold(tmp_path: Path) -> None:
    report = check_report()
    bad = "esc\x1b[2J\x00nul"
    report["check"]["hosts"][0]["name"] = bad
    report["check"]["findings"][0]["host"] = bad
    cases = _cases(_junit(report, tmp_path / "check.xml"))
    assert "esc\\x1b[2J\\x00nul: regressions" in cases
    assert not cases["esc\\x1b[2J\\x00nul: regressions"].is_passed


@settings(max_examples=60, deadline=None)
@given(name=st.text(min_size=1, max_size=40))
def test_junit_any_host_name_round_trips(name: str) -> None:
    report = check_report()
    report["check"]["hosts"][1]["name"] = name
    report["check"]["findings"][0]["host"] = name
    with tempfile.TemporaryDirectory() as tmp:
        cases = {case.name: case for case in _junit(report, Path(tmp) / "check.xml")}
    case = cases[xml_text(f"{name}: regressions")]
    assert not case.is_passed


# -- Prometheus ----------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _prometheus(report: dict[str, Any], path: Path) -> Samples:
    write_prometheus(report, path)
    samples: Samples = {}
    # Bytes as written: read_text would turn a \r inside a label value into a line break.
    for family in text_string_to_metric_families(path.read_bytes().decode("utf-8")):
        assert family.type == "gauge"
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples
            samples[key] = sample.value
    return samples


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


C = "nightly-variability"


def test_prometheus_check_gauges(tmp_path: Path) -> None:
    samples = _prometheus(check_report(), tmp_path / "fleetprof.prom")
    assert _names(samples) == {
        "fleetprof_check_passed",
        "fleetprof_check_timestamp_seconds",
        "fleetprof_check_findings",
        "fleetprof_host_ok",
        "fleetprof_metric",
    }
    assert _get(samples, "fleetprof_check_passed", campaign=C) == 0
    started = datetime(2026, 11, 25, 2, 0, tzinfo=UTC).timestamp()
    assert _get(samples, "fleetprof_check_timestamp_seconds", campaign=C) == started


def test_prometheus_findings_have_a_zero_for_every_host_and_kind(tmp_path: Path) -> None:
    samples = _prometheus(check_report(), tmp_path / "fleetprof.prom")
    findings = {
        (labels["host"], labels["kind"]): value
        for (name, label_set), value in samples.items()
        if name == "fleetprof_check_findings"
        for labels in [dict(label_set)]
    }
    hosts = {"edge-01", NASTY, "edge-03", "pi-01", "edge-09"}
    assert set(findings) == {(h, k) for h in hosts for k in KINDS}
    nonzero = {key: value for key, value in findings.items() if value}
    # Confirmed findings only: edge-03's unconfirmed outlier and regression count 0.
    assert nonzero == {(NASTY, "regression"): 1, ("pi-01", "failed"): 1, ("edge-09", "missing"): 1}


def test_prometheus_host_gauges_and_metrics(tmp_path: Path) -> None:
    samples = _prometheus(check_report(), tmp_path / "fleetprof.prom")
    assert _get(samples, "fleetprof_host_ok", campaign=C, host=NASTY, group=JETSON) == 1
    assert _get(samples, "fleetprof_host_ok", campaign=C, host="pi-01", group="rpi4") == 0
    metric = "fleetprof_metric"
    assert _get(samples, metric, campaign=C, host=NASTY, group=JETSON, metric="thermal.max_c") == (
        61.5
    )
    nasty_metrics = {
        dict(labels)["metric"]
        for name, labels in samples
        if name == metric and dict(labels)["host"] == NASTY
    }
    assert nasty_metrics == {"probe.cpu.ops_per_s", "thermal.max_c"}  # NaN, None, bool: none


def test_prometheus_passing_check(tmp_path: Path) -> None:
    samples = _prometheus(passing_report(), tmp_path / "fleetprof.prom")
    assert _get(samples, "fleetprof_check_passed", campaign=C) == 1
    assert not any(v for (n, _), v in samples.items() if n == "fleetprof_check_findings")


def test_prometheus_plain_run_report_has_no_check_gauges(tmp_path: Path) -> None:
    report = check_report()
    for key in ("check", "history", "regressions"):
        del report[key]
    samples = _prometheus(report, tmp_path / "fleetprof.prom")
    assert _names(samples) == {"fleetprof_host_ok", "fleetprof_metric"}
    hosts = {dict(labels)["host"] for name, labels in samples if name == "fleetprof_host_ok"}
    assert hosts == {"edge-01", NASTY, "edge-03", "pi-01"}


def test_prometheus_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "textfile" / "fleetprof.prom"
    _prometheus(check_report(), path)
    samples = _prometheus(passing_report(), path)
    assert _get(samples, "fleetprof_check_passed", campaign=C) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["fleetprof.prom"]


def test_prometheus_survives_unencodable_strings(tmp_path: Path) -> None:
    report = check_report()
    report["hosts"][0]["name"] = "lone\udc80surrogate"
    samples = _prometheus(report, tmp_path / "fleetprof.prom")
    hosts = {dict(labels)["host"] for name, labels in samples if name == "fleetprof_host_ok"}
    assert "lone?surrogate" in hosts


@settings(max_examples=60, deadline=None)
@given(name=st.text(min_size=1, max_size=40), group=st.text(max_size=20))
def test_prometheus_any_label_value_round_trips(name: str, group: str) -> None:
    assume(name not in {"edge-01", "edge-03", "pi-01", "edge-09"})
    report = copy.deepcopy(check_report())
    report["hosts"][1].update(name=name, group=group)
    report["check"]["hosts"][1]["name"] = name
    report["check"]["findings"][0]["host"] = name
    with tempfile.TemporaryDirectory() as tmp:
        samples = _prometheus(report, Path(tmp) / "fleetprof.prom")
    assert _get(samples, "fleetprof_host_ok", campaign=C, host=name, group=group) == 1
    assert _get(samples, "fleetprof_check_findings", campaign=C, host=name, kind="regression") >= 1
