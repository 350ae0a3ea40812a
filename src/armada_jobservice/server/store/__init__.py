"""Storage backends behind one Protocol, chosen by the database URL."""

from __future__ import annotations

from collections.abc import Sequence

from armada_jobservice.server.errors import ConfigError
from armada_jobservice.server.store.base import JobSetWrite, Store, StoredJobSet
from armada_jobservice.server.store.migrations import MIGRATIONS, Migration

__all__ = ["JobSetWrite", "Store", "StoredJobSet", "open_store"]


def open_store(url: str, migrations: Sequence[Migration] = MIGRATIONS) -> Store:
    """Build (not yet open) the store a ``sqlite://`` or ``postgresql://`` URL names.

    *migrations*: the schema it brings the database to at ``open()`` (tests
    pass a longer list to exercise an upgrade).
    """
    if url.startswith("sqlite://"):
        from armada_jobservice.server.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, migrations)
    if url.startswith(("postgresql://", "postgres://")):
        from armada_jobservice.server.store.postgres import PostgresStore

        return PostgresStore(url, migrations)
    raise ConfigError("database", f"unsupported database URL {url!r}")
