"""Versioned, forward-only migrations on each backend: new, old and newer databases."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import pytest

from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.model import JobRow, JobSetKey
from armada_jobservice.server.store import open_store
from armada_jobservice.server.store.base import JobSetWrite
from armada_jobservice.server.store.migrations import (
    MIGRATIONS,
    Migration,
    SchemaTooNew,
    check_list,
)

from ..helpers import next_migration, query, schema_history, schema_version

K = JobSetKey("q", "set")
ROWS = [JobRow("a", 4, None), JobRow("b", 3, "boom")]
LATEST = MIGRATIONS[-1].version
UPGRADED = (*MIGRATIONS, next_migration(LATEST + 1))
ME = (socket.gethostname(), os.getpid())

# The tables exactly as the release before the migrations list created them
# (each in one step, then its version: 1), to check that such a database is
# recognised as version 1 and upgraded with nothing lost.
BEFORE_MIGRATIONS = {
    "sqlite": """
        CREATE TABLE IF NOT EXISTS job_sets (
            queue TEXT NOT NULL, job_set_id TEXT NOT NULL, last_message_id TEXT,
            last_activity REAL NOT NULL, PRIMARY KEY (queue, job_set_id)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS job_sets_by_activity ON job_sets (last_activity);
        CREATE TABLE IF NOT EXISTS jobs (
            queue TEXT NOT NULL, job_set_id TEXT NOT NULL, job_id TEXT NOT NULL,
            state INTEGER NOT NULL, error TEXT, PRIMARY KEY (queue, job_set_id, job_id)
        ) WITHOUT ROWID;
        PRAGMA user_version=1;
        INSERT INTO job_sets VALUES ('q', 'set', 'm-1', 5.0);
        INSERT INTO jobs VALUES ('q', 'set', 'a', 4, NULL), ('q', 'set', 'b', 3, 'boom');
    """,
    "postgres": """
        CREATE TABLE IF NOT EXISTS job_sets (
            queue TEXT NOT NULL, job_set_id TEXT NOT NULL, last_message_id TEXT,
            last_activity DOUBLE PRECISION NOT NULL, PRIMARY KEY (queue, job_set_id)
        );
        CREATE INDEX IF NOT EXISTS job_sets_by_activity ON job_sets (last_activity);
        CREATE TABLE IF NOT EXISTS jobs (
            queue TEXT NOT NULL, job_set_id TEXT NOT NULL, job_id TEXT NOT NULL,
            state SMALLINT NOT NULL, error TEXT, PRIMARY KEY (queue, job_set_id, job_id)
        );
        CREATE TABLE IF NOT EXISTS jobservice_schema (version INTEGER NOT NULL);
        INSERT INTO jobservice_schema VALUES (1);
        INSERT INTO job_sets VALUES ('q', 'set', 'm-1', 5.0);
        INSERT INTO jobs VALUES ('q', 'set', 'a', 4, NULL), ('q', 'set', 'b', 3, 'boom');
    """,
}


def write_and_close(url: str, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
    """Open a store at *migrations*, write the test's job set, close it."""
    store = open_store(url, migrations)
    store.open()
    try:
        store.write([JobSetWrite(K, "m-1", 5.0, ROWS)])
    finally:
        store.close()


def assert_job_set_kept(url: str, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
    """A store at *migrations* reads the test's job set back whole."""
    store = open_store(url, migrations)
    store.open()
    try:
        loaded = store.load_job_set(K)
    finally:
        store.close()
    assert loaded is not None
    assert (loaded.last_message_id, loaded.last_activity) == ("m-1", 5.0)
    assert sorted(loaded.rows) == ROWS


def test_a_new_database_records_each_migration_once(store_url: str) -> None:
    """An empty database gets every migration, each recorded with when and by whom."""
    write_and_close(store_url)
    assert schema_version(store_url) == LATEST
    assert schema_history(store_url) == [(m.version, m.description, True, *ME) for m in MIGRATIONS]
    write_and_close(store_url)  # opening again applies nothing again
    assert [row[0] for row in schema_history(store_url)] == [m.version for m in MIGRATIONS]


def test_upgrade_adds_the_next_migration_and_loses_nothing(store_url: str) -> None:
    """A database at the released version is migrated to the next one, its rows intact."""
    write_and_close(store_url)
    assert_job_set_kept(store_url, UPGRADED)
    assert schema_version(store_url) == LATEST + 1
    history = schema_history(store_url)
    assert [row[0] for row in history] == [*(m.version for m in MIGRATIONS), LATEST + 1]
    assert history[-1] == (LATEST + 1, UPGRADED[-1].description, True, *ME)
    # The new column has its default on the rows that were there.
    notes = query(store_url, f"SELECT job_id, note_{LATEST + 1} FROM jobs ORDER BY job_id")
    assert notes == [("a", "none"), ("b", "none")]
    assert query(store_url, f"SELECT count(*) FROM extra_{LATEST + 1}") == [(0,)]
    # The upgraded database still takes writes, and is not migrated twice.
    write_and_close(store_url, UPGRADED)
    assert len(schema_history(store_url)) == len(UPGRADED)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_database_of_the_release_before_migrations_is_version_1(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Tables and version as the earlier release wrote them: version 1, upgraded intact."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/old.db"
        conn = sqlite3.connect(url[len("sqlite:///") :])
        conn.executescript(BEFORE_MIGRATIONS["sqlite"])
        conn.close()
    else:
        import psycopg

        url = request.getfixturevalue("pg_url")
        with psycopg.connect(url) as pg:
            pg.execute(BEFORE_MIGRATIONS["postgres"])  # type: ignore[arg-type]
    assert_job_set_kept(url, MIGRATIONS[:1])
    assert schema_version(url) == 1
    # Recognised as applied: not applied again; the earlier release left no date.
    assert schema_history(url) == [(1, None, False, None, None)]
    assert_job_set_kept(url, UPGRADED)
    assert schema_history(url) == [
        (1, None, False, None, None),
        *((m.version, m.description, True, *ME) for m in UPGRADED[1:]),
    ]


def test_a_newer_schema_is_refused_and_left_alone(store_url: str) -> None:
    """A store of an older release refuses a database migrated further, naming both versions."""
    write_and_close(store_url, UPGRADED)
    store = open_store(store_url)
    with pytest.raises(SchemaTooNew) as refused:
        store.open()
    store.close()
    assert (refused.value.version, refused.value.ours) == (LATEST + 1, LATEST)
    assert f"schema version {LATEST + 1}, newer than this release's {LATEST}" in str(refused.value)
    assert schema_version(store_url) == LATEST + 1
    assert len(schema_history(store_url)) == len(UPGRADED)
    assert_job_set_kept(store_url, UPGRADED)


def test_a_failing_migration_changes_nothing(store_url: str) -> None:
    """A migration that fails part-way is rolled back whole: version and tables as before."""
    write_and_close(store_url)
    good = next_migration(LATEST + 1)
    broken = Migration(
        LATEST + 1,
        "test: fails after its first statement",
        sqlite=(good.sqlite[0], "CREATE TABLE jobs (x INTEGER)"),
        postgres=(good.postgres[0], "CREATE TABLE jobs (x INTEGER)"),
    )
    store = open_store(store_url, (*MIGRATIONS, broken))
    with pytest.raises(StoreError):
        store.open()
    store.close()
    assert schema_version(store_url) == LATEST
    assert len(schema_history(store_url)) == len(MIGRATIONS)
    # Its first statement was undone too: the good migration adds the same column.
    assert_job_set_kept(store_url, UPGRADED)
    assert schema_version(store_url) == LATEST + 1


def test_an_older_replica_keeps_working_on_a_migrated_postgres(pg_url: str) -> None:
    """Rolling upgrade: a replica of the earlier release reads and writes through a migration."""
    old = open_store(pg_url)
    old.open()
    try:
        old.write([JobSetWrite(K, "m-1", 5.0, ROWS)])
        write_and_close(pg_url, UPGRADED)  # a replica of the new release starts
        assert schema_version(pg_url) == LATEST + 1
        old.write([JobSetWrite(K, "m-2", 6.0, [JobRow("c", 2, None)])])
        loaded = old.load_job_set(K)
        assert loaded is not None
        assert loaded.last_message_id == "m-2"
        assert sorted(loaded.rows) == [*ROWS, JobRow("c", 2, None)]
    finally:
        old.close()


def test_versions_must_run_from_1_without_gaps() -> None:
    """A list of migrations with a gap or out of order is refused before any database is touched."""
    with pytest.raises(ValueError, match="1, 2, 3"):
        check_list((*MIGRATIONS, next_migration(LATEST + 2)))
    with pytest.raises(ValueError, match="1, 2, 3"):
        open_store("sqlite:///:memory:", (next_migration(2), *MIGRATIONS))
