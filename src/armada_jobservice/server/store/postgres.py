"""PostgreSQL backend, for when one machine's SQLite file is not enough.

Same tables and keys as the SQLite backend; psycopg 3 (``pip install
'armada-jobservice[postgres]'``). Used from the store thread only, so one
connection suffices; a dropped connection is re-opened on the next call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.store.base import JobSetWrite
from armada_jobservice.server.store.migrations import (
    ADVISORY_LOCK_KEY,
    MIGRATIONS,
    Migration,
    applier,
    check_list,
    pending,
)
from armada_jobservice.server.store.ownership import EARLIER_SHAPES, check_unversioned
from armada_jobservice.server.store.sql import SQLStore, not_terminal_sql

T = TypeVar("T")

#: The history of applied migrations; the highest version is the database's.
_SCHEMA_TABLE = """
CREATE TABLE jobservice_schema (
    version INTEGER NOT NULL,
    description TEXT,
    applied_at TIMESTAMPTZ,
    applied_by_host TEXT,
    applied_by_pid INTEGER
)
"""
#: Columns that the table as releases before the migrations list made it
#: (``version`` only) lacks; nullable, so those releases can still insert.
_LATER_COLUMNS = {
    "description": "TEXT",
    "applied_at": "TIMESTAMPTZ",
    "applied_by_host": "TEXT",
    "applied_by_pid": "INTEGER",
}


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

    def __init__(self, url: str, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.url = url
        self.migrations = tuple(migrations)
        check_list(self.migrations)
        self._conn: Any = None
        #: This replica's name in a fleet: writes are then fenced by its leases.
        self.owner: str | None = None

    def _fenced(self, cur: Any, batch: Sequence[JobSetWrite]) -> set[JobSetKey]:
        """Entries with rows or a position whose lease (owner and epoch) no longer holds.

        The lease rows are read ``FOR KEY SHARE``: a replica taking a job set
        over locks its row ``FOR UPDATE SKIP LOCKED``, so it does not take a
        job set while its owner's flush is under way, and a flush that starts
        after the claim waits for it and then finds itself fenced. Renewals
        (which change no key) never wait for a flush.
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
            ORDER BY o.queue, o.job_set_id
            FOR KEY SHARE OF o
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
        """Connect and apply the migrations the database lacks."""
        self._transaction(self._migrate, write=True)

    def _migrate(self, cur: Any) -> None:
        """Bring the schema up to date, one replica at a time.

        The advisory lock is held until this transaction ends: replicas that
        start together wait here in turn, and each later one finds the
        migrations applied (read committed: every statement sees the
        transactions committed before it began).
        """
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        cur.execute("SELECT to_regclass('jobservice_schema') IS NOT NULL, current_schema()")
        exists, schema = cur.fetchone()
        version = 0
        if exists:
            cur.execute("SELECT max(version) FROM jobservice_schema")
            version = cur.fetchone()[0] or 0
        info = cur.connection.info
        name = f"PostgreSQL database {info.dbname} (schema {schema}) at {info.host}:{info.port}"
        todo = pending(self.migrations, name, version)
        if not exists:
            cur.execute(
                """
                SELECT c.relname, array_agg(a.attname::text)
                FROM pg_class c
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(%s)
                GROUP BY c.relname
                """,
                (list(EARLIER_SHAPES),),
            )
            check_unversioned(name, {t: set(cols) for t, cols in cur.fetchall()}, whole_file=False)
            cur.execute(_SCHEMA_TABLE)
        else:
            cur.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'jobservice_schema'::regclass"
                " AND attnum > 0 AND NOT attisdropped"
            )
            have = {row[0] for row in cur.fetchall()}
            missing = [f"ADD COLUMN {c} {t}" for c, t in _LATER_COLUMNS.items() if c not in have]
            if missing:
                cur.execute("ALTER TABLE jobservice_schema " + ", ".join(missing))
        host, pid = applier()
        for migration in todo:
            for statement in migration.postgres:
                cur.execute(statement)
            cur.execute(
                "INSERT INTO jobservice_schema"
                " (version, description, applied_at, applied_by_host, applied_by_pid)"
                " VALUES (%s, %s, now(), %s, %s)",
                (migration.version, migration.description, host, pid),
            )

    def close(self) -> None:
        """Close the connection; idempotent."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
