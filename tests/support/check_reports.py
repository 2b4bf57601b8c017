"""Nightly-check result documents (check.json) with findings of every kind, for the renderers."""

from __future__ import annotations

from typing import Any

NASTY = 'edge "02" \\ <script>alert(1)</script>\n| x'


BASELINE_RUN = "20261124-020000-aa11"


def check_report() -> dict[str, Any]:
    """A nightly check with findings of every kind, shaped as docs/check.md says: NASTY
    regressed (confirmed), pi-01 failed, edge-09 went missing (it is in no hosts[] list),
    edge-03 was flagged twice but the re-measure did not reproduce it."""
    hosts = [
        _host("edge-01", JETSON, {"probe.cpu.ops_per_s": 1000.0, "thermal.max_c": 55.0}),
        _host(
            NASTY,
            JETSON,
            {
                "probe.cpu.ops_per_s": 800.0,
                "thermal.max_c": 61.5,
                "probe.cpu.ops_cv": float("nan"),  # not finite: no gauge
                "probe.broken": None,
                "probe.flag": True,
            },
        ),
        _host("edge-03", JETSON, {"probe.cpu.ops_per_s": 990.0, "thermal.max_c": 79.0}),
        _host("pi-01", "rpi4", {}, status="failed", reason="no target <img src=x>"),
    ]
    regressions = [
        {
            "host": NASTY,
            "group": JETSON,
            "metric": "probe.cpu.ops_per_s",
            "baseline": 1000.0,
            "value": 800.0,
            "change_pct": -20.0,
            "direction": "higher_is_better",
            "test": "welch-t",
            "p_value": 0.0004,
            "q_value": 0.0021,
            "n": 5,
            "baseline_n": 5,
            "baseline_run": BASELINE_RUN,
            "confirmed": True,
            "confirm": {
                "run_id": CONFIRM_RUN,
                "value": 805.0,
                "change_pct": -19.5,
                "p_value": 0.001,
            },
            "fingerprint": [
                {"key": "kernel", "value": "5.10.120-tegra", "peers": ["5.15.136-tegra"]},
                {"key": "governor", "value": "<b>powersave</b>", "peers": {"performance": 2}},
            ],
            "stability": {"flagged": 3, "checks": 5},
        },
        {
            "host": "edge-03",
            "group": JETSON,
            "metric": "probe.mem.bandwidth_mb_per_s",
            "baseline": 5000.0,
            "value": 4600.0,
            "change_pct": -8.0,
            "direction": "higher_is_better",
            "test": "welch-t",
            "p_value": 0.01,
            "q_value": 0.04,
            "n": 5,
            "baseline_n": 5,
            "baseline_run": BASELINE_RUN,
            "confirmed": False,
            "confirm": {
                "run_id": CONFIRM_RUN,
                "value": 4990.0,
                "change_pct": -0.2,
                "p_value": 0.61,
            },
            "fingerprint": [],
            "stability": {"flagged": 1, "checks": 5},
        },
    ]
    check = {
        "verdict": "findings",
        "exit_code": 1,
        "baseline": {
            "run_id": BASELINE_RUN,
            "source": "pinned",
            "path": f"/srv/reports/nightly/{BASELINE_RUN}",
        },
        "alpha": 0.05,
        "regression_pct": 5.0,
        "tests": 12,
        "confirm": {"enabled": True, "run_id": CONFIRM_RUN, "hosts": [NASTY, "edge-03"]},
        "findings": [
            {
                "kind": "regression",
                "host": NASTY,
                "metric": "probe.cpu.ops_per_s",
                "message": f"{NASTY}: probe.cpu.ops_per_s fell 20.0% (q 0.0021)",
                "confirmed": True,
            },
            {
                "kind": "failed",
                "host": "pi-01",
                "metric": None,
                "message": "pi-01 failed: no target <img src=x>",
                "confirmed": True,
            },
            {
                "kind": "missing",
                "host": "edge-09",
                "metric": None,
                "message": "edge-09 was in the baseline, not in this run",
                "confirmed": True,
            },
        ],
        "unconfirmed": [
            {
                "kind": "outlier",
                "host": "edge-03",
                "metric": "thermal.max_c",
                "message": "edge-03 thermal.max_c 79.0 against its group's 55.0",
                "confirmed": False,
            },
            {
                "kind": "regression",
                "host": "edge-03",
                "metric": "probe.mem.bandwidth_mb_per_s",
                "message": "edge-03 probe.mem.bandwidth_mb_per_s fell 8.0%",
                "confirmed": False,
            },
        ],
        "hosts": [
            {"name": h["name"], "hw_model": h["hw_model"], "status": h["status"], "findings": n}
            for h, n in zip(hosts, (0, 1, 0, 1), strict=True)
        ],
    }
    history = {
        "runs": [
            {"run_id": "20261123-020000-9f9f", "started_at": "2026-11-23T02:00:00+00:00"},
            {"run_id": BASELINE_RUN, "started_at": "2026-11-24T02:00:00+00:00"},
            {"run_id": "20261125-020000-ab12", "started_at": "2026-11-25T02:00:00+00:00"},
        ],
        "series": {
            "probe.cpu.ops_per_s": {
                "edge-01": [1001.0, 1000.0, 1000.0],
                NASTY: [1002.0, 1000.0, 800.0],
                "edge-03": [None, 991.0, 990.0],
            },
            "thermal.max_c": {"edge-01": [54.0, 55.5, 55.0], NASTY: [60.0, 61.0, 61.5]},
        },
    }
    return {
        "schema": "fleetprof.report/1",
        "campaign": "nightly-variability",
        "run_id": "20261125-020000-ab12",
        "started_at": "2026-11-25T02:00:00+00:00",
        "duration_s": 312.5,
        "mode": "probe",
        "summary": {"hosts": 4, "ok": 3, "partial": 0, "failed": 1, "unreachable": 0, "skipped": 0},
        "compare": {"group_by": "hw_model", "threshold": 3.5},
        "hosts": hosts,
        "groups": [],
        "outliers": [],
        "regressions": regressions,
        "check": check,
        "history": history,
    }


def passing_report() -> dict[str, Any]:
    report = check_report()
    report["regressions"] = []
    report["check"].update(verdict="pass", exit_code=0, findings=[], unconfirmed=[])
    for host in report["check"]["hosts"]:
        host["findings"] = 0
    return report


JETSON = "jetson-orin-nx"


CONFIRM_RUN = "20261125-021500-c1c1"


def _host(
    name: str, group: str, metrics: dict[str, Any], status: str = "ok", reason: str | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "hw_model": group,
        "group": group,
        "arch": "aarch64",
        "status": status,
        "reason": reason,
        "start_offset_ms": 1.0,
        "profilers": {"probe": {"status": status, "reason": reason}},
        "metrics": metrics,
        "top_functions": [],
        "data_quality": [],
    }
