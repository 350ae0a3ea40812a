"""Mutual TLS: client certificates made in the test, over real TLS sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2

from armada_jobservice import AsyncJobServiceClient, RPCError
from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice.cli.exit_codes import ExitCode
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.config import Settings
from armada_jobservice.server.errors import ConfigError

from ..client.certs import ClientCert, Pki, issue_client_cert, make_pki
from ..fake_armada import FakeArmada

SCOPES = "airflow-a team-a-*\nspiffe://example.org/airflow-b team-b\nops\n"


@dataclass
class Mtls:
    """A CA, the service's TLS files, and a way to poll with a given client certificate."""

    pki: Pki
    dir: Path
    clients: list[AsyncJobServiceClient]

    def settings(self, **overrides: object) -> dict[str, object]:
        """The TLS settings of a service that asks callers for certificates."""
        return {
            "grpc_tls_cert_file": str(self.dir / "server.pem"),
            "grpc_tls_key_file": str(self.dir / "server.key"),
            "grpc_tls_client_ca_file": str(self.dir / "ca.pem"),
            **overrides,
        }

    def client(
        self, app: JobServiceApp, cert: ClientCert | None, token: str | None = None
    ) -> AsyncJobServiceClient:
        """The real client, over TLS, presenting *cert* (and *token*) if given."""
        creds = grpc.ssl_channel_credentials(
            self.pki.ca_pem,
            None if cert is None else cert.key_pem,
            None if cert is None else cert.cert_pem,
        )
        client = AsyncJobServiceClient(
            f"localhost:{app.grpc_port}",
            tls=creds,
            call_credentials=None if token is None else grpc.access_token_call_credentials(token),
            call_timeout_s=10,
        )
        self.clients.append(client)
        return client


@pytest.fixture
async def mtls(tmp_path: Path) -> AsyncIterator[Mtls]:
    """Fresh certificates on disk for a mutual-TLS service."""
    pki = make_pki()
    (tmp_path / "server.pem").write_bytes(pki.cert_pem)
    (tmp_path / "server.key").write_bytes(pki.key_pem)
    (tmp_path / "ca.pem").write_bytes(pki.ca_pem)
    fixture = Mtls(pki, tmp_path, [])
    yield fixture
    for client in fixture.clients:
        await client.close()


async def outcome(client: AsyncJobServiceClient, queue: str, job_set: str = "s") -> str:
    """The state's name, or the gRPC code's name of the refusal."""
    try:
        return (await client.get_job_status(queue, job_set, "j")).state.name
    except RPCError as exc:
        return exc.code


