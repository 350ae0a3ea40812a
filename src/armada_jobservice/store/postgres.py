"""PostgreSQL backend, for when one machine's SQLite file is not enough.

Same tables and keys as the SQLite backend; psycopg 3 (``pip install
'armada-jobservice[postgres]'``). Used from the store thread only, so one
connection suffices; a dropped connection is re-opened on the next call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from armada_jobservice.cache import JobRow, JobSetKey
from armada_jobservice.errors import StoreError
from armada_jobservice.states import TERMINAL_STATES
from armada_jobservice.store.base import JobSetWrite, StoredJobSet

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job_sets (
    queue TEXT NOT NULL,
    job_set_id TEXT NOT NULL,
    last_message_id TEXT,
    last_activity DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (queue, job_set_id)
);
CREATE INDEX IF NOT EXISTS job_sets_by_activity ON job_sets (last_activity);
CREATE TABLE IF NOT EXISTS jobs (
    queue TEXT NOT NULL,
    job_set_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    state SMALLINT NOT NULL,
    error TEXT,
    PRIMARY KEY (queue, job_set_id, job_id)
);
CREATE TABLE IF NOT EXISTS jobservice_schema (version INTEGER NOT NULL);
"""

_UPSERT_JOB_SET = """
INSERT INTO job_sets (queue, job_set_id, last_message_id, last_activity) VALUES (%s, %s, %s, %s)
ON CONFLICT (queue, job_set_id) DO UPDATE SET
    last_message_id = COALESCE(EXCLUDED.last_message_id, job_sets.last_message_id),
    last_activity = GREATEST(EXCLUDED.last_activity, job_sets.last_activity)
"""

_UPSERT_JOB = """
INSERT INTO jobs (queue, job_set_id, job_id, state, error) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (queue, job_set_id, job_id) DO UPDATE SET
    state = EXCLUDED.state, error = EXCLUDED.error
WHERE jobs.state NOT IN ({terminal})
""".format(terminal=", ".join(str(int(s)) for s in TERMINAL_STATES))


class PostgresStore:
    """A ``Store`` in a PostgreSQL database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError(
                "PostgreSQL needs psycopg: pip install 'armada-jobservice[postgres]'"
            ) from exc
        try:
            return psycopg.connect(self.url, autocommit=False, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}".strip()) from exc

    def _run(self, fn: Any) -> Any:
        """Run ``fn(conn)`` in a transaction, translating driver errors."""
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        conn = self._conn
        try:
            with conn.transaction():
                return fn(conn)
        except psycopg.OperationalError as exc:
            # The connection may be gone; the next call opens a new one.
            conn.close()
            raise StoreError(f"PostgreSQL: {exc}".strip()) from exc
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: {exc}".strip()) from exc

    def open(self) -> None:
        """Connect and create the tables if missing."""

        def create(conn: Any) -> None:
            conn.execute(_SCHEMA)
            row = conn.execute("SELECT max(version) FROM jobservice_schema").fetchone()
            if row[0] is None:
                conn.execute("INSERT INTO jobservice_schema VALUES (%s)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise StoreError(
                    f"database has schema version {row[0]}, newer than this "
                    f"release's {SCHEMA_VERSION}"
                )

        self._run(create)

    def close(self) -> None:
        """Close the connection; idempotent."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def ping(self) -> None:
        """Run a trivial query."""
        self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    def write(self, batch: Iterable[JobSetWrite]) -> None:
        """Upsert a batch in one transaction."""
        set_rows: list[tuple[str, str, str | None, float]] = []
        job_rows: list[tuple[str, str, str, int, str | None]] = []
        for entry in batch:
            queue, job_set_id = entry.key
            set_rows.append((queue, job_set_id, entry.last_message_id, entry.last_activity))
            job_rows.extend((queue, job_set_id, r.job_id, r.state, r.error) for r in entry.rows)

        def upsert(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.executemany(_UPSERT_JOB_SET, set_rows)
                if job_rows:
                    cur.executemany(_UPSERT_JOB, job_rows)

        self._run(upsert)

    def load_job_set(self, key: JobSetKey) -> StoredJobSet | None:
        """Read one job set and its jobs."""

        def read(conn: Any) -> StoredJobSet | None:
            head = conn.execute(
                "SELECT last_message_id, last_activity FROM job_sets"
                " WHERE queue = %s AND job_set_id = %s",
                tuple(key),
            ).fetchone()
            if head is None:
                return None
            rows = conn.execute(
                "SELECT job_id, state, error FROM jobs WHERE queue = %s AND job_set_id = %s",
                tuple(key),
            ).fetchall()
            return StoredJobSet(head[0], head[1], [JobRow(*r) for r in rows])

        result: StoredJobSet | None = self._run(read)
        return result

    def idle_job_sets(self, cutoff: float, limit: int) -> list[JobSetKey]:
        """Job sets idle since before *cutoff*."""
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT queue, job_set_id FROM job_sets WHERE last_activity < %s LIMIT %s",
                (cutoff, limit),
            ).fetchall()
        )
        return [JobSetKey(*r) for r in rows]

    def delete_job_sets(self, keys: Iterable[JobSetKey], cutoff: float) -> int:
        """Delete job sets still idle since *cutoff*, with all their jobs."""
        keys = list(keys)

        def delete(conn: Any) -> int:
            deleted = 0
            for queue, job_set_id in keys:
                cur = conn.execute(
                    "DELETE FROM job_sets WHERE queue = %s AND job_set_id = %s"
                    " AND last_activity < %s",
                    (queue, job_set_id, cutoff),
                )
                if cur.rowcount:
                    deleted += 1
                    conn.execute(
                        "DELETE FROM jobs WHERE queue = %s AND job_set_id = %s",
                        (queue, job_set_id),
                    )
            return deleted

        result: int = self._run(delete)
        return result

    def counts(self) -> tuple[int, int]:
        """Numbers of stored job sets and jobs."""

        def count(conn: Any) -> tuple[int, int]:
            sets = conn.execute("SELECT count(*) FROM job_sets").fetchone()[0]
            jobs = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
            return int(sets), int(jobs)

        result: tuple[int, int] = self._run(count)
        return result
