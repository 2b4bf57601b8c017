"""``report.json`` -> the small documents ``--json`` prints (docs/commands.md).

A script that ran ``fleetprof run --json`` wants where the run went and how each host
fared, not the whole report: these documents point at ``report.json`` for the rest. Like
every renderer they only select from the report (and its ``check`` section); they compute
nothing new. Their shapes are a contract: add keys, never rename or drop one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULT_SCHEMA = "fleetprof.result/1"
BASELINE_SCHEMA = "fleetprof.baseline/1"
SCHEDULE_SCHEMA = "fleetprof.schedule/1"

# The run's state as its hosts left it; a check's verdict comes on top, in check{}.
OK, INCOMPLETE, INTERRUPTED = "ok", "incomplete", "interrupted"


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def run_status(report: Mapping[str, Any], interrupted: bool = False) -> str:
    """``ok`` when every host is ok (exit 0 of ``run``), ``incomplete`` otherwise (exit 3),
    ``interrupted`` when the operator stopped the run (exit 130)."""
    if interrupted:
        return INTERRUPTED
    summary = report.get("summary")
    if not isinstance(summary, Mapping):
        return INCOMPLETE
    hosts, ok = summary.get("hosts"), summary.get("ok")
    return OK if isinstance(hosts, int) and hosts > 0 and ok == hosts else INCOMPLETE


def _check_section(report: Mapping[str, Any], notes: Sequence[str]) -> dict[str, Any] | None:
    check = report.get("check")
    if not isinstance(check, Mapping):
        return None
    baseline = _mapping(check.get("baseline"))
    confirm = _mapping(check.get("confirm"))
    return {
        "verdict": check.get("verdict"),
        "exit_code": check.get("exit_code"),
        "baseline": {"run_id": baseline.get("run_id"), "source": baseline.get("source")},
        "confirm_run_id": confirm.get("run_id"),
        "tests": check.get("tests"),
        "findings": [
            {
                "kind": f.get("kind"),
                "host": f.get("host"),
                "metric": f.get("metric"),
                "message": f.get("message"),
            }
            for f in _dicts(check.get("findings"))
        ],
        "unconfirmed": len(_dicts(check.get("unconfirmed"))),
        "notes": list(notes),
    }


def result_document(
    report: Mapping[str, Any],
    run_dir: Path,
    *,
    command: str,
    interrupted: bool = False,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """What ``run``, ``demo``, ``check``, ``collect`` and ``report`` print with ``--json``.
    ``notes``: what the command said on the way (a check's "baseline set: ...")."""
    where = run_dir.resolve()
    summary = report.get("summary")
    return {
        "schema": RESULT_SCHEMA,
        "command": command,
        "campaign": report.get("campaign"),
        "run_id": report.get("run_id"),
        "status": run_status(report, interrupted),
        "run_dir": str(where),
        "report_json": str(where / "report.json"),
        "report_html": str(where / "report.html"),
        "summary_md": str(where / "summary.md"),
        "summary": dict(summary) if isinstance(summary, Mapping) else {},
        "hosts": [
            {
                "name": h.get("name"),
                "hw_model": h.get("hw_model"),
                "status": h.get("status"),
                "reason": h.get("reason"),
            }
            for h in _dicts(report.get("hosts"))
        ],
        "check": _check_section(report, notes),
    }


def baseline_document(campaign: str, run_id: str, run_dir: Path, history: Path) -> dict[str, Any]:
    """What ``baseline set --json`` prints."""
    return {
        "schema": BASELINE_SCHEMA,
        "campaign": campaign,
        "run_id": run_id,
        "run_dir": str(run_dir.resolve()),
        "history": str(history.resolve()),
    }


def schedule_document(
    action: str,
    name: str,
    *,
    paths: Sequence[Path],
    kind: str | None = None,
    at: str | None = None,
    activated: bool | None = None,
    command: Sequence[str] = (),
    hints: Sequence[str] = (),
) -> dict[str, Any]:
    """What ``schedule install --json`` (action ``installed``) and ``schedule remove
    --json`` (``removed``) print."""
    return {
        "schema": SCHEDULE_SCHEMA,
        "action": action,
        "name": name,
        "kind": kind,
        "at": at,
        "activated": activated,
        "command": list(command),
        "paths": [str(p.absolute()) for p in paths],
        "hints": list(hints),
    }
