"""``wait_for_job`` of both clients against a real socket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from armada_jobservice import (
    AsyncJobServiceClient,
    ConnectionErrorTimeout,
    JobNotFoundTimeout,
    JobServiceClient,
    JobState,
    JobStatus,
    RPCError,
    ServiceUnavailable,
    WaitTimeout,
)

from .conftest import Server, State

FAST = {"poll_interval_s": 0.01}


def wait(kind: str, target: str, **kw: Any) -> JobStatus:
    """Run wait_for_job for q/s/j with the blocking or the asyncio client."""
    if kind == "sync":
        with JobServiceClient(target) as client:
            return client.wait_for_job("q", "s", "j", **kw)

    async def go() -> JobStatus:
        async with AsyncJobServiceClient(target) as client:
            return await client.wait_for_job("q", "s", "j", **kw)

    return asyncio.run(go())


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    """Each test runs with both clients."""
    return request.param  # type: ignore[no-any-return]


def test_wait_follows_the_job_to_success(server: Server, kind: str) -> None:
    """Not-found, submitted, running, succeeded: every answer is reported, the last returned."""
    server.script.answers["j"] = [
        (State.JOB_ID_NOT_FOUND, ""),
        (State.SUBMITTED, ""),
        (State.RUNNING, ""),
        (State.SUCCEEDED, ""),
    ]
    seen: list[JobState] = []
    status = wait(kind, server.target, on_status=lambda s: seen.append(s.state), **FAST)
    assert status == JobStatus(JobState.SUCCEEDED)
    assert seen == [
        JobState.JOB_ID_NOT_FOUND,
        JobState.SUBMITTED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
    assert server.script.calls == 4


@pytest.mark.parametrize("state", [State.FAILED, State.CANCELLED])
def test_wait_returns_unsuccessful_ends(server: Server, kind: str, state: int) -> None:
    """FAILED and CANCELLED end the wait with their error text; raising is the caller's choice."""
    server.script.answers["j"] = [(State.RUNNING, ""), (state, "why")]
    status = wait(kind, server.target, **FAST)
    assert (status.state.is_terminal, status.state.is_success, status.error) == (True, False, "why")


def test_wait_checks_before_sleeping(server: Server, kind: str) -> None:
    """A job that has already ended returns at once: no interval is slept after that answer."""
    server.script.answers["j"] = [(State.SUCCEEDED, "")]
    # An hour-long interval would hit the test timeout if it were slept even once.
    assert wait(kind, server.target, poll_interval_s=3600).state is JobState.SUCCEEDED


def test_wait_gives_up_on_a_job_that_stays_missing(server: Server, kind: str) -> None:
    """A job id the service never finds raises JobNotFoundTimeout."""
    with pytest.raises(JobNotFoundTimeout):
        wait(kind, server.target, not_found_timeout_s=0.05, **FAST)
    assert server.script.calls >= 2


def test_wait_gives_up_on_lasting_connection_errors(server: Server, kind: str) -> None:
    """CONNECTION_ERR for longer than its timeout raises ConnectionErrorTimeout with the reason."""
    server.script.answers["j"] = [(State.CONNECTION_ERR, "armada unreachable")]
    with pytest.raises(ConnectionErrorTimeout, match="armada unreachable"):
        wait(kind, server.target, connection_error_timeout_s=0.05, **FAST)


def test_wait_counts_an_unreachable_service_as_connection_trouble(
    dead_target: str, kind: str
) -> None:
    """With nobody listening, the wait ends in ConnectionErrorTimeout from ServiceUnavailable."""
    with pytest.raises(ConnectionErrorTimeout) as info:
        wait(kind, dead_target, connection_error_timeout_s=0, **FAST)
    assert isinstance(info.value.__cause__, ServiceUnavailable)


def test_wait_raises_overall_timeout(server: Server, kind: str) -> None:
    """A job that keeps running past the overall timeout raises a plain WaitTimeout."""
    server.script.answers["j"] = [(State.RUNNING, "")]
    with pytest.raises(WaitTimeout) as info:
        wait(kind, server.target, timeout_s=0.05, **FAST)
    assert type(info.value) is WaitTimeout
    assert info.value.last_status == JobStatus(JobState.RUNNING)


def test_wait_does_not_swallow_non_transient_errors(server: Server, kind: str) -> None:
    """An authorisation failure ends the wait at once: retrying would not help."""
    import grpc

    server.script.abort_first = [grpc.StatusCode.PERMISSION_DENIED]
    with pytest.raises(RPCError, match="PERMISSION_DENIED"):
        wait(kind, server.target, **FAST)
    assert server.script.calls == 1
