"""The run history: every recorded run's hosts, metrics, repetitions and check findings
in one SQLite file per output root (``<out_root>/history.sqlite``, see docs/check.md).

Several commands may write at once (a nightly check while someone runs a campaign by
hand): the file is in WAL mode, every connection waits up to 30 s for a lock, and every
write is one ``BEGIN IMMEDIATE`` transaction, so a writer takes the write lock before it
reads anything and never has to upgrade a read lock (which SQLite refuses without
waiting). The schema version is ``PRAGMA user_version``; opening migrates it forward.

Everything stored comes from a report.json whose strings came from devices: strings are
stored as bounded text and numbers only when they are finite.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from orchestrator.check.rows import (
    count,
    finding_rows,
    host_rows,
    metric_rows,
    sample_rows,
    text,
    utc_iso,
)
from orchestrator.check.schema import BUSY_TIMEOUT_S, FILENAME, configure, migrate, rollback
from orchestrator.check.schema import MAX_TEXT as MAX_TEXT
from orchestrator.check.schema import MIGRATIONS as MIGRATIONS
from orchestrator.check.schema import StoreError as StoreError
from orchestrator.values import dicts as _dicts
from orchestrator.values import mapping as _mapping

RUN_KINDS = ("run", "check", "confirm")
# What trends and last-run lookups consider: a confirm run re-measures flagged hosts only.
MEASURED_KINDS = ("run", "check")


_RUN_COLUMNS = "run_id, campaign, started_at, path, kind, hosts_total, hosts_ok, verdict"
_HOST_COLUMNS = ("run_id", "host", "hw_model", "grp", "status", "reason", "incomplete")
_METRIC_COLUMNS = ("run_id", "host", "metric", "value")
_SAMPLE_COLUMNS = ("run_id", "host", "metric", "seq", "value")
_FINDING_COLUMNS = ("run_id", "host", "kind", "metric", "confirmed", "message")
# Runs ordered in time; seq (the order of first recording) breaks ties inside a second.
_POSITION = "(started_at < ? OR (started_at = ? AND seq {op} ?))"


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    campaign: str
    started_at: str  # ISO 8601, UTC
    path: Path | None
    kind: str
    hosts_total: int
    hosts_ok: int
    verdict: str | None


@dataclass(frozen=True)
class SeriesPoint:
    run_id: str
    started_at: str
    campaign: str
    host: str
    metric: str
    value: float


class HistoryStore:
    """One open connection to ``<out_root>/history.sqlite``."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._conn = connection

    @classmethod
    def open(cls, out_root: Path) -> HistoryStore:
        """Open (creating it and ``out_root`` if needed) and migrate the store."""
        path = out_root / FILENAME
        try:
            out_root.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"{path}: cannot open the history store: {err}") from err
        try:
            configure(conn)
            migrate(conn, path, MIGRATIONS)
        except sqlite3.Error as err:
            conn.close()
            raise StoreError(f"{path}: not a usable history store: {err}") from err
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------

    def record_run(self, report: Mapping[str, Any], run_dir: Path, kind: str = "run") -> None:
        """Record one run from its report.json; recording a run again replaces it."""
        if kind not in RUN_KINDS:
            raise ValueError(f"run kind must be one of {', '.join(RUN_KINDS)}, not {kind!r}")
        row = self._run_row(report, run_dir, kind)
        run_id = row[0]
        hosts = _dicts(report.get("hosts"))
        with self._transaction():
            self._upsert_run(row)
            for table in ("hosts", "metrics", "samples", "findings"):
                self._conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            self._insert("hosts", _HOST_COLUMNS, host_rows(run_id, hosts))
            self._insert("metrics", _METRIC_COLUMNS, metric_rows(run_id, hosts))
            self._insert("samples", _SAMPLE_COLUMNS, sample_rows(run_id, hosts))
            findings = finding_rows(run_id, _mapping(report.get("check")))
            self._insert("findings", _FINDING_COLUMNS, findings)

    def set_baseline(self, campaign: str, run_id: str) -> None:
        """Pin a recorded run of ``campaign`` as the campaign's baseline."""
        with self._transaction():
            found = self._conn.execute(
                "SELECT campaign FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if found is None:
                raise StoreError(f"{self.path}: run {run_id!r} is not recorded")
            if found[0] != campaign:
                raise StoreError(
                    f"{self.path}: run {run_id!r} belongs to campaign {found[0]!r},"
                    f" not {campaign!r}"
                )
            self._conn.execute(
                "INSERT INTO baselines (campaign, run_id, set_at) VALUES (?, ?, ?)"
                " ON CONFLICT (campaign) DO UPDATE SET run_id = excluded.run_id,"
                " set_at = excluded.set_at",
                (campaign, run_id, _now()),
            )

    # --- runs ----------------------------------------------------------------------

    def baseline(self, campaign: str) -> RunRecord | None:
        rows = self._query(
            f"SELECT {_prefixed('r')} FROM baselines b JOIN runs r USING (run_id)"
            " WHERE b.campaign = ?",
            (campaign,),
        )
        return self._record(rows[0]) if rows else None

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        return self._record(rows[0]) if rows else None

    def last_run(
        self,
        campaign: str,
        *,
        before_run_id: str | None = None,
        kinds: Sequence[str] = MEASURED_KINDS,
    ) -> RunRecord | None:
        """The campaign's latest run; with ``before_run_id``, the latest one before it
        (a run id that is not recorded only excludes itself)."""
        where, params = self._before(before_run_id, inclusive=False)
        rows = self._query(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE campaign = ? AND kind IN ({_marks(kinds)})"
            f" AND {where} ORDER BY started_at DESC, seq DESC LIMIT 1",
            (campaign, *kinds, *params),
        )
        return self._record(rows[0]) if rows else None

    def runs(
        self,
        campaign: str | None = None,
        *,
        kinds: Sequence[str] = MEASURED_KINDS,
        limit: int = 30,
    ) -> list[RunRecord]:
        """The last ``limit`` runs (of one campaign, or of all), oldest first."""
        where, params = _campaign_filter(campaign)
        rows = self._query(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE kind IN ({_marks(kinds)}) AND {where}"
            " ORDER BY started_at DESC, seq DESC LIMIT ?",
            (*kinds, *params, max(limit, 0)),
        )
        return [self._record(row) for row in reversed(rows)]

    # --- per run -------------------------------------------------------------------

    def samples(self, run_id: str, host: str, metric: str) -> list[float]:
        """The repetitions behind one host's metric in one run, in their order."""
        rows = self._query(
            "SELECT value FROM samples WHERE run_id = ? AND host = ? AND metric = ? ORDER BY seq",
            (run_id, host, metric),
        )
        return [float(row[0]) for row in rows]

    def host_metrics(self, run_id: str, host: str) -> dict[str, float]:
        rows = self._query(
            "SELECT metric, value FROM metrics WHERE run_id = ? AND host = ? ORDER BY metric",
            (run_id, host),
        )
        return {str(row[0]): float(row[1]) for row in rows}

    def host_statuses(self, run_id: str) -> dict[str, str]:
        """Every host of the run and its status (``unknown`` where none was reported)."""
        rows = self._query(
            "SELECT host, COALESCE(status, 'unknown') FROM hosts WHERE run_id = ? ORDER BY host",
            (run_id,),
        )
        return {str(row[0]): str(row[1]) for row in rows}

    def incomplete_hosts(self, run_id: str) -> dict[str, str]:
        """The run's hosts whose measurement window was incomplete, and why."""
        rows = self._query(
            "SELECT host, incomplete FROM hosts WHERE run_id = ? AND incomplete IS NOT NULL"
            " ORDER BY host",
            (run_id,),
        )
        return {str(row[0]): str(row[1]) for row in rows}

    # --- across runs ---------------------------------------------------------------

    def series(
        self,
        *,
        campaign: str | None = None,
        host: str | None = None,
        metric: str | None = None,
        limit_runs: int = 30,
    ) -> list[SeriesPoint]:
        """Metric values over each campaign's last ``limit_runs`` runs (kinds run and
        check), grouped by (campaign, host, metric) and oldest first inside a group."""
        where, params = _campaign_filter(campaign)
        chosen = [(name, v) for name, v in (("host", host), ("metric", metric)) if v is not None]
        filters = [f"m.{name} = ?" for name, _ in chosen]
        values = [v for _, v in chosen]
        rows = self._query(
            "WITH recent AS (SELECT run_id, campaign, started_at, seq, ROW_NUMBER() OVER"
            " (PARTITION BY campaign ORDER BY started_at DESC, seq DESC) AS age FROM runs"
            f" WHERE kind IN ({_marks(MEASURED_KINDS)}) AND {where})"
            " SELECT r.run_id, r.started_at, r.campaign, m.host, m.metric, m.value"
            " FROM recent r JOIN metrics m USING (run_id) WHERE r.age <= ?"
            + "".join(f" AND {f}" for f in filters)
            + " ORDER BY r.campaign, m.host, m.metric, r.started_at, r.seq",
            (*MEASURED_KINDS, *params, max(limit_runs, 0), *values),
        )
        return [
            SeriesPoint(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), float(r[5]))
            for r in rows
        ]

    def flag_counts(
        self, campaign: str, *, checks: int, before_run_id: str | None = None
    ) -> tuple[int, dict[tuple[str, str], int]]:
        """Over the campaign's last ``checks`` check runs (up to and including
        ``before_run_id`` when given): how many there were, and per (host, metric) -- or
        (host, kind) for a finding without a metric -- in how many a finding was recorded,
        confirmed or not."""
        if checks <= 0:
            return 0, {}
        where, params = self._before(before_run_id, inclusive=True)
        run_ids = [
            str(row[0])
            for row in self._query(
                f"SELECT run_id FROM runs WHERE campaign = ? AND kind = 'check' AND {where}"
                " ORDER BY started_at DESC, seq DESC LIMIT ?",
                (campaign, *params, checks),
            )
        ]
        if not run_ids:
            return 0, {}
        rows = self._query(
            "SELECT host, COALESCE(metric, kind), COUNT(DISTINCT run_id) FROM findings"
            f" WHERE run_id IN ({_marks(run_ids)}) GROUP BY 1, 2",
            tuple(run_ids),
        )
        return len(run_ids), {(str(r[0]), str(r[1])): int(r[2]) for r in rows}

    def trend(
        self, campaign: str, metrics: Sequence[str], *, limit_runs: int = 30
    ) -> dict[str, Any]:
        """report.json's ``history{}``: the campaign's last runs (kinds run and check),
        oldest first, and per metric and host one value or None per run. Metrics without
        any value in those runs are left out."""
        runs = self.runs(campaign, limit=limit_runs)
        position = {run.run_id: i for i, run in enumerate(runs)}
        series: dict[str, dict[str, list[float | None]]] = {}
        if runs and metrics:
            rows = self._query(
                f"SELECT run_id, host, metric, value FROM metrics WHERE run_id IN"
                f" ({_marks(runs)}) AND metric IN ({_marks(metrics)}) ORDER BY metric, host",
                (*position, *metrics),
            )
            for run_id, host, metric, value in rows:
                values = series.setdefault(metric, {}).setdefault(host, [None] * len(runs))
                values[position[run_id]] = float(value)
        ordered = {m: series[m] for m in dict.fromkeys(metrics) if m in series}
        return {
            "runs": [{"run_id": run.run_id, "started_at": run.started_at} for run in runs],
            "series": ordered,
        }

    # --- internals -----------------------------------------------------------------

    def _run_row(self, report: Mapping[str, Any], run_dir: Path, kind: str) -> tuple[Any, ...]:
        run_id = text(report.get("run_id"))
        campaign = text(report.get("campaign"))
        if not run_id or not campaign:
            raise StoreError(f"{self.path}: a report needs a run_id and a campaign to record")
        started_at = utc_iso(report.get("started_at"))
        if started_at is None:
            raise StoreError(
                f"{self.path}: run {run_id!r} has no valid started_at"
                f" ({str(report.get('started_at'))[:80]!r})"
            )
        hosts = _dicts(report.get("hosts"))
        summary = _mapping(report.get("summary"))
        ok = sum(1 for host in hosts if host.get("status") == "ok")
        return (
            run_id,
            campaign,
            started_at,
            self._stored_path(run_dir),
            kind,
            count(summary.get("hosts"), len(hosts)),
            count(summary.get("ok"), ok),
            text(_mapping(report.get("check")).get("verdict")),
            _now(),
        )

    def _upsert_run(self, row: tuple[Any, ...]) -> None:
        # An update keeps the run's seq: re-recording does not move it in time order.
        self._conn.execute(
            "INSERT INTO runs (run_id, campaign, started_at, path, kind, hosts_total,"
            " hosts_ok, verdict, recorded_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " (SELECT COALESCE(MAX(seq), 0) + 1 FROM runs))"
            " ON CONFLICT (run_id) DO UPDATE SET campaign = excluded.campaign,"
            " started_at = excluded.started_at, path = excluded.path, kind = excluded.kind,"
            " hosts_total = excluded.hosts_total, hosts_ok = excluded.hosts_ok,"
            " verdict = excluded.verdict, recorded_at = excluded.recorded_at",
            row,
        )

    def _insert(self, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> None:
        # OR REPLACE: a report listing a host (or a truncated name) twice keeps the last.
        self._conn.executemany(
            f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({_marks(columns)})",
            rows,
        )

    def _before(self, run_id: str | None, *, inclusive: bool) -> tuple[str, tuple[Any, ...]]:
        """A WHERE clause for the runs before ``run_id`` in time order (and it, when
        inclusive); only ``run_id`` itself is excluded where it is not recorded."""
        if run_id is None:
            return "1", ()
        rows = self._query("SELECT started_at, seq FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            return "run_id != ?", (run_id,)
        started_at, seq = rows[0]
        return _POSITION.format(op="<=" if inclusive else "<"), (started_at, started_at, seq)

    def _stored_path(self, run_dir: Path) -> str:
        # Relative to the output root where it lies inside, so a moved root still works.
        absolute = run_dir.resolve()
        try:
            return str(absolute.relative_to(self.path.parent.resolve()))
        except ValueError:
            return str(absolute)

    def _record(self, row: Sequence[Any]) -> RunRecord:
        run_id, campaign, started_at, path, kind, total, ok, verdict = row
        return RunRecord(
            run_id=str(run_id),
            campaign=str(campaign),
            started_at=str(started_at),
            path=self.path.parent / path if path else None,
            kind=str(kind),
            hosts_total=int(total),
            hosts_ok=int(ok),
            verdict=None if verdict is None else str(verdict),
        )

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot read the history store: {err}") from err

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot write the history store: {err}") from err
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException as err:
            rollback(self._conn)
            if isinstance(err, sqlite3.Error):
                raise StoreError(f"{self.path}: cannot write the history store: {err}") from err
            raise


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _marks(values: Sized) -> str:
    return ", ".join("?" * len(values))


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in _RUN_COLUMNS.split(","))


def _campaign_filter(campaign: str | None) -> tuple[str, tuple[str, ...]]:
    return ("campaign = ?", (campaign,)) if campaign is not None else ("1", ())
