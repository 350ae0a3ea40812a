"""A scriptable job-service servicer on a real port, for the client library's own tests.

The ``stack`` fixture runs the real job service in front of the Armada
simulator, for end-to-end tests; the scripted servicer exists to produce
the answers a real service produces only rarely (UNAVAILABLE bursts, unknown
enum numbers, slow answers) on demand.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.config import Settings
from armada_jobservice.sim import ArmadaSimulator

from .certs import Pki, make_pki

State = jobservice_pb2.JobServiceResponse.State


@dataclass
class Script:
    """What the servicer answers: per-job state sequences, errors to raise first, health."""

    # job_id -> answers in order; the last one repeats.
    answers: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    # Status codes to abort with, one per call, before answering normally.
    abort_first: list[grpc.StatusCode] = field(default_factory=list)
    health: int = jobservice_pb2.HealthCheckResponse.SERVING
    # Set to make GetJobStatus block until released (for deadline tests).
    hold: threading.Event | None = None
    required_token: str | None = None
    calls: int = 0
    requests: list[jobservice_pb2.JobServiceRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ScriptedServicer(jobservice_pb2_grpc.JobServiceServicer):
    """Answer from a ``Script`` and count every call, failed attempts included."""

    def __init__(self, script: Script) -> None:
        self.script = script

    def _enter(self, context: grpc.ServicerContext) -> None:
        script = self.script
        with script.lock:
            script.calls += 1
            code = script.abort_first.pop(0) if script.abort_first else None
        if script.required_token is not None:
            metadata = dict(context.invocation_metadata())
            if metadata.get("authorization") != f"Bearer {script.required_token}":
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
        if code is not None:
            context.abort(code, f"scripted {code.name}")

    def GetJobStatus(
        self, request: jobservice_pb2.JobServiceRequest, context: grpc.ServicerContext
    ) -> jobservice_pb2.JobServiceResponse:
        """Answer the job's next scripted state."""
        self._enter(context)
        script = self.script
        if script.hold is not None:
            script.hold.wait(timeout=30)
        with script.lock:
            script.requests.append(request)
            answers = script.answers.get(request.job_id, [(State.JOB_ID_NOT_FOUND, "")])
            state, error = answers.pop(0) if len(answers) > 1 else answers[0]
        return jobservice_pb2.JobServiceResponse(state=state, error=error)  # type: ignore[arg-type]

    def Health(
        self, request: object, context: grpc.ServicerContext
    ) -> jobservice_pb2.HealthCheckResponse:
        """Answer the scripted serving status."""
        self._enter(context)
        return jobservice_pb2.HealthCheckResponse(status=self.script.health)  # type: ignore[arg-type]


@dataclass
class Server:
    """A running scripted server: its target and script."""

    target: str
    script: Script


@pytest.fixture
def server() -> Iterator[Server]:
    """Serve a fresh ``Script`` on 127.0.0.1, port 0, for one test."""
    script = Script()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    jobservice_pb2_grpc.add_JobServiceServicer_to_server(ScriptedServicer(script), grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    try:
        yield Server(target=f"127.0.0.1:{port}", script=script)
    finally:
        if script.hold is not None:
            script.hold.set()
        grpc_server.stop(grace=None)


@pytest.fixture
def dead_target() -> str:
    """Return the address of a port that was just bound and released, so nothing listens."""
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    grpc_server.stop(grace=None)
    return f"127.0.0.1:{port}"


@dataclass
class Stack:
    """A simulator and a real job service in front of it."""

    sim: ArmadaSimulator
    target: str
    queue: str = "q"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """Start the Armada simulator and the job service on port 0, for one test."""
    async with ArmadaSimulator(queues=["q"], time_scale=0.01, seed=1) as sim:
        settings = Settings(
            grpc_host="127.0.0.1",
            grpc_port=0,
            armada_url=sim.address,
            database=f"sqlite:///{tmp_path}/js.db",
            metrics_port=None,
        )
        async with JobServiceApp(settings) as app:
            yield Stack(sim=sim, target=f"127.0.0.1:{app.grpc_port}")


@dataclass
class TlsServer:
    """A scripted server behind TLS, and the PEM files of its CA and of a CA it does not use."""

    target: str
    script: Script
    pki: Pki
    ca_file: Path
    other_ca_file: Path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    """Serve a fresh ``Script`` over TLS on 127.0.0.1, port 0, with a CA made for this test."""
    pki, other = make_pki(), make_pki("a CA the server does not use")
    ca_file, other_ca_file = tmp_path / "ca.pem", tmp_path / "other-ca.pem"
    ca_file.write_bytes(pki.ca_pem)
    other_ca_file.write_bytes(other.ca_pem)
    script = Script()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    jobservice_pb2_grpc.add_JobServiceServicer_to_server(ScriptedServicer(script), grpc_server)
    credentials = grpc.ssl_server_credentials([(pki.key_pem, pki.cert_pem)])
    port = grpc_server.add_secure_port("127.0.0.1:0", credentials)
    grpc_server.start()
    try:
        yield TlsServer(f"127.0.0.1:{port}", script, pki, ca_file, other_ca_file)
    finally:
        grpc_server.stop(grace=None)
