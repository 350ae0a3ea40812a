"""Storage backends behind one Protocol, chosen by the database URL."""

from __future__ import annotations

from armada_jobservice.server.errors import ConfigError
from armada_jobservice.server.store.base import JobSetWrite, Store, StoredJobSet

__all__ = ["JobSetWrite", "Store", "StoredJobSet", "open_store"]


def open_store(url: str) -> Store:
    """Build (not yet open) the store a ``sqlite://`` or ``postgresql://`` URL names."""
    if url.startswith("sqlite://"):
        from armada_jobservice.server.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        from armada_jobservice.server.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigError("database", f"unsupported database URL {url!r}")