async def test_a_certificate_identity_maps_to_its_queues(
    serve: Callable[..., Awaitable[JobServiceApp]],
    mtls: Mtls,
    armada: FakeArmada,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The CN or a URI/DNS SAN picks the line; out of scope is denied; unlisted is unknown."""
    scopes = tmp_path / "cert-scopes"
    scopes.write_text(SCOPES)
    app = await serve(**mtls.settings(client_cert_scopes_file=str(scopes)))
    team_a = mtls.client(app, issue_client_cert(mtls.pki, "airflow-a"))
    team_b = mtls.client(
        app,
        issue_client_cert(mtls.pki, "b-host", uris=("spiffe://example.org/airflow-b",)),
    )
    by_dns = mtls.client(app, issue_client_cert(mtls.pki, "x", dns=("ops",)))
    unlisted = mtls.client(app, issue_client_cert(mtls.pki, "stranger"))
    assert await outcome(team_a, "team-a-1") == "JOB_ID_NOT_FOUND"
    assert await outcome(team_b, "team-b") == "JOB_ID_NOT_FOUND"
    assert await outcome(by_dns, "anything") == "JOB_ID_NOT_FOUND"
    with caplog.at_level(logging.INFO, logger="armada_jobservice.audit"):
        assert await outcome(team_a, "team-b", "secret") == "PERMISSION_DENIED"
        assert await outcome(team_b, "team-a-1", "secret") == "PERMISSION_DENIED"
        assert await outcome(unlisted, "team-a-1", "secret") == "UNAUTHENTICATED"
    assert ("team-b", "secret") not in app.subscriptions.job_sets
    assert armada.stream_requests("team-b", "secret") == []
    assert armada.stream_requests("team-a-1", "secret") == []
    audit = [r.getMessage() for r in caplog.records if r.name == "armada_jobservice.audit"]
    assert "identity=cert:airflow-a" in audit[0]
    assert "identity=cert:spiffe://example.org/airflow-b" in audit[1]
    # A change of the file moves the scopes without a restart.
    scopes.write_text(SCOPES + "stranger team-c\n")
    assert app.access is not None
    app.access.refresh()
    assert await outcome(unlisted, "team-c") == "JOB_ID_NOT_FOUND"


async def test_certificates_are_required_at_the_handshake(
    serve: Callable[..., Awaitable[JobServiceApp]], mtls: Mtls
) -> None:
    """Without a certificate, or with one another CA signed, no call gets through.

    The legacy Health rpc answers any caller holding a certificate the CA
    signed, without a scope.
    """
    app = await serve(**mtls.settings())
    foreign = issue_client_cert(make_pki("another CA"), "airflow-a")
    for cert in (None, foreign):
        # A bare channel: the client's retry policy would only repeat the refusal.
        creds = grpc.ssl_channel_credentials(
            mtls.pki.ca_pem,
            None if cert is None else cert.key_pem,
            None if cert is None else cert.cert_pem,
        )
        async with grpc.aio.secure_channel(f"localhost:{app.grpc_port}", creds) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await jobservice_pb2_grpc.JobServiceStub(channel).Health(
                    empty_pb2.Empty(), timeout=10
                )
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # Without a scopes file, any certificate the CA signed may ask about every queue.
    anyone = mtls.client(app, issue_client_cert(mtls.pki, "anyone"))
    assert await outcome(anyone, "whatever") == "JOB_ID_NOT_FOUND"
    cert = issue_client_cert(mtls.pki, "probe")
    creds = grpc.ssl_channel_credentials(mtls.pki.ca_pem, cert.key_pem, cert.cert_pem)
    async with grpc.aio.secure_channel(f"localhost:{app.grpc_port}", creds) as channel:
        health = await jobservice_pb2_grpc.JobServiceStub(channel).Health(empty_pb2.Empty())
        assert health.status == jobservice_pb2.HealthCheckResponse.SERVING


async def test_with_tokens_too_a_token_identifies_and_a_certificate_otherwise(
    serve: Callable[..., Awaitable[JobServiceApp]], mtls: Mtls, tmp_path: Path
) -> None:
    """A listed token wins over the certificate; an unknown token is not rescued by one."""
    scopes = tmp_path / "cert-scopes"
    scopes.write_text(SCOPES)
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-c team-c name=airflow-c\n")
    app = await serve(
        **mtls.settings(client_cert_scopes_file=str(scopes), client_tokens_file=str(tokens))
    )
    cert = issue_client_cert(mtls.pki, "airflow-a")
    assert await outcome(mtls.client(app, cert), "team-a-1") == "JOB_ID_NOT_FOUND"
    with_token = mtls.client(app, cert, token="tok-c")
    assert await outcome(with_token, "team-c") == "JOB_ID_NOT_FOUND"
    assert await outcome(with_token, "team-a-1") == "PERMISSION_DENIED"
    assert await outcome(mtls.client(app, cert, token="wrong"), "team-a-1") == "UNAUTHENTICATED"


def test_client_certificates_need_tls_and_scopes_need_a_ca(
    make_settings: Callable[..., Settings], mtls: Mtls
) -> None:
    """A client CA without a server certificate, or scopes without a CA, are bad settings."""
    with pytest.raises(ConfigError) as info:
        make_settings(grpc_tls_client_ca_file=str(mtls.dir / "ca.pem"))
    assert info.value.setting == "grpc_tls_client_ca_file"
    with pytest.raises(ConfigError) as info:
        make_settings(client_cert_scopes_file=str(mtls.dir / "ca.pem"))
    assert info.value.setting == "client_cert_scopes_file"


async def test_the_cli_presents_a_client_certificate(
    serve: Callable[..., Awaitable[JobServiceApp]], mtls: Mtls
) -> None:
    """``health`` with --client-cert/--client-key passes the handshake; without, it cannot."""
    app = await serve(**mtls.settings())
    cert = issue_client_cert(mtls.pki, "probe")
    (mtls.dir / "probe.pem").write_bytes(cert.cert_pem)
    (mtls.dir / "probe.key").write_bytes(cert.key_pem)
    base = ["health", "--target", f"localhost:{app.grpc_port}", "--ca-cert"]
    base += [str(mtls.dir / "ca.pem"), "--output", "json", "--call-timeout", "5"]
    with_cert = [*base, "--client-cert", str(mtls.dir / "probe.pem")]
    with_cert += ["--client-key", str(mtls.dir / "probe.key")]
    code, out, _ = await cli(*with_cert)
    assert (code, json.loads(out)) == (0, {"status": "SERVING"})
    code, _, err = await cli(*base)
    assert code == ExitCode.SERVICE_ERROR
    assert "UNAVAILABLE" in err


async def cli(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in a process of its own; return exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "armada_jobservice.cli",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_new_client_ca_applies_to_new_connections_without_a_restart(
    serve: Callable[..., Awaitable[JobServiceApp]], mtls: Mtls
) -> None:
    """Adding a CA to the bundle lets its certificates in; a bundle without one is ignored."""
    app = await serve(**mtls.settings())
    assert app.tls is not None
    second = make_pki("the next CA")
    newcomer = issue_client_cert(second, "newcomer")

    async def health_code(cert: ClientCert) -> grpc.StatusCode:
        creds = grpc.ssl_channel_credentials(mtls.pki.ca_pem, cert.key_pem, cert.cert_pem)
        async with grpc.aio.secure_channel(f"localhost:{app.grpc_port}", creds) as channel:
            try:
                await jobservice_pb2_grpc.JobServiceStub(channel).Health(
                    empty_pb2.Empty(), timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    assert await health_code(newcomer) == grpc.StatusCode.UNAVAILABLE
    ca_file = mtls.dir / "ca.pem"
    ca_file.write_bytes(mtls.pki.ca_pem + second.ca_pem)
    app.tls.refresh()
    assert await health_code(newcomer) == grpc.StatusCode.OK
    assert await health_code(issue_client_cert(mtls.pki, "old-timer")) == grpc.StatusCode.OK
    # A bundle without a certificate (a half-written file) changes nothing.
    ca_file.write_text("not a certificate\n")
    app.tls.refresh()
    assert await health_code(newcomer) == grpc.StatusCode.OK
    # Retiring the first CA shuts its certificates out.
    ca_file.write_bytes(second.ca_pem)
    app.tls.refresh()
    assert (
        await health_code(issue_client_cert(mtls.pki, "old-timer")) == grpc.StatusCode.UNAVAILABLE
    )
    assert await health_code(newcomer) == grpc.StatusCode.OK
