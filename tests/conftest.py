"""Fixtures shared by the job service's tests: a fake Armada, the real service, a real client."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from armada_jobservice import AsyncJobServiceClient
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.config import Settings

from .fake_armada import FakeArmada


@pytest.fixture
async def armada() -> AsyncIterator[FakeArmada]:
    """A fake Armada event API on a free port."""
    fake = FakeArmada()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def make_settings(tmp_path: Path, armada: FakeArmada) -> Callable[..., Settings]:
    """Settings for a service on a free port, pointed at the fake, with a fresh SQLite file."""

    def make(**overrides: Any) -> Settings:
        base = Settings(
            grpc_host="127.0.0.1",
            grpc_port=0,
            armada_url=f"127.0.0.1:{armada.port}",
            database=f"sqlite:///{tmp_path / 'jobservice.db'}",
            flush_interval_s=0.05,
            reconnect_max_backoff_s=0.2,
        )
        return dataclasses.replace(base, **overrides)

    return make


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[bytes, bytes, Path]:
    """A self-signed certificate for localhost and 127.0.0.1: (key, cert, cert's path)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key.read_bytes(), cert.read_bytes(), cert


PG_URL = os.environ.get("JOBSERVICE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema of the test PostgreSQL database."""
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def target_of(server: JobServiceApp | int) -> str:
    """The address of a service given as an app or as a port on 127.0.0.1."""
    port = server if isinstance(server, int) else server.grpc_port
    return f"127.0.0.1:{port}"


@pytest.fixture
async def serve(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Awaitable[JobServiceApp]]]:
    """Start a job service with given settings (or overrides of the defaults); stopped at teardown.

    ``await serve(flush_interval_s=3600)`` or ``await serve(settings)``; every
    app started through it is stopped when the test ends, passed or failed.
    """
    # An exit stack stops every app even when stopping an earlier one fails.
    async with contextlib.AsyncExitStack() as stack:

        async def start(settings: Settings | None = None, **overrides: Any) -> JobServiceApp:
            app = JobServiceApp(settings if settings is not None else make_settings(**overrides))
            await app.start()
            # stop() is idempotent: a test may have stopped the app already.
            stack.push_async_callback(app.stop)
            return app

        yield start


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[JobServiceApp | int], AsyncJobServiceClient]]:
    """Open a real client to a service (app or port); every client is closed at teardown."""
    clients: list[AsyncJobServiceClient] = []

    def open_client(server: JobServiceApp | int) -> AsyncJobServiceClient:
        client = AsyncJobServiceClient(target_of(server), call_timeout_s=10)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()


@pytest.fixture
async def open_channel() -> AsyncIterator[Callable[[JobServiceApp | int], grpc.aio.Channel]]:
    """Open a plain gRPC channel to a service, for rpcs the client library does not make."""
    channels: list[grpc.aio.Channel] = []

    def open_one(server: JobServiceApp | int) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(target_of(server))
        channels.append(channel)
        return channel

    yield open_one
    for channel in channels:
        await channel.close()


@pytest.fixture
async def service(serve: Callable[..., Awaitable[JobServiceApp]]) -> JobServiceApp:
    """The real job service with default test settings."""
    return await serve()


@pytest.fixture
def client(
    service: JobServiceApp, connect: Callable[[JobServiceApp | int], AsyncJobServiceClient]
) -> AsyncJobServiceClient:
    """A real client connected to the ``service`` fixture."""
    return connect(service)
