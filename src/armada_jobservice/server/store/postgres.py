"""PostgreSQL backend, for when one machine's SQLite file is not enough.

Same tables and keys as the SQLite backend; psycopg 3 (``pip install
'armada-jobservice[postgres]'``). Used from the store thread only, so one
connection suffices; a dropped connection is re-opened on the next call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.store.sql import SCHEMA_VERSION, SQLStore

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


class PostgresStore(SQLStore):
    """A ``Store`` in a PostgreSQL database."""

    param = "%s"
    greatest = "GREATEST"

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
            cur.execute(_SCHEMA)
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
