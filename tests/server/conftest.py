"""Fixtures of the server's tests: databases that fail for real (see ``outages``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from armada_jobservice.server.app import JobServiceApp

from .outages import (
    DatabaseOutage,
    MountNotPermitted,
    PostgresDown,
    PostgresProxy,
    SqliteDiskFull,
    TinyDisk,
)


@pytest.fixture
async def pg_proxy(pg_url: str) -> AsyncIterator[PostgresProxy]:
    """A proxy in front of a fresh PostgreSQL schema, which the test can cut and heal."""
    proxy = PostgresProxy(pg_url)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[TinyDisk]:
    """A freshly mounted 512 KiB tmpfs; skipped where this process may not mount one."""
    disk = TinyDisk(tmp_path / "tiny-disk")
    try:
        disk.mount()
    except MountNotPermitted as exc:
        pytest.skip(f"a full disk needs a tmpfs of its own: {exc}")
    yield disk
    disk.unmount()


@pytest.fixture(params=["postgres", "sqlite"])
def database_outage(request: pytest.FixtureRequest) -> DatabaseOutage:
    """A database of each backend, with a real way to make it fail and recover.

    PostgreSQL: its connections are cut by a proxy. SQLite: its disk fills up.
    Tests about one backend choose it with ``indirect`` parametrisation.
    """
    if request.param == "postgres":
        proxy: PostgresProxy = request.getfixturevalue("pg_proxy")
        return PostgresDown(proxy)
    disk: TinyDisk = request.getfixturevalue("tiny_disk")
    return SqliteDiskFull(disk)


@pytest.fixture
async def outage_service(
    database_outage: DatabaseOutage, serve: Callable[..., Awaitable[JobServiceApp]]
) -> JobServiceApp:
    """The job service on the ``database_outage`` database.

    Asking for the outage before ``serve`` makes pytest stop the service
    before it takes the database (proxy or disk) away for good.
    """
    return await serve(database=database_outage.database_url)
