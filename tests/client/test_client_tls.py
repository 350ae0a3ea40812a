"""TLS from the client library and the CLI, against a real TLS server on 127.0.0.1.

The CA and the server's certificate are made by each test (``certs.py``), so
trusting the right CA, the system's roots and the wrong CA are all exercised
for real, handshake included.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from armada_jobservice import (
    AsyncJobServiceClient,
    JobServiceClient,
    JobState,
    JobStatus,
    ServiceUnavailable,
    ServingStatus,
)
from armada_jobservice.cli.exit_codes import ExitCode

from .conftest import State, TlsServer

TOKEN = "s3cret"


def trusting(ca_pem: bytes) -> grpc.ChannelCredentials:
    """Channel credentials that trust only *ca_pem*."""
    return grpc.ssl_channel_credentials(root_certificates=ca_pem)


def test_blocking_client_over_tls(tls_server: TlsServer) -> None:
    """The blocking client trusting the server's CA gets answers over TLS."""
    tls_server.script.answers["j"] = [(State.FAILED, "OOMKilled")]
    with JobServiceClient(tls_server.target, tls=trusting(tls_server.pki.ca_pem)) as client:
        assert client.health() is ServingStatus.SERVING
        assert client.get_job_status("q", "s", "j") == JobStatus(JobState.FAILED, "OOMKilled")


async def test_async_client_over_tls(tls_server: TlsServer) -> None:
    """The asyncio client trusting the server's CA waits for a job over TLS."""
    tls_server.script.answers["j"] = [(State.RUNNING, ""), (State.SUCCEEDED, "")]
    async with AsyncJobServiceClient(
        tls_server.target, tls=trusting(tls_server.pki.ca_pem)
    ) as client:
        status = await client.wait_for_job("q", "s", "j", poll_interval_s=0.01)
    assert status == JobStatus(JobState.SUCCEEDED)


def test_token_travels_inside_tls(tls_server: TlsServer) -> None:
    """Call credentials ride on the TLS channel itself (not the loopback-only fallback)."""
    tls_server.script.required_token = TOKEN
    with JobServiceClient(
        tls_server.target,
        tls=trusting(tls_server.pki.ca_pem),
        call_credentials=grpc.access_token_call_credentials(TOKEN),
    ) as client:
        assert client.health() is ServingStatus.SERVING


def test_wrong_ca_is_service_unavailable_naming_the_handshake(tls_server: TlsServer) -> None:
    """A server certificate the trusted CA did not sign fails the handshake: ServiceUnavailable."""
    other_ca = tls_server.other_ca_file.read_bytes()
    with (
        JobServiceClient(tls_server.target, tls=trusting(other_ca), call_timeout_s=5) as client,
        pytest.raises(ServiceUnavailable) as info,
    ):
        client.health()
    assert "handshake" in info.value.details.lower()
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert tls_server.script.calls == 0


def cli(*argv: str, roots: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in its own process; *roots* replaces gRPC's system CAs there."""
    env = dict(os.environ)
    # gRPC reads the "system" roots from this file when it is set; pointing it
    # at the test's CA lets --tls succeed without touching the machine's store.
    env.pop("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", None)
    if roots is not None:
        env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(roots)
    return subprocess.run(
        [sys.executable, "-m", "armada_jobservice.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_cli_ca_cert_success(tls_server: TlsServer) -> None:
    """``status --ca-cert`` with the server's CA answers over TLS and exits 0."""
    tls_server.script.answers["j"] = [(State.SUCCEEDED, "")]
    proc = cli("status", "q", "s", "j", "--target", tls_server.target,
               "--ca-cert", str(tls_server.ca_file))  # fmt: skip
    assert (proc.returncode, proc.stdout.split()) == (ExitCode.OK, ["j", "SUCCEEDED"]), proc.stderr


def test_cli_tls_with_system_roots_success(tls_server: TlsServer) -> None:
    """``health --tls`` trusts gRPC's default roots; with the test CA among them it exits 0."""
    proc = cli("health", "--target", tls_server.target, "--tls", roots=tls_server.ca_file)
    assert (proc.returncode, proc.stdout.strip()) == (ExitCode.OK, "SERVING"), proc.stderr


def test_cli_tls_token_from_the_environment(
    tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --ca-cert, the token from $ARMADA_JOBSERVICE_TOKEN reaches the server over TLS."""
    tls_server.script.required_token = TOKEN
    monkeypatch.setenv("ARMADA_JOBSERVICE_TOKEN", TOKEN)
    proc = cli("health", "--target", tls_server.target, "--ca-cert", str(tls_server.ca_file))
    assert proc.returncode == ExitCode.OK, proc.stderr


@pytest.mark.parametrize("flag", ["--ca-cert", "--tls"])
def test_cli_wrong_ca_is_one_clear_error_and_exit_5(tls_server: TlsServer, flag: str) -> None:
    """A certificate the trusted CAs did not sign: exit 5, one line naming the failure and flag."""
    trust = ["--ca-cert", str(tls_server.other_ca_file)] if flag == "--ca-cert" else ["--tls"]
    proc = cli("health", "--target", tls_server.target, "--call-timeout", "5", *trust,
               roots=tls_server.other_ca_file)  # fmt: skip
    assert proc.returncode == ExitCode.SERVICE_ERROR, proc.stderr
    assert "Traceback" not in proc.stderr
    # gRPC's core may log the handshake itself first; ours is the last line.
    [ours] = [line for line in proc.stderr.splitlines() if line.startswith("armada-jobservice:")]
    assert ours == proc.stderr.splitlines()[-1]
    assert "CERTIFICATE_VERIFY_FAILED" in ours
    assert ("--ca-cert" if flag == "--ca-cert" else "system CA") in ours
    assert tls_server.script.calls == 0


def test_cli_tls_server_name_checks_that_name(tls_server: TlsServer) -> None:
    """``--tls-server-name`` checks the certificate for that name, not the target's host."""
    tls_server.script.answers["j"] = [(State.SUCCEEDED, "")]
    ca = ["--ca-cert", str(tls_server.ca_file)]
    named = cli("health", "--target", tls_server.target, *ca, "--tls-server-name", "localhost")
    assert (named.returncode, named.stdout.strip()) == (ExitCode.OK, "SERVING"), named.stderr
    calls = tls_server.script.calls
    other = cli("health", "--target", tls_server.target, "--call-timeout", "5", *ca,
                "--tls-server-name", "jobservice.example")  # fmt: skip
    assert other.returncode == ExitCode.SERVICE_ERROR, other.stderr
    ours = other.stderr.splitlines()[-1]
    assert ours.startswith("armada-jobservice:"), other.stderr
    assert "jobservice.example" in ours, ours
    assert "--tls-server-name" in ours, ours
    assert tls_server.script.calls == calls
