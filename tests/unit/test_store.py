"""The run history store: what a recorded run gives back, baselines, time order, the
series and trends the check and ``fleetprof history`` read, concurrent writers, and
schema versions."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.check import store
from orchestrator.check.store import HistoryStore, RunRecord, SeriesPoint, StoreError


def report(
    run_id: str,
    started_at: str,
    *,
    campaign: str = "nightly",
    hosts: dict[str, dict[str, Any]] | None = None,
    check: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A report.json-shaped dict; ``hosts`` maps a name to its metrics."""
    hosts = {"edge-1": {"probe.cpu_ms": 10.0}} if hosts is None else hosts
    data: dict[str, Any] = {
        "schema": "fleetprof.report/1",
        "campaign": campaign,
        "run_id": run_id,
        "started_at": started_at,
        "summary": {"hosts": len(hosts), "ok": len(hosts)},
        "hosts": [
            {
                "name": name,
                "hw_model": "orin",
                "group": "orin",
                "status": "ok",
                "reason": None,
                "metrics": metrics,
            }
            for name, metrics in hosts.items()
        ],
    }
    if check is not None:
        data["check"] = check
    return data


def at(minute: int) -> str:
    return f"2025-03-01T02:{minute:02d}:00+00:00"


@pytest.fixture
def history(tmp_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore.open(tmp_path / "out") as opened:
        yield opened


def record(history: HistoryStore, data: dict[str, Any], kind: str = "run") -> None:
    run_dir = history.path.parent / data["campaign"] / data["run_id"]
    history.record_run(data, run_dir, kind)


def test_open_creates_the_output_root_and_a_wal_store(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"
    with HistoryStore.open(out) as opened:
        assert opened.path == out / "history.sqlite"
    conn = sqlite3.connect(out / "history.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store.MIGRATIONS)
    conn.close()


def test_a_recorded_run_comes_back(history: HistoryStore) -> None:
    data = report("r1", at(0), hosts={"edge-1": {"probe.cpu_ms": 12.5, "pyspy.samples": 300}})
    data["hosts"][0]["samples"] = {"probe.cpu_ms": [12.0, 12.5, 13.0]}
    data["hosts"].append(
        {
            "name": "edge-2",
            "hw_model": "pi4",
            "group": "pi",
            "status": "unreachable",
            "reason": "ssh timed out",
            "metrics": {},
        }
    )
    data["summary"] = {"hosts": 2, "ok": 1}
    record(history, data, "check")

    assert history.get_run("r1") == RunRecord(
        run_id="r1",
        campaign="nightly",
        started_at=at(0),
        path=history.path.parent / "nightly" / "r1",
        kind="check",
        hosts_total=2,
        hosts_ok=1,
        verdict=None,
    )
    assert history.host_metrics("r1", "edge-1") == {"probe.cpu_ms": 12.5, "pyspy.samples": 300.0}
    assert history.samples("r1", "edge-1", "probe.cpu_ms") == [12.0, 12.5, 13.0]
    assert history.host_statuses("r1") == {"edge-1": "ok", "edge-2": "unreachable"}
    assert history.get_run("nope") is None


def test_a_run_directory_outside_the_output_root_is_kept_absolute(
    history: HistoryStore, tmp_path: Path
) -> None:
    history.record_run(report("r1", at(0)), tmp_path / "elsewhere" / "r1")
    run = history.get_run("r1")
    assert run is not None and run.path == (tmp_path / "elsewhere" / "r1").resolve()


def test_started_at_is_kept_in_utc(history: HistoryStore) -> None:
    record(history, report("r1", "2025-03-01T04:00:00+02:00"))
    run = history.get_run("r1")
    assert run is not None and run.started_at == "2025-03-01T02:00:00+00:00"


def test_untrusted_values_are_bounded_or_skipped(history: HistoryStore) -> None:
    data = report(
        "r1",
        at(0),
        hosts={
            "edge-1": {
                "ok": 1.5,
                "nan": float("nan"),
                "inf": float("inf"),
                "text": "12",
                "flag": True,
                "huge": 10**400,
            }
        },
    )
    data["hosts"][0]["reason"] = "x" * 5000
    data["hosts"][0]["samples"] = {"ok": [1.0, float("nan"), "2", 3.0], "bad": "not a list"}
    data["hosts"].append("not a host")
    record(history, data)

    assert history.host_metrics("r1", "edge-1") == {"ok": 1.5}
    assert history.samples("r1", "edge-1", "ok") == [1.0, 3.0]
    conn = sqlite3.connect(history.path)
    (reason,) = conn.execute("SELECT reason FROM hosts").fetchone()
    conn.close()
    assert len(reason) == store.MAX_TEXT


def test_recording_a_run_again_replaces_it(history: HistoryStore) -> None:
    record(history, report("r1", at(0), hosts={"edge-1": {"a": 1.0}, "edge-2": {"a": 2.0}}))
    record(history, report("r2", at(5)))
    record(history, report("r1", at(0), hosts={"edge-1": {"b": 3.0}}), "check")

    run = history.get_run("r1")
    assert run is not None and (run.kind, run.hosts_total) == ("check", 1)
    assert history.host_metrics("r1", "edge-1") == {"b": 3.0}
    assert history.host_statuses("r1") == {"edge-1": "ok"}
    assert [r.run_id for r in history.runs("nightly")] == ["r1", "r2"]


def test_a_report_without_identity_or_time_is_refused(history: HistoryStore) -> None:
    with pytest.raises(StoreError, match="run_id"):
        history.record_run({**report("r1", at(0)), "run_id": None}, history.path.parent)
    with pytest.raises(StoreError, match="started_at"):
        record(history, report("r1", "yesterday"))
    with pytest.raises(ValueError, match="kind"):
        record(history, report("r1", at(0)), "nightly")
    assert history.get_run("r1") is None


def test_baseline_set_and_get(history: HistoryStore) -> None:
    assert history.baseline("nightly") is None
    record(history, report("r1", at(0)))
    record(history, report("r2", at(5)))
    history.set_baseline("nightly", "r1")
    history.set_baseline("nightly", "r2")
    baseline = history.baseline("nightly")
    assert baseline is not None and baseline.run_id == "r2"
    assert history.baseline("other") is None


def test_baseline_must_be_a_recorded_run_of_the_campaign(history: HistoryStore) -> None:
    record(history, report("r1", at(0), campaign="demo"))
    with pytest.raises(StoreError, match="'r9' is not recorded"):
        history.set_baseline("nightly", "r9")
    with pytest.raises(StoreError, match="belongs to campaign 'demo'"):
        history.set_baseline("nightly", "r1")
    assert history.baseline("nightly") is None


def test_last_run_is_the_latest_before_the_given_run(history: HistoryStore) -> None:
    # Recorded out of order; confirm runs and other campaigns never count.
    record(history, report("r3", at(30)), "check")
    record(history, report("r1", at(10)))
    record(history, report("r2", at(20)), "check")
    record(history, report("c2", at(21)), "confirm")
    record(history, report("x", at(25), campaign="demo"))

    def last(**kwargs: Any) -> str | None:
        run = history.last_run("nightly", **kwargs)
        return run.run_id if run else None

    assert last() == "r3"
    assert last(before_run_id="r3") == "r2"
    assert last(before_run_id="r2") == "r1"
    assert last(before_run_id="r1") is None
    assert last(before_run_id="not-recorded") == "r3"
    assert last(kinds=("run",)) == "r1"
    assert last(kinds=("confirm",)) == "c2"
    assert history.last_run("missing") is None


def test_runs_inside_one_second_keep_their_recording_order(history: HistoryStore) -> None:
    for run_id in ("b", "a", "c"):
        record(history, report(run_id, at(0)))
    assert [r.run_id for r in history.runs("nightly")] == ["b", "a", "c"]
    run = history.last_run("nightly", before_run_id="c")
    assert run is not None and run.run_id == "a"


def test_runs_lists_the_last_ones_oldest_first(history: HistoryStore) -> None:
    for minute in range(6):
        record(history, report(f"r{minute}", at(minute)), "check" if minute % 2 else "run")
    record(history, report("d", at(59), campaign="demo"))

    assert [r.run_id for r in history.runs("nightly", limit=3)] == ["r3", "r4", "r5"]
    assert [r.run_id for r in history.runs(limit=2)] == ["r5", "d"]
    assert [r.run_id for r in history.runs("nightly", kinds=("check",))] == ["r1", "r3", "r5"]
    assert history.runs("nightly", limit=0) == []


def test_series_filters_and_window(history: HistoryStore) -> None:
    for minute in range(4):
        hosts = {"edge-1": {"a": float(minute), "b": 1.0}, "edge-2": {"a": 10.0 + minute}}
        record(history, report(f"r{minute}", at(minute), hosts=hosts))
    record(history, report("d1", at(9), campaign="demo", hosts={"edge-1": {"a": 99.0}}))
    record(history, report("c1", at(10), hosts={"edge-1": {"a": 50.0}}), "confirm")

    points = history.series(campaign="nightly", host="edge-1", metric="a", limit_runs=3)
    assert points == [
        SeriesPoint(f"r{m}", at(m), "nightly", "edge-1", "a", float(m)) for m in (1, 2, 3)
    ]
    everything = history.series()
    assert {(p.campaign, p.host, p.metric) for p in everything} == {
        ("nightly", "edge-1", "a"),
        ("nightly", "edge-1", "b"),
        ("nightly", "edge-2", "a"),
        ("demo", "edge-1", "a"),
    }
    assert "c1" not in {p.run_id for p in everything}
    # The window is per campaign: demo's one run does not push nightly's runs out.
    assert {p.run_id for p in history.series(metric="a", limit_runs=1)} == {"r3", "d1"}
    assert history.series(host="nobody") == []


def finding(
    host: str, metric: str | None, kind: str = "regression", **extra: Any
) -> dict[str, Any]:
    return {"kind": kind, "host": host, "metric": metric, "message": "m", **extra}


def check_report(
    run_id: str, minute: int, findings: list[dict[str, Any]], unconfirmed: list[dict[str, Any]]
) -> dict[str, Any]:
    verdict = "findings" if findings else "pass"
    check = {"verdict": verdict, "findings": findings, "unconfirmed": unconfirmed}
    return report(run_id, at(minute), check=check)


def test_flag_counts_over_the_last_checks(history: HistoryStore) -> None:
    record(history, check_report("k1", 1, [finding("edge-1", "cpu", confirmed=True)], []), "check")
    record(history, report("plain", at(2), check={"findings": [finding("edge-9", "cpu")]}))
    record(
        history,
        check_report(
            "k2",
            3,
            [finding("edge-1", "cpu", confirmed=True), finding("edge-2", None, "missing")],
            [finding("edge-1", "cpu", confirmed=False)],
        ),
        "check",
    )
    record(history, check_report("k3", 4, [], [finding("edge-3", "mem")]), "check")

    assert history.flag_counts("nightly", checks=10) == (
        3,
        {("edge-1", "cpu"): 2, ("edge-2", "missing"): 1, ("edge-3", "mem"): 1},
    )
    assert history.flag_counts("nightly", checks=2) == (
        2,
        {("edge-1", "cpu"): 1, ("edge-2", "missing"): 1, ("edge-3", "mem"): 1},
    )
    assert history.flag_counts("nightly", checks=10, before_run_id="k2") == (
        2,
        {("edge-1", "cpu"): 2, ("edge-2", "missing"): 1},
    )
    assert history.flag_counts("nightly", checks=0) == (0, {})
    assert history.flag_counts("demo", checks=5) == (0, {})


def test_findings_keep_their_confirmed_flag(history: HistoryStore) -> None:
    findings = [finding("e1", "a", confirmed=True), finding("e2", "a", confirmed=None)]
    unconfirmed = [finding("e3", "a", confirmed=False), finding("e4", "a")]
    data = check_report("k1", 0, findings, unconfirmed)
    data["check"]["findings"].append({"kind": "outlier", "message": "no host"})
    record(history, data, "check")

    run = history.get_run("k1")
    assert run is not None and run.verdict == "findings"
    conn = sqlite3.connect(history.path)
    rows = conn.execute("SELECT host, confirmed FROM findings ORDER BY host").fetchall()
    conn.close()
    assert rows == [("e1", 1), ("e2", None), ("e3", 0), ("e4", 0)]


def test_trend_aligns_every_host_on_the_runs(history: HistoryStore) -> None:
    record(history, report("r0", at(0), hosts={"edge-1": {"a": 1.0}}))
    record(history, report("r1", at(1), hosts={"edge-1": {"a": 2.0}, "edge-2": {"a": 5.0}}))
    record(history, report("c1", at(2), hosts={"edge-1": {"a": 9.0}}), "confirm")
    record(history, report("r2", at(3), hosts={"edge-1": {"b": 7.0}}), "check")

    assert history.trend("nightly", ["a", "b", "never"]) == {
        "runs": [{"run_id": f"r{i}", "started_at": at(m)} for i, m in enumerate((0, 1, 3))],
        "series": {
            "a": {"edge-1": [1.0, 2.0, None], "edge-2": [None, 5.0, None]},
            "b": {"edge-1": [None, None, 7.0]},
        },
    }
    assert history.trend("nightly", ["a"], limit_runs=1) == {
        "runs": [{"run_id": "r2", "started_at": at(3)}],
        "series": {},
    }
    assert history.trend("empty", ["a"]) == {"runs": [], "series": {}}


def _write_runs(out: str, worker: int, count: int, barrier: Any) -> None:
    barrier.wait()
    with HistoryStore.open(Path(out)) as opened:
        for i in range(count):
            data = report(f"w{worker}-{i}", at(i), hosts={f"edge-{worker}": {"a": float(i)}})
            opened.record_run(data, Path(out) / "nightly" / data["run_id"], "run")


def test_concurrent_writers_all_succeed(tmp_path: Path) -> None:
    # Fresh store: the workers also race to create and migrate it.
    workers, count = 4, 20
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)
    processes = [
        context.Process(target=_write_runs, args=(str(tmp_path), w, count, barrier))
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * workers

    with HistoryStore.open(tmp_path) as opened:
        assert len(opened.runs(limit=1000)) == workers * count
        assert len(opened.series(limit_runs=1000)) == workers * count


def test_an_older_schema_is_migrated_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HistoryStore.open(tmp_path) as opened:
        record(opened, report("r1", at(0)))
    # The code now knows one more step than the store on disk was built with.
    current = len(store.MIGRATIONS)
    step = ("ALTER TABLE runs ADD COLUMN note TEXT", "UPDATE runs SET note = 'migrated'")
    monkeypatch.setattr(store, "MIGRATIONS", [*store.MIGRATIONS, step])

    with HistoryStore.open(tmp_path) as opened:
        assert opened.get_run("r1") is not None
    conn = sqlite3.connect(tmp_path / "history.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == current + 1
    assert conn.execute("SELECT note FROM runs").fetchall() == [("migrated",)]
    conn.close()
    # Opening again applies nothing twice.
    HistoryStore.open(tmp_path).close()


def test_a_store_built_by_the_first_step_opens(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "history.sqlite")
    for statement in store.MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with HistoryStore.open(tmp_path) as opened:
        record(opened, report("r1", at(0)))
        assert opened.get_run("r1") is not None


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "history.sqlite")
    conn.execute(f"PRAGMA user_version = {len(store.MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer fleetprof") as caught:
        HistoryStore.open(tmp_path)
    assert str(tmp_path / "history.sqlite") in str(caught.value)


def test_a_corrupt_file_is_a_store_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"this is not sqlite\x00\xff" * 200)
    with pytest.raises(StoreError) as caught:
        HistoryStore.open(tmp_path)
    assert str(path) in str(caught.value)
    assert "not a usable history store" in str(caught.value)


def test_an_unwritable_output_root_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    with pytest.raises(StoreError, match="cannot open"):
        HistoryStore.open(blocker / "out")
