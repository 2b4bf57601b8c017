"""``report.json`` -> JUnit XML (``fleetprof check --junit FILE``), for CI test reports.

One ``<testsuite>`` named ``fleetprof check <campaign>``; per host judged three test
cases, ``<host>: status``, ``<host>: outliers`` and ``<host>: regressions``, classname
the host's group (see docs/check.md). A case fails when the check has a confirmed
finding of its kind for the host: ``failed``/``missing``/``incomplete`` on status,
``outlier`` on outliers, ``regression`` on regressions (a kind this module does not know
fails the status case, so no finding is lost). Unconfirmed findings go to the case's
system-out. A host with a finding but not in ``check.hosts[]`` (a missing host) gets a
status case. A host whose window was incomplete was not judged: its outliers and
regressions cases are ``<skipped>`` with the reason.

The file is valid against the Jenkins xunit-plugin schema ``junit-10.xsd`` (the
strictest common reader: ``<testsuites>`` carries no ``skipped``, times are plain
decimals) and reads in junit2html; tests/unit/test_junit_schema.py checks both.

Host names, messages and the rest come from devices: XML escaping is ElementTree's (via
junitparser); characters XML 1.0 cannot hold at all (control characters, lone
surrogates) are written as ``\\xNN`` escapes so the file always parses. Nothing here
judges anything: every failure is a finding the report already holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from junitparser import Failure, JUnitXml, Skipped, TestCase, TestSuite

from orchestrator.atomic import replacing_bytes
from orchestrator.values import dicts as _dicts
from orchestrator.values import mapping as _mapping
from orchestrator.values import number as _number

# The three cases per host and the finding kinds that fail each.
CASES: tuple[tuple[str, frozenset[str]], ...] = (
    ("status", frozenset({"failed", "missing", "incomplete"})),
    ("outliers", frozenset({"outlier"})),
    ("regressions", frozenset({"regression"})),
)
NO_HOST = "(no host)"  # a finding that names no host (none should) still shows up

# Not allowed anywhere in an XML 1.0 document, escaped or not.
_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: Any) -> str:
    """A string XML 1.0 can hold: illegal characters as visible ``\\xNN`` escapes."""
    text = "" if value is None else str(value)
    return _XML_ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _host_name(value: Any) -> str:
    return NO_HOST if value is None else str(value)


def _case_of(kind: Any) -> str:
    for case, kinds in CASES:
        if kind in kinds:
            return case
    return "status"


def _describe(finding: Mapping[str, Any]) -> str:
    """A finding's message, or (without one) its kind and metric."""
    message = finding.get("message")
    if message is not None and str(message):
        return str(message)
    parts = [str(finding[k]) for k in ("kind", "metric") if finding.get(k) is not None]
    return " ".join(parts) or "finding"


def _line(finding: Mapping[str, Any]) -> str:
    kind = finding.get("kind") or "finding"
    metric = finding.get("metric")
    where = f"{kind} {metric}" if metric is not None else str(kind)
    return f"{where}: {_describe(finding)}"


def _classnames(report: Mapping[str, Any], check: Mapping[str, Any]) -> dict[str, str]:
    """Each host's group (its ``group``, else its ``hw_model``), from check.hosts[] or,
    where that lacks it, the report's hosts[]."""
    judged = {_host_name(h.get("name")): h for h in reversed(_dicts(check.get("hosts")))}
    ran = {_host_name(h.get("name")): h for h in reversed(_dicts(report.get("hosts")))}
    found: dict[str, str] = {}
    for name in {**ran, **judged}:
        a, b = judged.get(name, {}), ran.get(name, {})
        value = next(
            (
                v
                for v in (a.get("group"), b.get("group"), a.get("hw_model"), b.get("hw_model"))
                if v is not None
            ),
            "unknown",
        )
        found[name] = str(value)
    return found


Grouped = dict[tuple[str, str], list[Mapping[str, Any]]]


def _by_case(findings: list[Mapping[str, Any]]) -> Grouped:
    """Findings by (host, the case they belong to)."""
    grouped: Grouped = {}
    for finding in findings:
        key = (_host_name(finding.get("host")), _case_of(finding.get("kind")))
        grouped.setdefault(key, []).append(finding)
    return grouped


