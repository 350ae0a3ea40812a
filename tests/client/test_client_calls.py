"""Both clients over a real socket: calls, the retry policy, deadlines and credentials."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from armada_jobservice import (
    AsyncJobServiceClient,
    CallTimeout,
    JobServiceClient,
    JobState,
    JobStatus,
    ProtocolError,
    RPCError,
    ServiceUnavailable,
    ServingStatus,
)

from .conftest import Server, State

Call = Callable[..., Any]


def sync_call(target: str, method: str, *args: Any, **client_kw: Any) -> Any:
    """Open a blocking client, make one call, close it."""
    with JobServiceClient(target, **client_kw) as client:
        return getattr(client, method)(*args)


def async_call(target: str, method: str, *args: Any, **client_kw: Any) -> Any:
    """Open an asyncio client, make one call, close it."""

    async def go() -> Any:
        async with AsyncJobServiceClient(target, **client_kw) as client:
            return await getattr(client, method)(*args)

    return asyncio.run(go())


@pytest.fixture(params=[sync_call, async_call], ids=["sync", "async"])
def call(request: pytest.FixtureRequest) -> Call:
    """Each test runs once with the blocking client and once with the asyncio one."""
    return request.param  # type: ignore[no-any-return]


def test_get_job_status_returns_state_and_error(server: Server, call: Call) -> None:
    """A FAILED answer arrives as a typed status with the error text, for the asked job."""
    server.script.answers["j1"] = [(State.FAILED, "OOMKilled")]
    status = call(server.target, "get_job_status", "q", "set", "j1")
    assert status == JobStatus(JobState.FAILED, "OOMKilled")
    [request] = server.script.requests
    assert (request.queue, request.job_set_id, request.job_id) == ("q", "set", "j1")


def test_health_returns_serving_status(server: Server, call: Call) -> None:
    """Health answers map to ServingStatus."""
    server.script.health = 2
    assert call(server.target, "health") is ServingStatus.NOT_SERVING


def test_retry_policy_retries_unavailable(server: Server, call: Call) -> None:
    """Two UNAVAILABLE answers are retried by gRPC itself and the third attempt answers."""
    server.script.abort_first = [grpc.StatusCode.UNAVAILABLE] * 2
    server.script.answers["j"] = [(State.RUNNING, "")]
    assert call(server.target, "get_job_status", "q", "s", "j").state is JobState.RUNNING
    assert server.script.calls == 3


def test_retry_policy_stops_after_five_attempts(server: Server, call: Call) -> None:
    """A service that stays UNAVAILABLE is tried five times, then ServiceUnavailable is raised."""
    server.script.abort_first = [grpc.StatusCode.UNAVAILABLE] * 10
    with pytest.raises(ServiceUnavailable, match="UNAVAILABLE") as info:
        call(server.target, "get_job_status", "q", "s", "j")
    assert server.script.calls == 5
    assert isinstance(info.value.__cause__, grpc.RpcError)


def test_retry_policy_leaves_other_codes_alone(server: Server, call: Call) -> None:
    """A non-retryable status is tried once and surfaces as RPCError with its code."""
    server.script.abort_first = [grpc.StatusCode.PERMISSION_DENIED]
    with pytest.raises(RPCError) as info:
        call(server.target, "health")
    assert (info.value.code, server.script.calls) == ("PERMISSION_DENIED", 1)
    assert info.value.details == "scripted PERMISSION_DENIED"


def test_deadline_raises_call_timeout(server: Server, call: Call) -> None:
    """A call the server does not answer within the client's deadline raises CallTimeout."""
    server.script.hold = threading.Event()
    with pytest.raises(CallTimeout):
        call(server.target, "get_job_status", "q", "s", "j", call_timeout_s=0.2)


def test_dead_service_raises_service_unavailable(dead_target: str, call: Call) -> None:
    """Nobody listening: the retries run out and ServiceUnavailable is raised."""
    with pytest.raises(ServiceUnavailable):
        call(dead_target, "health")


def test_unknown_state_raises_protocol_error(server: Server, call: Call) -> None:
    """A state number outside the contract is a ProtocolError, not a guess."""
    server.script.answers["j"] = [(42, "")]
    with pytest.raises(ProtocolError, match="42"):
        call(server.target, "get_job_status", "q", "s", "j")


def test_call_credentials_reach_the_server(server: Server, call: Call) -> None:
    """A bearer token set as call credentials is sent (over local credentials on loopback)."""
    server.script.required_token = "s3cret"
    creds = grpc.access_token_call_credentials("s3cret")
    assert call(server.target, "health", call_credentials=creds) is ServingStatus.SERVING
    with pytest.raises(RPCError, match="UNAUTHENTICATED"):
        call(server.target, "health")


def test_sync_client_from_channel_leaves_the_channel_open(server: Server) -> None:
    """A client wrapping the caller's channel does not close it."""
    with grpc.insecure_channel(server.target) as channel:
        with JobServiceClient.from_channel(channel) as client:
            assert client.health() is ServingStatus.SERVING
        assert JobServiceClient.from_channel(channel).health() is ServingStatus.SERVING


async def test_async_client_from_channel_leaves_the_channel_open(server: Server) -> None:
    """An asyncio client wrapping the caller's channel does not close it."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        async with AsyncJobServiceClient.from_channel(channel) as client:
            assert await client.health() is ServingStatus.SERVING
        assert await AsyncJobServiceClient.from_channel(channel).health() is ServingStatus.SERVING


def test_close_is_idempotent(server: Server) -> None:
    """Closing a client twice is harmless."""
    client = JobServiceClient(server.target)
    client.close()
    client.close()
