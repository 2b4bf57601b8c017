"""The nightly check's part of report.html: its verdict and findings, the regressions
table's rows, and which hosts each metric flagged (the trend charts bring them forward).
Every value from report.json is read as untrusted; the template escapes the text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.report.formats import (
    REGRESSION_KEYS,
    confirmed_text,
    fingerprint_text,
    fmt_count,
    fmt_num,
    fmt_sci,
    fmt_signed,
    stability_text,
    text_or_none,
)
from orchestrator.values import dicts as _dicts
from orchestrator.values import mapping as _mapping


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def group_name(item: Mapping[str, Any]) -> str:
    """A host's, group's or outlier's group: ``group`` where set, else its hw_model."""
    value = item.get("group")
    if value is None:
        value = item.get("hw_model")
    return str(value) if value is not None else "unknown"


def _finding_view(finding: Mapping[str, Any]) -> dict[str, str]:
    return {
        key: "" if finding.get(key) is None else str(finding.get(key))
        for key in ("kind", "host", "metric", "message")
    }


def check_view(check: Any) -> dict[str, Any] | None:
    """The nightly check's verdict, settings and findings (docs/check.md), or None when
    the report has no check."""
    if not isinstance(check, Mapping):
        return None
    baseline = _mapping(check.get("baseline"))
    confirm = _mapping(check.get("confirm"))
    findings = [_finding_view(f) for f in _dicts(check.get("findings"))]
    verdict = str(check.get("verdict") or "unknown")
    return {
        "verdict": verdict,
        "exit_code": check.get("exit_code"),
        "baseline": {
            "run_id": text_or_none(baseline.get("run_id")),
            "source": text_or_none(baseline.get("source")) or "none",
            "path": text_or_none(baseline.get("path")),
        },
        "alpha": check.get("alpha"),
        "regression_pct": check.get("regression_pct"),
        "tests": check.get("tests"),
        "confirm": {
            "enabled": confirm.get("enabled") is True,
            "run_id": text_or_none(confirm.get("run_id")),
            "hosts": [str(h) for h in _list(confirm.get("hosts"))],
        },
        "findings": findings,
        "unconfirmed": [_finding_view(f) for f in _dicts(check.get("unconfirmed"))],
        "judged": len(_dicts(check.get("hosts"))),
    }


def regression_view(row: Mapping[str, Any]) -> dict[str, Any]:
    confirm = _mapping(row.get("confirm"))
    confirmed = row.get("confirmed")
    details = [
        None if row.get("test") is None else str(row["test"]),
        f"p = {fmt_sci(row.get('p_value'))}" if row.get("p_value") is not None else None,
        (
            f"n = {fmt_count(row.get('n'))} (baseline {fmt_count(row.get('baseline_n'))})"
            if row.get("n") is not None or row.get("baseline_n") is not None
            else None
        ),
        None if row.get("baseline_run") is None else f"baseline run {row['baseline_run']}",
        None if row.get("direction") is None else str(row["direction"]).replace("_", " "),
    ]
    remeasure = [
        None if confirm.get("run_id") is None else f"re-measure {confirm['run_id']}",
        f"value {fmt_num(confirm.get('value'), 2)}" if "value" in confirm else None,
        f"change {fmt_signed(confirm.get('change_pct'), 1)} %" if "change_pct" in confirm else None,
        f"p = {fmt_sci(confirm.get('p_value'))}" if "p_value" in confirm else None,
    ]
    return {
        "host": str(row.get("host", "?")),
        "group": group_name(row),
        "metric": "" if row.get("metric") is None else str(row.get("metric")),
        "baseline": row.get("baseline"),
        "value": row.get("value"),
        "change_pct": row.get("change_pct"),
        "q_value": row.get("q_value"),
        "details": ", ".join(d for d in details if d),
        "confirmed": confirmed_text(confirmed),
        "confirmed_class": {True: "conf-yes", False: "conf-no"}.get(confirmed, "")
        if isinstance(confirmed, bool)
        else "",
        "remeasure": ", ".join(r for r in remeasure if r),
        "stability": stability_text(row.get("stability")),
        "fingerprint": [fingerprint_text(f) for f in _dicts(row.get("fingerprint"))],
        "extra": {str(k): v for k, v in row.items() if str(k) not in REGRESSION_KEYS},
    }


def flagged_by_metric(report: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per metric, the hosts flagged on it (regressions and check findings, confirmed or
    not): the trend charts bring them forward."""
    flagged: dict[str, list[str]] = {}
    check = _mapping(report.get("check"))
    rows = [
        *_dicts(report.get("regressions")),
        *_dicts(check.get("findings")),
        *_dicts(check.get("unconfirmed")),
    ]
    for row in rows:
        metric, host = row.get("metric"), row.get("host")
        if metric is not None and host is not None:
            hosts = flagged.setdefault(str(metric), [])
            if str(host) not in hosts:
                hosts.append(str(host))
    return flagged
