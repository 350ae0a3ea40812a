"""Helpers for tests: poll a condition, the one door to internals, a database's schema."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import grpc

    from armada_jobservice import AsyncJobServiceClient
    from armada_jobservice.server.app import JobServiceApp
    from armada_jobservice.server.cache import JobSet
    from armada_jobservice.server.store.migrations import Migration
    from armada_jobservice.server.store.sqlite import SQLiteStore

T = TypeVar("T")

#: The fixtures' factories, as tests annotate them.
Serve = Callable[..., Awaitable["JobServiceApp"]]
Connect = Callable[["JobServiceApp | int"], "AsyncJobServiceClient"]
OpenChannel = Callable[["JobServiceApp | int"], "grpc.aio.Channel"]


async def eventually(
    probe: Callable[[], Awaitable[T]] | Callable[[], T],
    until: Callable[[T], bool] = bool,
    timeout: float = 10.0,
    interval: float = 0.02,
) -> T:
    """Call *probe* until *until* holds for its result; fail with the last result at timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value: Any = probe()
        if inspect.isawaitable(value):
            value = await value
        if until(value):
            return value  # type: ignore[no-any-return]
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached in {timeout} s; last value: {value!r}")
        await asyncio.sleep(interval)


# -- the server's internals -------------------------------------------------
# Tests that must see inside the running service go through these, and only
# these, so that renaming an internal of the server means changing one place.


def pending_changes(app: JobServiceApp) -> set[JobSet]:
    """The job sets that received events since the writer last took them."""
    return {js for js in app.subscriptions if js in app.changes}


def queued_loads(app: JobServiceApp) -> int:
    """How many job sets wait for the next batched read of stored jobs."""
    return app.loader.queued


def metric(app: JobServiceApp, name: str, **labels: str) -> float:
    """The current value of one sample the service exports, 0 when it has none yet.

    *name* is the sample's full Prometheus name, e.g.
    ``armada_jobservice_flush_batch_jobs_sum``.
    """
    value = app.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def without_sqlite_json(store: SQLiteStore) -> None:
    """Make a SQLite store act as one whose SQLite lacks the JSON functions."""
    store._json = False


# -- database schemas --------------------------------------------------------
# Read straight from the database with its own driver, not through a store.


def next_migration(version: int) -> Migration:
    """A migration after the released ones, of the kinds the upgrade rule allows.

    It adds a column with a default to a table that holds rows, and a table.
    """
    from armada_jobservice.server.store.migrations import Migration as M

    statements = (
        f"ALTER TABLE jobs ADD COLUMN note_{version} TEXT NOT NULL DEFAULT 'none'",
        f"CREATE TABLE extra_{version} (n INTEGER NOT NULL DEFAULT 0)",
    )
    return M(version, f"test: a note on each job, table extra_{version}", *[statements] * 2)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one query on a ``sqlite:///`` or ``postgresql://`` database."""
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url) as pg:
        return pg.execute(sql).fetchall()  # type: ignore[arg-type]


def schema_history(url: str) -> list[tuple[int, str | None, bool, str | None, int | None]]:
    """Each recorded migration: version, description, whether dated, host, pid."""
    return [
        (v, d, at is not None, host, pid)
        for v, d, at, host, pid in query(
            url,
            "SELECT version, description, applied_at, applied_by_host, applied_by_pid"
            " FROM jobservice_schema ORDER BY version",
        )
    ]


def schema_version(url: str) -> int:
    """The database's version as the service reads it."""
    if url.startswith("sqlite:///"):
        return int(query(url, "PRAGMA user_version")[0][0])
    return int(query(url, "SELECT max(version) FROM jobservice_schema")[0][0])


def armada_token_fetches(app: JobServiceApp) -> int:
    """How many tokens the service fetched for Armada (OpenID flows, exec) since start."""
    refresher = app.upstream.credentials.refresher
    return 0 if refresher is None else refresher.fetches


def unsubscribe_all(app: JobServiceApp) -> int:
    """End every subscription at once, as if none had been polled for the expiry time."""
    return app.subscriptions.expire_idle(float("inf"))
