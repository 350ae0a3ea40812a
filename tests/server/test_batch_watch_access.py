"""GetJobStatuses and WatchJobs pass the access checks and limits of GetJobStatus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from armada_jobservice import AsyncJobServiceClient, JobState, JobStatus, RPCError
from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.refusals import Reason

from ..fake_armada import FakeArmada
from ..helpers import Serve

TOKENS = "tok-a team-a-* name=airflow-a\n"
Request = jobservice_pb2.JobServiceRequest


@pytest.fixture
async def scoped(serve: Serve, tmp_path: Path) -> JobServiceApp:
    """A service whose one token may ask about team-a-* queues only, one new job set each."""
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    return await serve(client_tokens_file=str(tokens), max_subscriptions_per_identity=1)


@pytest.fixture
async def stub(scoped: JobServiceApp) -> AsyncIterator[jobservice_pb2_grpc.JobServiceStub]:
    """A plain stub to the scoped service."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scoped.grpc_port}") as channel:
        yield jobservice_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]


def as_(token: str | None) -> list[tuple[str, str]] | None:
    """Call metadata carrying *token* (None: no credentials)."""
    return None if token is None else [("authorization", f"Bearer {token}")]


async def batch_code(
    stub: jobservice_pb2_grpc.JobServiceStub, token: str | None, *jobs: tuple[str, str, str]
) -> tuple[grpc.StatusCode, str]:
    """The status code and details of one GetJobStatuses call."""
    request = jobservice_pb2.JobStatusesRequest(
        jobs=[Request(queue=q, job_set_id=s, job_id=j) for q, s, j in jobs]
    )
    try:
        await stub.GetJobStatuses(request, metadata=as_(token), timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def watch_code(
    stub: jobservice_pb2_grpc.JobServiceStub, token: str | None, queue: str, job_id: str
) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a WatchJobs call, after its first update."""
    request = jobservice_pb2.WatchJobsRequest(queue=queue, job_set_id="s", job_ids=[job_id])
    call = stub.WatchJobs(request, metadata=as_(token), timeout=10)
    try:
        async for _ in call:
            break
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    finally:
        call.cancel()
    return grpc.StatusCode.OK, ""


async def test_a_batch_is_refused_for_any_queue_out_of_scope(
    scoped: JobServiceApp, stub: jobservice_pb2_grpc.JobServiceStub
) -> None:
    """No token, or one entry's queue outside the token's scope: the call is refused whole."""
    ok = ("team-a-1", "s", "j")
    code, _ = await batch_code(stub, None, ok)
    assert code is grpc.StatusCode.UNAUTHENTICATED
    # Authentication comes before validation, as for GetJobStatus.
    code, _ = await batch_code(stub, None, ("team-a-1", "s", ""))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    code, details = await batch_code(stub, "tok-a", ok, ("team-b", "s", "j"))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "team-b" in details
    assert len(scoped.subscriptions) == 0
    assert scoped.refusals.counts[Reason.OUT_OF_SCOPE] == 1
    assert await batch_code(stub, "tok-a", ok, ok) == (grpc.StatusCode.OK, "")


async def test_a_watch_is_refused_out_of_scope(
    scoped: JobServiceApp, stub: jobservice_pb2_grpc.JobServiceStub
) -> None:
    """WatchJobs: UNAUTHENTICATED without a token, PERMISSION_DENIED outside the scope."""
    code, _ = await watch_code(stub, None, "team-a-1", "j")
    assert code is grpc.StatusCode.UNAUTHENTICATED
    code, details = await watch_code(stub, "tok-a", "team-b", "j")
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "team-b" in details
    assert len(scoped.subscriptions) == 0
    assert await watch_code(stub, "tok-a", "team-a-1", "j") == (grpc.StatusCode.OK, "")


async def test_new_job_sets_beyond_the_callers_limit_are_refused(
    scoped: JobServiceApp, stub: jobservice_pb2_grpc.JobServiceStub
) -> None:
    """One new job set per identity: a batch or a watch needing a second is RESOURCE_EXHAUSTED."""
    assert await batch_code(stub, "tok-a", ("team-a-1", "s", "j")) == (grpc.StatusCode.OK, "")
    code, details = await batch_code(stub, "tok-a", ("team-a-1", "s", "j"), ("team-a-2", "s", "j"))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_subscriptions_per_identity=1" in details
    code, details = await watch_code(stub, "tok-a", "team-a-3", "j")
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_subscriptions_per_identity=1" in details
    assert JobSetKey("team-a-3", "s") not in scoped.subscriptions.job_sets
    assert scoped.refusals.counts[Reason.SUBSCRIPTION_COUNT] == 2
    # The job set it holds is still watched and polled in batches.
    assert await watch_code(stub, "tok-a", "team-a-1", "j") == (grpc.StatusCode.OK, "")


async def test_a_refused_poll_does_not_fail_the_polls_sharing_its_call(
    armada: FakeArmada, scoped: JobServiceApp
) -> None:
    """The coalescing client: one poll out of scope is refused alone; the others answer."""
    async with AsyncJobServiceClient(
        f"127.0.0.1:{scoped.grpc_port}",
        call_credentials=grpc.access_token_call_credentials("tok-a"),
    ) as client:
        answers = await asyncio.gather(
            client.get_job_status("team-a-1", "s", "a"),
            client.get_job_status("team-b", "s", "b"),
            client.get_job_status("team-a-1", "s", "c"),
            return_exceptions=True,
        )
    assert answers[0] == answers[2] == JobStatus(JobState.JOB_ID_NOT_FOUND)
    assert isinstance(answers[1], RPCError)
    assert answers[1].code == "PERMISSION_DENIED"
