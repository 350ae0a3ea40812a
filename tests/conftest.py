"""Fixtures shared by the job service's tests: a fake Armada, the real service, a real client."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.config import Settings

from .fake_armada import FakeArmada

State = jobservice_pb2.JobServiceResponse


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
async def service(make_settings: Callable[..., Settings]) -> AsyncIterator[JobServiceApp]:
    """The real job service with default test settings."""
    async with JobServiceApp(make_settings()) as app:
        yield app


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


class Client:
    """A thin real gRPC client of the job service for tests."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = jobservice_pb2_grpc.JobServiceStub(self.channel)

    async def status(self, queue: str, job_set_id: str, job_id: str) -> Any:
        """One GetJobStatus call."""
        return await self.stub.GetJobStatus(
            jobservice_pb2.JobServiceRequest(queue=queue, job_set_id=job_set_id, job_id=job_id),
            timeout=10,
        )

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()


@pytest.fixture
async def client(service: JobServiceApp) -> AsyncIterator[Client]:
    """A client connected to the ``service`` fixture."""
    c = Client(service.grpc_port)
    yield c
    await c.close()
