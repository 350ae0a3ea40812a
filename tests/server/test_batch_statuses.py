"""``GetJobStatuses``: many polls in one call, each answered as ``GetJobStatus`` answers it."""

from __future__ import annotations

import grpc
import pytest

from armada_jobservice import AsyncJobServiceClient, JobState, JobStatus
from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice._wire import MAX_JOBS_PER_CALL
from armada_jobservice.server.app import JobServiceApp

from ..fake_armada import FakeArmada
from ..helpers import Connect, OpenChannel, Serve, eventually, metric

Q = "queue-a"


def entry(queue: str, job_set_id: str, job_id: str) -> jobservice_pb2.JobServiceRequest:
    """One entry of a batch."""
    return jobservice_pb2.JobServiceRequest(queue=queue, job_set_id=job_set_id, job_id=job_id)


async def test_entries_across_job_sets_answer_as_single_polls_in_order(
    armada: FakeArmada, service: JobServiceApp, client: AsyncJobServiceClient
) -> None:
    """A batch over two job sets subscribes both and answers each entry as GetJobStatus does."""
    asked = [(Q, "set-1", "a"), (Q, "set-2", "b"), (Q, "set-1", "c"), (Q, "set-1", "a")]
    first = await client.get_job_statuses(asked)
    assert first == [JobStatus(JobState.JOB_ID_NOT_FOUND)] * 4
    await eventually(lambda: armada.open_streams == 2)
    armada.publish(Q, "set-1", "running", "a")
    armada.publish(Q, "set-2", "failed", "b", reason="out of memory")
    armada.publish(Q, "set-1", "succeeded", "c")
    want = [
        JobStatus(JobState.RUNNING),
        JobStatus(JobState.FAILED, "out of memory"),
        JobStatus(JobState.SUCCEEDED),
        JobStatus(JobState.RUNNING),
    ]
    answers = await eventually(lambda: client.get_job_statuses(asked), lambda r: r == want)
    # One at a time: each goes out as a plain GetJobStatus.
    singles = [
        await client.get_job_status(Q, "set-1", "a"),
        await client.get_job_status(Q, "set-2", "b"),
    ]
    assert singles == answers[:2]
    assert metric(service, "armada_jobservice_calls_total", method="GetJobStatuses") >= 2


async def test_one_bad_entry_rejects_the_call_naming_it_and_subscribes_nothing(
    service: JobServiceApp, open_channel: OpenChannel
) -> None:
    """INVALID_ARGUMENT names the entry's index and field; no job set of the call is opened."""
    stub = jobservice_pb2_grpc.JobServiceStub(open_channel(service))  # type: ignore[no-untyped-call]
    request = jobservice_pb2.JobStatusesRequest(
        jobs=[entry(Q, "set-1", "a"), entry(Q, "set-2", ""), entry(Q, "set-3", "c")]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetJobStatuses(request)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "jobs[1].job_id must not be empty"
    assert len(service.subscriptions) == 0


async def test_more_entries_than_the_limit_are_refused_naming_it(
    service: JobServiceApp, open_channel: OpenChannel
) -> None:
    """10,000 entries are answered; 10,001 are INVALID_ARGUMENT naming the limit."""
    stub = jobservice_pb2_grpc.JobServiceStub(open_channel(service))  # type: ignore[no-untyped-call]
    jobs = [entry(Q, "set-1", f"job-{n}") for n in range(MAX_JOBS_PER_CALL)]
    answer = await stub.GetJobStatuses(jobservice_pb2.JobStatusesRequest(jobs=jobs))
    assert len(answer.statuses) == MAX_JOBS_PER_CALL
    jobs.append(entry(Q, "set-1", "one-more"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetJobStatuses(jobservice_pb2.JobStatusesRequest(jobs=jobs))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 10000" in (caught.value.details() or "")


async def test_bytes_that_are_no_request_are_invalid_argument(
    service: JobServiceApp, open_channel: OpenChannel
) -> None:
    """An entry whose string is not UTF-8 makes the call INVALID_ARGUMENT, not an internal error."""
    call = open_channel(service).unary_unary("/jobservice.JobService/GetJobStatuses")
    # Field 1 (jobs), length 4: field 1 (job_id) of length 2 holding bytes that are no UTF-8.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(b"\x0a\x04\x0a\x02\xff\xfe")
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_job_sets_beyond_the_subscription_limit_answer_connection_err(
    armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """Entries of a job set the limit keeps out answer CONNECTION_ERR with the limit's text."""
    app = await serve(max_subscriptions=1)
    client = connect(app)
    answers = await client.get_job_statuses([(Q, "set-1", "a"), (Q, "set-2", "b")])
    states = sorted(a.state for a in answers)
    assert states == sorted([JobState.JOB_ID_NOT_FOUND, JobState.CONNECTION_ERR])
    refused = next(a for a in answers if a.state is JobState.CONNECTION_ERR)
    assert "max_subscriptions" in refused.error