def junit_suite(report: Mapping[str, Any]) -> TestSuite:
    """The check's results as one junitparser test suite (see the module's docstring).

    Without ``check{}`` the cases are the report's hosts, none failing: there is nothing
    judged to fail on."""
    check = _mapping(report.get("check"))
    findings = _by_case(_dicts(check.get("findings")))
    unconfirmed = _by_case(_dicts(check.get("unconfirmed")))
    judged = check.get("hosts") if "hosts" in check else report.get("hosts")
    hosts = dict.fromkeys(_host_name(h.get("name")) for h in _dicts(judged))
    # Hosts the check did not list (missing from the run), in the findings' order.
    extra = dict.fromkeys(h for h, _ in (*findings, *unconfirmed) if h not in hosts)
    classnames = _classnames(report, check)
    not_judged = _incomplete_hosts(report, check)

    suite = TestSuite(xml_text(f"fleetprof check {report.get('campaign') or '?'}"))
    for key, value in (
        ("run_id", report.get("run_id")),
        ("verdict", check.get("verdict")),
        ("baseline", _mapping(check.get("baseline")).get("run_id")),
    ):
        if value is not None:
            suite.add_property(key, xml_text(value))
    cases: list[TestCase] = []
    for name in hosts:
        cases += _host_cases(
            name, classnames.get(name, "unknown"), findings, unconfirmed, not_judged.get(name)
        )
    for name in extra:
        # Its status case, and any other case that has something to say.
        status, *rest = _host_cases(name, classnames.get(name, "unknown"), findings, unconfirmed)
        cases += [status, *(c for c in rest if c.result or c.system_out is not None)]
    suite.add_testcases(cases)
    started = report.get("started_at")
    if started is not None:
        suite.timestamp = xml_text(started)
    return suite


def _incomplete_hosts(report: Mapping[str, Any], check: Mapping[str, Any]) -> dict[str, str]:
    """Hosts whose window was incomplete (``incomplete`` in check.hosts[] or hosts[])."""
    found: dict[str, str] = {}
    for entry in (*_dicts(report.get("hosts")), *_dicts(check.get("hosts"))):
        reason = entry.get("incomplete")
        if reason not in (None, False):
            found[_host_name(entry.get("name"))] = str(reason)
    return found


def _seconds(value: Any) -> str:
    """A duration as junit-10.xsd's SUREFIRE_TIME wants it: a plain decimal, no exponent."""
    number = _number(value)
    return f"{max(number, 0.0):.3f}" if number is not None else "0.000"


def _host_cases(
    host: str,
    classname: str,
    findings: Grouped,
    unconfirmed: Grouped,
    incomplete: str | None = None,
) -> list[TestCase]:
    """The host's three cases (status, outliers, regressions), in that order; with
    ``incomplete`` (its window's reason) the outliers and regressions were not judged."""
    cases = []
    for case_name, _ in CASES:
        case = TestCase(xml_text(f"{host}: {case_name}"), xml_text(classname))
        mine = findings.get((host, case_name), [])
        if incomplete is not None and case_name != "status":
            case.result = [Skipped(xml_text(f"not judged: incomplete window ({incomplete})"))]
        elif mine:
            kinds = dict.fromkeys(str(f.get("kind") or "finding") for f in mine)
            failure = Failure(xml_text("; ".join(_describe(f) for f in mine)), ",".join(kinds))
            failure.text = xml_text("\n".join(_line(f) for f in mine))
            case.result = [failure]
        maybe = unconfirmed.get((host, case_name), [])
        if maybe:
            case.system_out = xml_text(
                "\n".join(f"unconfirmed (not reproduced) {_line(f)}" for f in maybe)
            )
        cases.append(case)
    return cases


def write_junit(report: Mapping[str, Any], path: Path) -> None:
    """Write the check's JUnit XML to ``path`` atomically (a reader never sees half)."""
    suite = junit_suite(report)
    document = JUnitXml()
    document.add_testsuite(suite)
    # JUnitXml.update_statistics would recount the suite's time from its cases (which
    # have none): the totals are copied instead, keeping the run's duration, written as
    # junit-10.xsd wants (a plain decimal time; no ``skipped`` on <testsuites>, where
    # the suite keeps its count). junitparser writes floats with str() (1e-05), hence
    # the element's own attributes.
    seconds = _seconds(report.get("duration_s"))
    suite._elem.set("time", seconds)
    document._elem.set("time", seconds)
    for key in ("tests", "failures", "errors"):
        document._elem.set(key, str(getattr(suite, key)))
    with replacing_bytes(path) as handle:
        document.write(handle)
