"""The service's own callers over real sockets: tokens, scopes, refusals, audit, TLS."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import generate_latest

from armada_jobservice import AsyncJobServiceClient, RPCError
from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice._scopes import token_identity
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.config import Settings
from armada_jobservice.server.errors import ConfigError

from ..fake_armada import FakeArmada
from ..helpers import eventually

State = jobservice_pb2.JobServiceResponse
REQUEST = jobservice_pb2.JobServiceRequest(queue="q", job_set_id="s", job_id="j")
TOKENS = "# airflow\ntok-a team-a-*,shared name=airflow-a\ntok-b team-b\ntok-all\n"


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


class Poller:
    """Polls with the real client as a given token: the state's name, or the error's code."""

    def __init__(self) -> None:
        self.clients: dict[str, AsyncJobServiceClient] = {}
        #: The status details of every refusal, in order.
        self.details: list[str] = []

    async def __call__(
        self, port: int, token: str, queue: str, job_set: str = "s", job: str = "j"
    ) -> str:
        if token not in self.clients:
            self.clients[token] = AsyncJobServiceClient(
                f"127.0.0.1:{port}",
                call_credentials=grpc.access_token_call_credentials(token),
                call_timeout_s=10,
            )
        try:
            status = await self.clients[token].get_job_status(queue, job_set, job)
        except RPCError as exc:
            self.details.append(exc.details)
            return exc.code
        return status.state.name


@pytest.fixture
async def poll() -> AsyncIterator[Poller]:
    """A ``Poller`` whose clients are closed at teardown."""
    poller = Poller()
    yield poller
    for client in poller.clients.values():
        await client.close()


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
    assert app.access is not None
    app.access.refresh()  # rather than waiting up to a second for the next look
    assert await call(app.grpc_port, "alpha-token") == grpc.StatusCode.UNAUTHENTICATED
    assert await call(app.grpc_port, "gamma-token-new") == grpc.StatusCode.OK
    # Probes need no token.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        legacy = await jobservice_pb2_grpc.JobServiceStub(channel).Health(empty_pb2.Empty())
        assert legacy.status == jobservice_pb2.HealthCheckResponse.SERVING
        # So does reflection.
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        names = set()
        async for answer in reflection.ServerReflectionInfo(iter([ask]), timeout=10):
            names |= {s.name for s in answer.list_services_response.service}
        assert "jobservice.JobService" in names


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


async def test_a_malformed_tokens_file_stops_start_up_naming_file_and_line(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A bad line at start-up is a bad setting whose text names the file and the line."""
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-a team-a\ntok-b team-b extra\n")
    with pytest.raises(ConfigError) as info:
        async with JobServiceApp(make_settings(client_tokens_file=str(tokens))):
            pass
    assert info.value.setting == "client_tokens_file"
    assert str(tokens) in info.value.problem
    assert "line 2" in info.value.problem
    assert "tok-b" not in str(info.value)


async def test_a_queue_outside_the_scope_is_denied_alike_and_opens_no_stream(
    serve: Callable[..., Awaitable[JobServiceApp]],
    armada: FakeArmada,
    tmp_path: Path,
    poll: Poller,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PERMISSION_DENIED, the same text for a job set that exists and one that does not.

    Neither opens a stream; the refusals are audited (identity, queue, reason,
    never the token) and counted by reason.
    """
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    app = await serve(client_tokens_file=str(tokens))
    port = app.grpc_port
    armada.publish("team-b", "exists", "submitted", "j")
    assert await poll(port, "tok-a", "team-a-1") == "JOB_ID_NOT_FOUND"
    assert await poll(port, "tok-a", "shared") == "JOB_ID_NOT_FOUND"
    assert await poll(port, "tok-all", "anything") == "JOB_ID_NOT_FOUND"
    # Team b's own caller sees its job: the job set exists, and is cached here.
    await eventually(lambda: poll(port, "tok-b", "team-b", "exists"), lambda s: s == "SUBMITTED")
    with caplog.at_level(logging.INFO, logger="armada_jobservice.audit"):
        assert await poll(port, "tok-a", "team-b", "exists") == "PERMISSION_DENIED"
        assert await poll(port, "tok-a", "team-b", "missing") == "PERMISSION_DENIED"
        assert await poll(port, "tok-b", "team-a-1", "missing") == "PERMISSION_DENIED"
        assert await poll(port, "nobody", "team-b", "missing") == "UNAUTHENTICATED"
    # A long job id sends the request down the careful validation path: the
    # scope is checked there too.
    long_id = "j" * 300
    assert await poll(port, "tok-a", "team-b", "missing", long_id) == "PERMISSION_DENIED"
    assert await poll(port, "tok-a", "team-a-1", "s", long_id) == "JOB_ID_NOT_FOUND"
    details = poll.details
    assert (
        details[0] == details[1] == "permission denied: airflow-a may not ask about queue 'team-b'"
    )
    # Subscribing is synchronous in the poll: a refused one left no job set behind.
    assert ("team-b", "missing") not in app.subscriptions.job_sets
    assert ("team-a-1", "missing") not in app.subscriptions.job_sets
    assert armada.stream_requests("team-b", "missing") == []
    assert armada.stream_requests("team-a-1", "missing") == []
    audit = [r.getMessage() for r in caplog.records if r.name == "armada_jobservice.audit"]
    assert len(audit) == 5
    assert "reason=out_of_scope" in audit[4]
    assert "identity=airflow-a" in audit[0]
    assert "queue='team-b'" in audit[0]
    assert "reason=out_of_scope" in audit[0]
    assert "method=/jobservice.JobService/GetJobStatus" in audit[0]
    assert f"identity={token_identity('tok-b')}" in audit[2]
    assert "reason=unauthenticated" in audit[3]
    assert not any(t in line for line in audit for t in ("tok-a", "tok-b", "nobody"))
    scrape = generate_latest(app.metrics.registry).decode()
    assert 'armada_jobservice_refused_calls_total{reason="out_of_scope"} 4.0' in scrape
    assert 'armada_jobservice_refused_calls_total{reason="unauthenticated"} 1.0' in scrape
    assert 'armada_jobservice_refused_calls_total{reason="subscription_rate"} 0.0' in scrape


async def test_scopes_change_with_the_file_and_a_bad_rewrite_keeps_them(
    serve: Callable[..., Awaitable[JobServiceApp]],
    tmp_path: Path,
    poll: Poller,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rewritten file moves scopes without a restart; a malformed one changes nothing."""
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    app = await serve(client_tokens_file=str(tokens))
    assert app.access is not None
    assert await poll(app.grpc_port, "tok-b", "team-c") == "PERMISSION_DENIED"
    tokens.write_text("tok-b team-b,team-c\n")
    app.access.refresh()
    assert await poll(app.grpc_port, "tok-b", "team-c") == "JOB_ID_NOT_FOUND"
    assert await poll(app.grpc_port, "tok-a", "team-a-1") == "UNAUTHENTICATED"
    tokens.write_text("tok-b team-b,team-c\ntok-a team-a-* surplus-column\n")
    with caplog.at_level(logging.WARNING):
        app.access.refresh()
        app.access.refresh()
    assert await poll(app.grpc_port, "tok-b", "team-c") == "JOB_ID_NOT_FOUND"
    warnings = [r.getMessage() for r in caplog.records if "cannot use" in r.getMessage()]
    assert len(warnings) == 1
    assert str(tokens) in warnings[0]
    assert "line 2" in warnings[0]


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
