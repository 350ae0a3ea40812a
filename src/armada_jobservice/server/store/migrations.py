"""The database schema as an ordered list of versioned, forward-only migrations.

Each ``Migration`` has a version (1, 2, 3, ... with no gaps), a one-line
description and its statements for each dialect. A store applies, at
``open()``, every migration newer than the database's version, each in order,
all in one transaction, and records each in ``jobservice_schema`` (version,
description, when, and by which host and pid). Adding a migration is one new
entry at the end of ``MIGRATIONS``; an entry once released is never edited.

Where the version lives:

- PostgreSQL: the highest ``version`` in ``jobservice_schema``. Replicas that
  start together take ``pg_advisory_xact_lock(ADVISORY_LOCK_KEY)`` inside the
  migrating transaction, so exactly one applies each migration and the others,
  once they get the lock, find it applied.
- SQLite: ``PRAGMA user_version``, set in the same transaction; the rows of
  ``jobservice_schema`` are the history.

A database at a version newer than the last entry is refused
(``SchemaTooNew``): a replica never runs on a schema it does not know.

The rule that makes a rolling upgrade safe (replicas of the previous release
keep running on the migrated database until they are replaced): **a migration
only adds** tables, columns that are nullable or have a default, and indexes.
It never drops, renames or retypes a table or column that the previous
release reads or writes, and never adds a constraint that the previous
release's writes could violate. Something a release stops using may be
dropped by the release after it, whose previous release no longer uses it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from armada_jobservice.server.errors import StoreError

#: The key of the PostgreSQL advisory lock that serialises migrations
#: (any fixed 64-bit number; this one spells "jobsvc01" in ASCII).
ADVISORY_LOCK_KEY = 0x6A6F627376633031


@dataclass(frozen=True)
class Migration:
    """One step of the schema: its version, what it does, and its statements per dialect."""

    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


# No foreign key with ON DELETE CASCADE: upserting a job-set row must never
# touch its jobs (the original service lost every job of a set that way).
# IF NOT EXISTS: a database of an earlier release may hold these tables
# without a recorded version (it wrote them and the version in two steps).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "job sets with their resume positions, and their jobs",
        sqlite=(
            """
            CREATE TABLE IF NOT EXISTS job_sets (
                queue TEXT NOT NULL,
                job_set_id TEXT NOT NULL,
                last_message_id TEXT,
                last_activity REAL NOT NULL,
                PRIMARY KEY (queue, job_set_id)
            ) WITHOUT ROWID
            """,
            "CREATE INDEX IF NOT EXISTS job_sets_by_activity ON job_sets (last_activity)",
            """
            CREATE TABLE IF NOT EXISTS jobs (
                queue TEXT NOT NULL,
                job_set_id TEXT NOT NULL,
                job_id TEXT NOT NULL,
                state INTEGER NOT NULL,
                error TEXT,
                PRIMARY KEY (queue, job_set_id, job_id)
            ) WITHOUT ROWID
            """,
        ),
        postgres=(
            """
            CREATE TABLE IF NOT EXISTS job_sets (
                queue TEXT NOT NULL,
                job_set_id TEXT NOT NULL,
                last_message_id TEXT,
                last_activity DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (queue, job_set_id)
            )
            """,
            "CREATE INDEX IF NOT EXISTS job_sets_by_activity ON job_sets (last_activity)",
            """
            CREATE TABLE IF NOT EXISTS jobs (
                queue TEXT NOT NULL,
                job_set_id TEXT NOT NULL,
                job_id TEXT NOT NULL,
                state SMALLINT NOT NULL,
                error TEXT,
                PRIMARY KEY (queue, job_set_id, job_id)
            )
            """,
        ),
    ),
    Migration(
        2,
        "a fleet on PostgreSQL: job-set leases, and the transaction that last wrote each job",
        # SQLite serves one replica: nothing to add, the version moves on.
        sqlite=(),
        # IF NOT EXISTS: builds before versioned migrations made these on start.
        postgres=(
            """
            CREATE TABLE IF NOT EXISTS job_set_owners (
                queue TEXT NOT NULL,
                job_set_id TEXT NOT NULL,
                owner TEXT,
                epoch BIGINT NOT NULL DEFAULT 0,
                expires_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                last_poll_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                failure TEXT,
                refused BOOLEAN NOT NULL DEFAULT false,
                failing_since TIMESTAMPTZ,
                PRIMARY KEY (queue, job_set_id)
            )
            """,
            "CREATE INDEX IF NOT EXISTS job_set_owners_by_expiry ON job_set_owners (expires_at)",
            "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS"
            " xid xid8 NOT NULL DEFAULT pg_current_xact_id()",
            "CREATE INDEX IF NOT EXISTS jobs_by_xid ON jobs (xid)",
        ),
    ),
)


class SchemaTooNew(StoreError):
    """The database was migrated by a newer release than this one."""

    def __init__(self, database: str, version: int, ours: int) -> None:
        super().__init__(
            f"{database} has schema version {version}, newer than this release's {ours}; "
            "run a release that knows it (migrations never go back)"
        )
        self.database = database
        self.version = version
        self.ours = ours


def check_list(migrations: Sequence[Migration]) -> None:
    """Raise ``ValueError`` unless the versions run 1, 2, 3, ... in order."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must run 1, 2, 3, ...; got {versions}")


def pending(migrations: Sequence[Migration], database: str, version: int) -> list[Migration]:
    """The migrations a database at *version* still needs; ``SchemaTooNew`` if it is ahead."""
    ours = migrations[-1].version if migrations else 0
    if version > ours:
        raise SchemaTooNew(database, version, ours)
    return [m for m in migrations if m.version > version]


def applier() -> tuple[str, int]:
    """Who applies a migration: this host's name and this process's id."""
    return socket.gethostname(), os.getpid()
