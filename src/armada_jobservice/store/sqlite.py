"""The embedded default: SQLite in WAL mode, written by one thread in batches."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from armada_jobservice.cache import JobRow, JobSetKey
from armada_jobservice.errors import StoreError
from armada_jobservice.states import TERMINAL_STATES
from armada_jobservice.store.base import JobSetWrite, StoredJobSet

SCHEMA_VERSION = 1

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

_UPSERT_JOB_SET = """
INSERT INTO job_sets (queue, job_set_id, last_message_id, last_activity) VALUES (?, ?, ?, ?)
ON CONFLICT (queue, job_set_id) DO UPDATE SET
    last_message_id = COALESCE(excluded.last_message_id, job_sets.last_message_id),
    last_activity = MAX(excluded.last_activity, job_sets.last_activity)
"""

_UPSERT_JOB = """
INSERT INTO jobs (queue, job_set_id, job_id, state, error) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (queue, job_set_id, job_id) DO UPDATE SET
    state = excluded.state, error = excluded.error
WHERE jobs.state NOT IN ({terminal})
""".format(terminal=", ".join(str(int(s)) for s in TERMINAL_STATES))


def path_from_url(url: str) -> str:
    """The file path of ``sqlite:///relative``, ``sqlite:////absolute`` or ``:memory:``."""
    if not url.startswith("sqlite:///"):
        raise StoreError(f"not a sqlite:/// URL: {url!r}")
    path = url[len("sqlite:///") :]
    if not path:
        raise StoreError("the sqlite URL names no file")
    return path


class SQLiteStore:
    """A ``Store`` on one SQLite file (WAL, ``synchronous=NORMAL``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """Build a store for a ``sqlite:///`` URL."""
        return cls(path_from_url(url))

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is not open")
        return self._conn

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
            conn.execute("PRAGMA cache_size=-65536")
            conn.executescript(_SCHEMA)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                conn.close()
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this "
                    f"release's {SCHEMA_VERSION}"
                )
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        self._conn = conn

    def close(self) -> None:
        """Close the connection; idempotent."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def ping(self) -> None:
        """Run a trivial query."""
        try:
            self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"database does not answer: {exc}") from exc

    def write(self, batch: Iterable[JobSetWrite]) -> None:
        """Upsert a batch in one transaction."""
        db = self._db
        set_rows: list[tuple[str, str, str | None, float]] = []
        job_rows: list[tuple[str, str, str, int, str | None]] = []
        for entry in batch:
            queue, job_set_id = entry.key
            set_rows.append((queue, job_set_id, entry.last_message_id, entry.last_activity))
            job_rows.extend((queue, job_set_id, r.job_id, r.state, r.error) for r in entry.rows)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_UPSERT_JOB_SET, set_rows)
                db.executemany(_UPSERT_JOB, job_rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"write failed: {exc}") from exc

    def load_job_set(self, key: JobSetKey) -> StoredJobSet | None:
        """Read one job set and its jobs."""
        db = self._db
        try:
            head = db.execute(
                "SELECT last_message_id, last_activity FROM job_sets"
                " WHERE queue = ? AND job_set_id = ?",
                key,
            ).fetchone()
            if head is None:
                return None
            rows = db.execute(
                "SELECT job_id, state, error FROM jobs WHERE queue = ? AND job_set_id = ?", key
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc
        return StoredJobSet(head[0], head[1], [JobRow(*r) for r in rows])

    def idle_job_sets(self, cutoff: float, limit: int) -> list[JobSetKey]:
        """Job sets idle since before *cutoff*."""
        try:
            rows = self._db.execute(
                "SELECT queue, job_set_id FROM job_sets WHERE last_activity < ? LIMIT ?",
                (cutoff, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc
        return [JobSetKey(*r) for r in rows]

    def delete_job_sets(self, keys: Iterable[JobSetKey], cutoff: float) -> int:
        """Delete job sets still idle since *cutoff*, with all their jobs."""
        db = self._db
        deleted = 0
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for queue, job_set_id in keys:
                    cur = db.execute(
                        "DELETE FROM job_sets WHERE queue = ? AND job_set_id = ?"
                        " AND last_activity < ?",
                        (queue, job_set_id, cutoff),
                    )
                    if cur.rowcount:
                        deleted += 1
                        db.execute(
                            "DELETE FROM jobs WHERE queue = ? AND job_set_id = ?",
                            (queue, job_set_id),
                        )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"delete failed: {exc}") from exc
        return deleted

    def counts(self) -> tuple[int, int]:
        """Numbers of stored job sets and jobs."""
        db = self._db
        try:
            sets = db.execute("SELECT count(*) FROM job_sets").fetchone()[0]
            jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc
        return int(sets), int(jobs)
