"""PostgreSQL backend, for when one machine's SQLite file is not enough.

Same tables and keys as the SQLite backend; psycopg 3 (``pip install
'armada-jobservice[postgres]'``). Used from the store thread only, so one
connection suffices; a dropped connection is re-opened on the next call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.fleet.db import DDL as FLEET_DDL
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.store.base import JobSetWrite
from armada_jobservice.server.store.sql import SCHEMA_VERSION, SQLStore, not_terminal_sql

T = TypeVar("T")

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


#: As the shared upsert, also stamping each written row with its transaction's
#: id, from which a fleet's followers read what changed.
_UPSERT_JOBS = (
    "INSERT INTO jobs (queue, job_set_id, job_id, state, error) VALUES ",
    f"""
    ON CONFLICT (queue, job_set_id, job_id) DO UPDATE SET
        state = excluded.state, error = excluded.error, xid = pg_current_xact_id()
    WHERE {not_terminal_sql("jobs.state")}
    """,
)


class PostgresStore(SQLStore):
    """A ``Store`` in a PostgreSQL database."""

    param = "%s"
    greatest = "GREATEST"
    upsert_jobs_sql = _UPSERT_JOBS
    #: Never delete a job set a replica holds a live lease on (it may write it next).
    retention_guard = (
        " AND NOT EXISTS (SELECT 1 FROM job_set_owners o WHERE o.queue = job_sets.queue"
        " AND o.job_set_id = job_sets.job_set_id AND o.owner IS NOT NULL"
        " AND o.expires_at > now())"
    )
    delete_job_set_sql = (
        "DELETE FROM jobs WHERE queue = ? AND job_set_id = ?",
        "DELETE FROM job_set_owners WHERE queue = ? AND job_set_id = ?",
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None
        #: This replica's name in a fleet: writes are then fenced by its leases.
        self.owner: str | None = None

    def _fenced(self, cur: Any, batch: Sequence[JobSetWrite]) -> set[JobSetKey]:
        """Entries with rows or a position whose lease (owner and epoch) no longer holds.

        The lease rows are read ``FOR SHARE``: a replica taking a job set over
        waits until this transaction commits, and then reads its position.
        """
        if self.owner is None:
            return set()
        fenced = [e for e in batch if e.rows or e.last_message_id is not None]
        if not fenced:
            return set()
        cur.execute(
            """
            SELECT o.queue, o.job_set_id, o.epoch FROM job_set_owners o
            JOIN unnest(%s::text[], %s::text[]) AS f(queue, job_set_id)
              ON o.queue = f.queue AND o.job_set_id = f.job_set_id
            WHERE o.owner = %s AND o.expires_at > now()
            FOR SHARE OF o
            """,
            ([e.key[0] for e in fenced], [e.key[1] for e in fenced], self.owner),
        )
        held = {JobSetKey(q, js): int(epoch) for q, js, epoch in cur.fetchall()}
        return {e.key for e in fenced if e.epoch is None or held.get(e.key) != e.epoch}

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError(
                "PostgreSQL needs psycopg: pip install 'armada-jobservice[postgres]'"
            ) from exc
        try:
            # Named, so that an operator (and the bench) can tell our sessions apart.
            name = "armada-jobservice" + (f" {self.owner}" if self.owner else "")
            return psycopg.connect(
                self.url, autocommit=False, connect_timeout=10, application_name=name
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}".strip()) from exc

    def _transaction(self, fn: Callable[[Any], T], write: bool = False) -> T:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        conn = self._conn
        try:
            with conn.transaction(), conn.cursor() as cur:
                return fn(cur)
        except psycopg.OperationalError as exc:
            # The connection may be gone; the next call opens a new one.
            conn.close()
            raise StoreError(f"PostgreSQL: {exc}".strip()) from exc
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: {exc}".strip()) from exc

    def open(self) -> None:
        """Connect and create the tables if missing."""

        def create(cur: Any) -> None:
            # One replica at a time: concurrent CREATE TABLE of one name fails.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('armada-jobservice schema'))")
            cur.execute(_SCHEMA)
            cur.execute(FLEET_DDL)
            cur.execute("SELECT max(version) FROM jobservice_schema")
            version = cur.fetchone()[0]
            if version is None:
                cur.execute("INSERT INTO jobservice_schema VALUES (%s)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise StoreError(
                    f"database has schema version {version}, newer than this "
                    f"release's {SCHEMA_VERSION}"
                )

        self._transaction(create, write=True)

    def close(self) -> None:
        """Close the connection; idempotent."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
