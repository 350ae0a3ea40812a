"""The embedded default: SQLite in WAL mode, written by one thread in batches."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.model import JobRow, JobSetKey
from armada_jobservice.server.store.sql import SCHEMA_VERSION, SQLStore

T = TypeVar("T")

# No foreign key with ON DELETE CASCADE: upserting a job-set row must never
# touch its jobs (the original service lost every job of a set that way).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS job_sets (
    queue TEXT NOT NULL,
    job_set_id TEXT NOT NULL,
    last_message_id TEXT,
    last_activity REAL NOT NULL,
    PRIMARY KEY (queue, job_set_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_sets_by_activity ON job_sets (last_activity);
CREATE TABLE IF NOT EXISTS jobs (
    queue TEXT NOT NULL,
    job_set_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    error TEXT,
    PRIMARY KEY (queue, job_set_id, job_id)
) WITHOUT ROWID;
"""


def path_from_url(url: str) -> str:
    """The file path of ``sqlite:///relative``, ``sqlite:////absolute`` or ``:memory:``."""
    if not url.startswith("sqlite:///"):
        raise StoreError(f"not a sqlite:/// URL: {url!r}")
    path = url[len("sqlite:///") :]
    if not path:
        raise StoreError("the sqlite URL names no file")
    return path


class SQLiteStore(SQLStore):
    """A ``Store`` on one SQLite file (WAL, ``synchronous=NORMAL``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        #: Whether this SQLite has the JSON functions (built in since 3.38).
        self._json = True

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """Build a store for a ``sqlite:///`` URL."""
        return cls(path_from_url(url))

    def open(self) -> None:
        """Open the file (creating it and its tables if missing)."""
        if self._conn is not None:
            return
        if self.path != ":memory:":
            parent = Path(self.path).resolve().parent
            if not parent.is_dir():
                raise StoreError(f"folder {parent} does not exist")
        try:
            # The store thread is the only user; isolation_level=None lets us
            # issue BEGIN IMMEDIATE ourselves so a batch is one transaction.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
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
            conn.executescript(_SCHEMA)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                conn.close()
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this "
                    f"release's {SCHEMA_VERSION}"
                )
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            try:
                conn.execute("SELECT json_group_array(json_array(1, 'a', NULL))").fetchone()
            except sqlite3.OperationalError:
                self._json = False
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        self._conn = conn

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
        """Close the connection; idempotent."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

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
