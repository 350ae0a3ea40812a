"""The service's own callers: bearer-token authentication and TLS on the gRPC API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.config import Settings
from armada_jobservice.server.errors import ConfigError

State = jobservice_pb2.JobServiceResponse
REQUEST = jobservice_pb2.JobServiceRequest(queue="q", job_set_id="s", job_id="j")


async def call(port: int, token: str | None) -> grpc.StatusCode:
    """The status code of one GetJobStatus call with an optional bearer token."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = jobservice_pb2_grpc.JobServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
        try:
            reply = await stub.GetJobStatus(REQUEST, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        assert reply.state == State.JOB_ID_NOT_FOUND
        return grpc.StatusCode.OK


async def test_tokens_file_guards_get_job_status(
    serve: Callable[..., Awaitable[JobServiceApp]], tmp_path: Path
) -> None:
    """Only listed tokens may poll; the list is re-read when the file changes."""
    tokens = tmp_path / "tokens"
    tokens.write_text("# airflow\nalpha-token\n\nbeta-token\n")
    app = await serve(client_tokens_file=str(tokens))
    assert await call(app.grpc_port, None) == grpc.StatusCode.UNAUTHENTICATED
    assert await call(app.grpc_port, "wrong") == grpc.StatusCode.UNAUTHENTICATED
    assert await call(app.grpc_port, "alpha-token") == grpc.StatusCode.OK
    assert await call(app.grpc_port, "beta-token") == grpc.StatusCode.OK
    tokens.write_text("gamma-token-new\n")
    await asyncio.sleep(1.1)  # the file is checked for changes at most once a second
    assert await call(app.grpc_port, "alpha-token") == grpc.StatusCode.UNAUTHENTICATED
    assert await call(app.grpc_port, "gamma-token-new") == grpc.StatusCode.OK
    # Probes need no token.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        legacy = await jobservice_pb2_grpc.JobServiceStub(channel).Health(empty_pb2.Empty())
        assert legacy.status == jobservice_pb2.HealthCheckResponse.SERVING


async def test_empty_tokens_file_is_a_bad_setting(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A tokens file without a token stops start-up naming the setting."""
    tokens = tmp_path / "tokens"
    tokens.write_text("# nothing yet\n")
    with pytest.raises(ConfigError) as info:
        async with JobServiceApp(make_settings(client_tokens_file=str(tokens))):
            pass
    assert info.value.setting == "client_tokens_file"


async def test_serves_tls(
    serve: Callable[..., Awaitable[JobServiceApp]], certificate: tuple[bytes, bytes, Path]
) -> None:
    """With a certificate and key the API is served over TLS."""
    _key, cert, cert_path = certificate
    key_path = cert_path.with_name("key.pem")
    app = await serve(grpc_tls_cert_file=str(cert_path), grpc_tls_key_file=str(key_path))
    creds = grpc.ssl_channel_credentials(root_certificates=cert)
    async with grpc.aio.secure_channel(f"127.0.0.1:{app.grpc_port}", creds) as channel:
        reply = await jobservice_pb2_grpc.JobServiceStub(channel).GetJobStatus(REQUEST, timeout=10)
        assert reply.state == State.JOB_ID_NOT_FOUND
    assert await call(app.grpc_port, None) == grpc.StatusCode.UNAVAILABLE
