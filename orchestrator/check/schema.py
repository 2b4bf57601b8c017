"""The history store's schema and connection: the migrations (one step per schema
version, ``PRAGMA user_version``), WAL mode and the busy timeout, and the store's error.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

FILENAME = "history.sqlite"
BUSY_TIMEOUT_S = 30.0
MAX_TEXT = 1000

# One step per schema version, applied in order: step i takes user_version i to i + 1.
# Statements, not scripts: executescript() would commit the migration's transaction.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL UNIQUE,
            campaign TEXT NOT NULL,
            started_at TEXT NOT NULL,
            path TEXT,
            kind TEXT NOT NULL CHECK (kind IN ('run', 'check', 'confirm')),
            hosts_total INTEGER NOT NULL,
            hosts_ok INTEGER NOT NULL,
            verdict TEXT,
            recorded_at TEXT NOT NULL
        )""",
        """CREATE TABLE hosts (
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            host TEXT NOT NULL,
            hw_model TEXT,
            grp TEXT,
            status TEXT,
            reason TEXT,
            PRIMARY KEY (run_id, host)
        )""",
        """CREATE TABLE metrics (
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            host TEXT NOT NULL,
            metric TEXT NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY (run_id, host, metric)
        )""",
        """CREATE TABLE samples (
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            host TEXT NOT NULL,
            metric TEXT NOT NULL,
            seq INTEGER NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY (run_id, host, metric, seq)
        )""",
        """CREATE TABLE findings (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            host TEXT NOT NULL,
            kind TEXT NOT NULL,
            metric TEXT,
            confirmed INTEGER,
            message TEXT
        )""",
        """CREATE TABLE baselines (
            campaign TEXT PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            set_at TEXT NOT NULL
        )""",
        "CREATE INDEX runs_by_campaign ON runs (campaign, started_at)",
        "CREATE INDEX metrics_by_host ON metrics (host, metric)",
        "CREATE INDEX findings_by_run ON findings (run_id)",
    ),
    # report.json hosts[].incomplete: why the host's measurement window was incomplete
    # (NULL: complete). Such a host's samples are never a baseline.
    ("ALTER TABLE hosts ADD COLUMN incomplete TEXT",),
]


class StoreError(Exception):
    """The history store cannot be used: unreadable, corrupt, newer, or a bad request."""


def configure(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    _retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())


def _retry_busy(action: Callable[[], object], attempts: int = 300) -> None:
    """Switching to WAL needs a moment alone with the file, and SQLite reports a
    concurrent opener as busy without waiting on the busy timeout."""
    for attempt in range(attempts):
        try:
            action()
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) and "busy" not in str(err):
                raise
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)


def migrate(conn: sqlite3.Connection, path: Path, migrations: Sequence[Sequence[str]]) -> None:
    """Bring the schema to ``len(migrations)``, under an exclusive lock so that two
    processes opening a fresh store do not both migrate it."""
    if _user_version(conn, path, migrations) == len(migrations):
        return
    conn.execute("BEGIN EXCLUSIVE")
    try:
        version = _user_version(conn, path, migrations)
        for step in migrations[version:]:
            for statement in step:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {len(migrations)}")
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def rollback(conn: sqlite3.Connection) -> None:
    # SQLite may have rolled back already (a failed COMMIT, a full disk).
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _user_version(conn: sqlite3.Connection, path: Path, migrations: Sequence[Any]) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(migrations):
        raise StoreError(
            f"{path}: schema version {version} was written by a newer fleetprof"
            f" (this one knows up to {len(migrations)})"
        )
    return version
