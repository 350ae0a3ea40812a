"""Per-identity limits on new subscriptions, over real sockets with the real client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from armada_jobservice import AsyncJobServiceClient, RPCError
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.refusals import Reason

from ..fake_armada import FakeArmada
from ..helpers import eventually

TOKENS = "tok-a team-* name=airflow-a\ntok-b team-* name=airflow-b\n"

Poll = Callable[[str | None, str], Awaitable[str]]


@pytest.fixture
async def clients() -> AsyncIterator[dict[str | None, AsyncJobServiceClient]]:
    """Real clients by token (None: no token), closed at teardown."""
    opened: dict[str | None, AsyncJobServiceClient] = {}
    yield opened
    for client in opened.values():
        await client.close()


def poller(
    app: JobServiceApp, clients: dict[str | None, AsyncJobServiceClient], details: list[str]
) -> Poll:
    """Poll job set *job_set* of queue team-x as *token*: the state or the error's code."""

    async def poll(token: str | None, job_set: str) -> str:
        if token not in clients:
            clients[token] = AsyncJobServiceClient(
                f"127.0.0.1:{app.grpc_port}",
                call_credentials=None
                if token is None
                else grpc.access_token_call_credentials(token),
                call_timeout_s=10,
            )
        try:
            return (await clients[token].get_job_status("team-x", job_set, "j")).state.name
        except RPCError as exc:
            details.append(exc.details)
            return exc.code

    return poll


async def test_one_caller_past_its_count_does_not_stop_the_others(
    serve: Callable[..., Awaitable[JobServiceApp]],
    tmp_path: Path,
    clients: dict[str | None, AsyncJobServiceClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RESOURCE_EXHAUSTED names the limit; subscribed job sets still answer, for anyone."""
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    app = await serve(client_tokens_file=str(tokens), max_subscriptions_per_identity=2)
    details: list[str] = []
    poll = poller(app, clients, details)
    assert await poll("tok-a", "a1") == "JOB_ID_NOT_FOUND"
    assert await poll("tok-a", "a2") == "JOB_ID_NOT_FOUND"
    with caplog.at_level(logging.INFO, logger="armada_jobservice.audit"):
        assert await poll("tok-a", "a3") == "RESOURCE_EXHAUSTED"
    assert "max_subscriptions_per_identity=2" in details[0]
    assert ("team-x", "a3") not in app.subscriptions.job_sets
    # Polls of what it subscribed to are never limited.
    for _ in range(3):
        assert await poll("tok-a", "a1") == "JOB_ID_NOT_FOUND"
    # Another caller opens its own, and polls of its job sets by the limited caller pass.
    assert await poll("tok-b", "b1") == "JOB_ID_NOT_FOUND"
    assert await poll("tok-b", "b2") == "JOB_ID_NOT_FOUND"
    assert await poll("tok-a", "b1") == "JOB_ID_NOT_FOUND"
    # An expired subscription frees a slot.
    assert app.subscriptions.expire_idle(now=float("inf")) == 4
    assert await poll("tok-a", "a3") == "JOB_ID_NOT_FOUND"
    audit = [r.getMessage() for r in caplog.records if r.name == "armada_jobservice.audit"]
    assert len(audit) == 1
    assert "identity=airflow-a" in audit[0]
    assert "reason=subscription_count" in audit[0]
    assert app.refusals.counts[Reason.SUBSCRIPTION_COUNT] == 1


async def test_the_rate_limits_bursts_of_new_job_sets_per_caller(
    serve: Callable[..., Awaitable[JobServiceApp]],
    tmp_path: Path,
    clients: dict[str | None, AsyncJobServiceClient],
) -> None:
    """Past the burst, a new job set is refused naming the rate; other callers go on."""
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    app = await serve(
        client_tokens_file=str(tokens),
        new_subscriptions_per_identity_per_minute=1,
        new_subscriptions_per_identity_burst=2,
    )
    details: list[str] = []
    poll = poller(app, clients, details)
    assert await poll("tok-a", "a1") == "JOB_ID_NOT_FOUND"
    assert await poll("tok-a", "a2") == "JOB_ID_NOT_FOUND"
    # One new subscription a minute: the test ends long before the bucket refills.
    assert await poll("tok-a", "a3") == "RESOURCE_EXHAUSTED"
    assert "new_subscriptions_per_identity_per_minute=1" in details[0]
    assert await poll("tok-a", "a1") == "JOB_ID_NOT_FOUND"
    assert await poll("tok-b", "b1") == "JOB_ID_NOT_FOUND"
    assert app.refusals.counts[Reason.SUBSCRIPTION_RATE] == 1


async def test_without_client_auth_everyone_shares_the_anonymous_identity(
    serve: Callable[..., Awaitable[JobServiceApp]],
    clients: dict[str | None, AsyncJobServiceClient],
) -> None:
    """Without authentication the per-identity limit is one limit for all callers."""
    app = await serve(max_subscriptions_per_identity=1)
    details: list[str] = []
    poll = poller(app, clients, details)
    assert await poll(None, "s1") == "JOB_ID_NOT_FOUND"
    assert await poll(None, "s2") == "RESOURCE_EXHAUSTED"
    assert details[0].startswith("anonymous has 1 subscriptions open")


async def test_a_finished_job_is_answered_from_the_cache_past_the_limit(
    serve: Callable[..., Awaitable[JobServiceApp]],
    armada: FakeArmada,
    tmp_path: Path,
    clients: dict[str | None, AsyncJobServiceClient],
) -> None:
    """Past its count, a caller still reads a job the service holds as finished."""
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    # No housekeeping pass during the test: it would evict the unsubscribed job set.
    app = await serve(
        client_tokens_file=str(tokens), max_subscriptions_per_identity=1, flush_interval_s=3600
    )
    poll = poller(app, clients, [])
    armada.publish("team-x", "done", "succeeded", "j")
    await eventually(lambda: poll("tok-a", "done"), lambda state: state == "SUCCEEDED")
    assert app.subscriptions.expire_idle(now=float("inf")) == 1
    assert await poll("tok-a", "other") == "JOB_ID_NOT_FOUND"
    # Re-subscribing "done" would exceed the count; its finished job needs no stream.
    assert await poll("tok-a", "done") == "SUCCEEDED"
    assert ("team-x", "done") in app.subscriptions.job_sets
    assert app.subscriptions.job_sets[("team-x", "done")].stream is None  # type: ignore[index]
