"""``access_check: armada`` against the simulator with per-caller permissions."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.armada_check import PROBE_JOB_SET
from armada_jobservice.server.config import Settings
from armada_jobservice.server.refusals import Reason
from armada_jobservice.sim import ArmadaSimulator
from armada_jobservice.sim import parse_permissions as parse_token_scopes

from ..helpers import eventually

PERMISSIONS = "svc-token *\nalice-token team-a\nbob-token team-a,team-b\n"
CACHE_S = 60.0


@pytest.fixture
async def sim() -> AsyncIterator[ArmadaSimulator]:
    """The simulator with two queues, where each token may use only its queues."""
    async with ArmadaSimulator(
        queues=["team-a", "team-b"], time_scale=0.0, permissions=parse_token_scopes(PERMISSIONS)
    ) as simulator:
        yield simulator


@pytest.fixture
async def app(sim: ArmadaSimulator, tmp_path: Path) -> AsyncIterator[JobServiceApp]:
    """The job service deciding with the simulator, on a clock the test steps."""
    settings = Settings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        armada_url=sim.address,
        armada_token="svc-token",
        database=f"sqlite:///{tmp_path / 'jobservice.db'}",
        access_check="armada",
        access_cache_s=CACHE_S,
    )
    service = JobServiceApp(settings)
    assert service.armada_check is not None
    service.armada_check.clock = Clock()
    await service.start()
    yield service
    await service.stop()


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Ask = Callable[..., Awaitable[str]]


@pytest.fixture
async def ask(app: JobServiceApp) -> AsyncIterator[Ask]:
    """One GetJobStatus call as a token, without the client's retries: state or code name."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}")
    stub = jobservice_pb2_grpc.JobServiceStub(channel)

    async def one(
        token: str | None, queue: str, job_set: str = "s", timeout_s: float = 10.0
    ) -> str:
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        request = jobservice_pb2.JobServiceRequest(queue=queue, job_set_id=job_set, job_id="j")
        try:
            reply = await stub.GetJobStatus(request, metadata=metadata, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
        return str(jobservice_pb2.JobServiceResponse.State.Name(reply.state))

    yield one
    await channel.close()


def checks(sim: ArmadaSimulator, queue: str) -> int:
    """How many access checks the service made with Armada for *queue*."""
    return sum(1 for r in sim.stream_requests if r.job_set_id == PROBE_JOB_SET and r.queue == queue)


def clock_of(app: JobServiceApp) -> Clock:
    """The stepped clock of the service's access check."""
    assert app.armada_check is not None
    clock = app.armada_check.clock
    assert isinstance(clock, Clock)
    return clock


async def test_armada_decides_per_caller_and_queue_once_per_cache_period(
    app: JobServiceApp, sim: ArmadaSimulator, ask: Ask
) -> None:
    """Allowed and denied verdicts are both kept; a denied queue never gets a stream."""
    assert await ask("alice-token", "team-a") == "JOB_ID_NOT_FOUND"
    assert await ask("alice-token", "team-a", "other") == "JOB_ID_NOT_FOUND"
    assert checks(sim, "team-a") == 1
    assert await ask("alice-token", "team-b", "secret") == "PERMISSION_DENIED"
    assert await ask("alice-token", "team-b", "secret") == "PERMISSION_DENIED"
    assert checks(sim, "team-b") == 1
    # A refused poll subscribes to nothing (subscribing is synchronous in the poll).
    assert ("team-b", "secret") not in app.subscriptions.job_sets
    assert await ask("bob-token", "team-b", "secret") == "JOB_ID_NOT_FOUND"
    assert checks(sim, "team-b") == 2
    # Only Bob's poll made the service watch team-b's job set (with its own token).
    watched = await eventually(lambda: [r for r in sim.stream_requests if r.job_set_id == "secret"])
    assert len(watched) == 1
    assert await ask("mallory-token", "team-a") == "UNAUTHENTICATED"
    assert await ask(None, "team-a") == "UNAUTHENTICATED"
    assert app.refusals.counts[Reason.ARMADA_DENIED] == 2
    assert app.refusals.counts[Reason.UNAUTHENTICATED] == 2


async def test_a_verdict_expires_after_access_cache_s(
    app: JobServiceApp, sim: ArmadaSimulator, ask: Ask
) -> None:
    """Armada's change of mind is seen once the kept verdict expires, not before."""
    assert await ask("alice-token", "team-b") == "PERMISSION_DENIED"
    sim.permissions = parse_token_scopes(PERMISSIONS.replace("alice-token team-a", "alice-token *"))
    clock_of(app).now += CACHE_S - 0.1
    assert await ask("alice-token", "team-b") == "PERMISSION_DENIED"
    clock_of(app).now += 0.1
    assert await ask("alice-token", "team-b") == "JOB_ID_NOT_FOUND"
    assert checks(sim, "team-b") == 2


async def test_armada_unreachable_answers_unavailable_and_is_not_kept(
    app: JobServiceApp, sim: ArmadaSimulator, ask: Ask
) -> None:
    """An outage is UNAVAILABLE (the caller retries); the next poll asks Armada again."""
    sim.faults.unavailable_for(3600, break_streams=False)
    assert await ask("alice-token", "team-a") == "UNAVAILABLE"
    sim.faults.available()
    assert await ask("alice-token", "team-a") == "JOB_ID_NOT_FOUND"
    assert app.refusals.counts[Reason.ARMADA_UNAVAILABLE] == 1


async def test_the_simulator_without_permissions_lets_everyone_in(
    make_settings: Callable[..., Settings],
) -> None:
    """Without a permissions file the simulator needs no token, as before."""
    async with ArmadaSimulator(queues=["q"], time_scale=0.0) as plain:
        settings = dataclasses.replace(
            make_settings(), armada_url=plain.address, access_check="armada"
        )
        service = JobServiceApp(settings)
        async with (
            service,
            grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel,
        ):
            stub = jobservice_pb2_grpc.JobServiceStub(channel)
            request = jobservice_pb2.JobServiceRequest(queue="q", job_set_id="s", job_id="j")
            reply = await stub.GetJobStatus(
                request, metadata=(("authorization", "Bearer any"),), timeout=10
            )
            assert reply.state == jobservice_pb2.JobServiceResponse.JOB_ID_NOT_FOUND


async def test_concurrent_first_polls_share_one_check(
    app: JobServiceApp, sim: ArmadaSimulator, ask: Ask
) -> None:
    """Many first polls of one (token, queue) at once make one call to Armada."""
    answers = await asyncio.gather(*(ask("bob-token", "team-b", f"s{n}") for n in range(8)))
    assert answers == ["JOB_ID_NOT_FOUND"] * 8
    assert checks(sim, "team-b") == 1


async def test_with_a_tokens_file_the_local_scope_is_checked_first(
    sim: ArmadaSimulator, tmp_path: Path
) -> None:
    """Unlisted tokens and queues outside the local patterns never reach Armada."""
    tokens = tmp_path / "tokens"
    tokens.write_text("alice-token team-* name=alice\nbob-token team-a\n")
    settings = Settings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        armada_url=sim.address,
        armada_token="svc-token",
        database=f"sqlite:///{tmp_path / 'jobservice.db'}",
        access_check="armada",
        client_tokens_file=str(tokens),
    )
    async with JobServiceApp(settings) as service:
        port = service.grpc_port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = jobservice_pb2_grpc.JobServiceStub(channel)

            async def code(token: str, queue: str) -> str:
                request = jobservice_pb2.JobServiceRequest(queue=queue, job_set_id="s", job_id="j")
                metadata = (("authorization", f"Bearer {token}"),)
                try:
                    await stub.GetJobStatus(request, metadata=metadata, timeout=10)
                except grpc.aio.AioRpcError as exc:
                    return str(exc.code().name)
                return "OK"

            assert await code("alice-token", "team-a") == "OK"
            assert await code("alice-token", "team-b") == "PERMISSION_DENIED"  # Armada's no
            assert await code("bob-token", "team-b") == "PERMISSION_DENIED"  # the file's no
            assert await code("svc-token", "team-a") == "UNAUTHENTICATED"  # not listed here
        assert service.refusals.counts[Reason.OUT_OF_SCOPE] == 1
        assert service.refusals.counts[Reason.ARMADA_DENIED] == 1
    # Armada was asked about Alice's two queues only.
    assert sorted(r.queue for r in sim.stream_requests if r.job_set_id == PROBE_JOB_SET) == [
        "team-a",
        "team-b",
    ]


async def test_a_caller_giving_up_does_not_end_the_check_others_wait_on(
    app: JobServiceApp, sim: ArmadaSimulator, ask: Ask
) -> None:
    """The first caller's deadline passes mid-check; the second still gets Armada's verdict."""
    sim.faults.hold_streams()
    first = asyncio.create_task(ask("bob-token", "team-b", "s1", timeout_s=1.5))
    await eventually(lambda: checks(sim, "team-b") == 1)
    second = asyncio.create_task(ask("bob-token", "team-b", "s2"))
    assert await first == "DEADLINE_EXCEEDED"
    sim.faults.release_streams()
    assert await second == "JOB_ID_NOT_FOUND"
    assert checks(sim, "team-b") == 1
