"""The embedded default: SQLite in WAL mode, written by one thread in batches."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.model import JobRow, JobSetKey
from armada_jobservice.server.store.instance_lock import InstanceLock
from armada_jobservice.server.store.migrations import (
    MIGRATIONS,
    Migration,
    applier,
    check_list,
    pending,
)
from armada_jobservice.server.store.ownership import check_unversioned
from armada_jobservice.server.store.sql import SQLStore

T = TypeVar("T")

#: The history of applied migrations (the version itself is PRAGMA user_version).
_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS jobservice_schema (
    version INTEGER NOT NULL,
    description TEXT,
    applied_at TEXT,
    applied_by_host TEXT,
    applied_by_pid INTEGER
)
"""


def _tables(conn: sqlite3.Connection) -> dict[str, set[str]]:
    """Each table of the file (SQLite's own left out) with its column names."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' "
            "ESCAPE '!'"
        )
    ]
    return {
        n: {row[1] for row in conn.execute("SELECT * FROM pragma_table_info(?)", (n,))}
        for n in names
    }


def path_from_url(url: str) -> str:
    """The file path of ``sqlite:///relative``, ``sqlite:////absolute`` or ``:memory:``."""
    if not url.startswith("sqlite:///"):
        raise StoreError(f"not a sqlite:/// URL: {url!r}")
    path = url[len("sqlite:///") :]
    if not path:
        raise StoreError("the sqlite URL names no file")
    return path


class SQLiteStore(SQLStore):
    """A ``Store`` on one SQLite file (WAL, ``synchronous=NORMAL``), for one process at a time.

    ``open()`` takes the file's instance lock (``<file>.lock``, see
    ``instance_lock``) and applies *migrations* the file lacks; ``close()``
    lets go of the lock. ``:memory:`` needs no lock.
    """

    def __init__(self, path: str, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.path = path
        self.migrations = tuple(migrations)
        check_list(self.migrations)
        self._conn: sqlite3.Connection | None = None
        self._lock = None if path == ":memory:" else InstanceLock(Path(path + ".lock"), path)
        #: Whether this SQLite has the JSON functions (built in since 3.38).
        self._json = True

    @classmethod
    def from_url(cls, url: str, migrations: Sequence[Migration] = MIGRATIONS) -> SQLiteStore:
        """Build a store for a ``sqlite:///`` URL."""
        return cls(path_from_url(url), migrations)

    def open(self) -> None:
        """Lock the file, open it (creating it if missing) and bring its schema up to date."""
        if self._conn is not None:
            return
        if self.path != ":memory:":
            parent = Path(self.path).resolve().parent
            if not parent.is_dir():
                raise StoreError(f"folder {parent} does not exist")
        if self._lock is not None:
            self._lock.acquire()
        try:
            self._conn = self._connect()
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    def _connect(self) -> sqlite3.Connection:
        try:
            # The store thread is the only user; isolation_level=None lets us
            # issue BEGIN IMMEDIATE ourselves so a batch is one transaction.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        try:
            # Before anything writes (WAL mode rewrites the file's header).
            tables = _tables(conn)
            if "jobservice_schema" not in tables:
                check_unversioned(self.path, tables, whole_file=True)
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives a killed process; only a power cut can
            # lose the last transactions.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            # 16 MiB of page cache: a full one stays resident, and loading job
            # sets fills it, so a larger one shows up in the memory per cached
            # job (bench scenario 4); 16 MiB still holds the pages that
            # flushes touch most (recently written jobs).
            conn.execute("PRAGMA cache_size=-16384")
            self._migrate(conn)
            try:
                conn.execute("SELECT json_group_array(json_array(1, 'a', NULL))").fetchone()
            except sqlite3.OperationalError:
                self._json = False
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply the migrations the file lacks, in one transaction with its new user_version."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            todo = pending(self.migrations, self.path, version)
            recorded = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'jobservice_schema'"
            ).fetchone()[0]
            if not recorded:
                conn.execute(_SCHEMA_TABLE)
                # Versions an earlier release applied without recording them.
                conn.executemany(
                    "INSERT INTO jobservice_schema (version) VALUES (?)",
                    [(v,) for v in range(1, version + 1)],
                )
            host, pid = applier()
            for migration in todo:
                for statement in migration.sqlite:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO jobservice_schema VALUES "
                    "(?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?, ?)",
                    (migration.version, migration.description, host, pid),
                )
            if todo:
                conn.execute(f"PRAGMA user_version={todo[-1].version:d}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _job_rows(self, cur: Any, key: JobSetKey) -> list[JobRow]:
        """The stored jobs of one job set, fetched as one JSON value.

        The sqlite3 module lets go of the GIL for every row it steps, and
        taking it back from a busy event loop costs far more than the row
        (measured by the SQLite GIL probe; figures in ``docs/benchmarks.md``).
        The columns are text and integers, which JSON carries exactly.
        """
        if not self._json:
            return super()._job_rows(cur, key)
        cur.execute(
            "SELECT json_group_array(json_array(job_id, state, error)) FROM jobs "
            "WHERE queue = ? AND job_set_id = ?",
            tuple(key),
        )
        return [JobRow(*r) for r in json.loads(cur.fetchone()[0])]

    def close(self) -> None:
        """Close the connection and let go of the file's lock; idempotent."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            if self._lock is not None:
                self._lock.release()

    def _transaction(self, fn: Callable[[Any], T], write: bool = False) -> T:
        if self._conn is None:
            raise StoreError("the store is not open")
        db = self._conn
        try:
            # A writer takes the lock up front (no upgrade deadlock); readers
            # need only a snapshot.
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = fn(db.cursor())
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite {self.path}: {exc}") from exc
        return result
