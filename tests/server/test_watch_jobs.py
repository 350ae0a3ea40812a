"""``WatchJobs``: current states, then every change as the service applies it."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from armada_client.armada import event_pb2

from armada_jobservice import (
    AsyncJobServiceClient,
    JobState,
    JobStatus,
    JobUpdate,
    ServiceUnavailable,
)
from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice._wire import MAX_JOBS_PER_CALL
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.watch import WatchFeed

from ..fake_armada import FakeArmada
from ..helpers import Connect, OpenChannel, Serve, eventually, metric

Q, JS = "queue-a", "job-set-1"


async def test_listed_jobs_get_their_state_then_each_change_and_the_stream_ends(
    armada: FakeArmada, service: JobServiceApp, client: AsyncJobServiceClient
) -> None:
    """First the listed jobs' states, then one update per change; OK once all listed ended."""
    armada.publish(Q, JS, "submitted", "a")
    seen: list[JobUpdate] = []
    stream = client.watch_jobs(Q, JS, ["a", "b"])
    seen.append(await anext(stream))
    seen.append(await anext(stream))
    # Loaded before the first states: "a" is known, "b" not yet.
    assert {u.job_id: u.status.state for u in seen} in (
        {"a": JobState.SUBMITTED, "b": JobState.JOB_ID_NOT_FOUND},
        {"a": JobState.JOB_ID_NOT_FOUND, "b": JobState.JOB_ID_NOT_FOUND},
    )
    assert metric(service, "armada_jobservice_watch_streams_open") == 1
    armada.publish(Q, JS, "running", "a")
    armada.publish(Q, JS, "submitted", "b")
    armada.publish(Q, JS, "failed", "b", reason="no such image")
    armada.publish(Q, JS, "succeeded", "a")
    async for update in stream:
        seen.append(update)
    assert seen[-1].status.state.is_terminal
    last = {u.job_id: u.status for u in seen}
    assert last == {
        "a": JobStatus(JobState.SUCCEEDED),
        "b": JobStatus(JobState.FAILED, "no such image"),
    }
    assert metric(service, "armada_jobservice_calls_total", method="WatchJobs") == 1
    await eventually(lambda: metric(service, "armada_jobservice_watch_streams_open") == 0)


async def test_a_watch_of_ended_jobs_sends_their_states_and_ends(
    armada: FakeArmada, client: AsyncJobServiceClient
) -> None:
    """Jobs that ended already: their terminal states, then the stream ends."""
    armada.publish(Q, JS, "cancelled", "a", reason="by the user")
    await eventually(
        lambda: client.get_job_status(Q, JS, "a"), lambda s: s.state is JobState.CANCELLED
    )
    updates = [u async for u in client.watch_jobs(Q, JS, ["a"])]
    assert updates == [JobUpdate("a", JobStatus(JobState.CANCELLED, "by the user"))]


async def test_watching_every_job_sends_cached_jobs_then_new_ones(
    armada: FakeArmada, client: AsyncJobServiceClient
) -> None:
    """Without job ids: every cached job first, then jobs as they appear."""
    armada.publish(Q, JS, "submitted", "a")
    armada.publish(Q, JS, "running", "b")
    await eventually(
        lambda: client.get_job_status(Q, JS, "b"), lambda s: s.state is JobState.RUNNING
    )
    stream = client.watch_jobs(Q, JS)
    first = {(await anext(stream)).job_id for _ in range(2)}
    assert first == {"a", "b"}
    armada.publish(Q, JS, "submitted", "c")
    assert await anext(stream) == JobUpdate("c", JobStatus(JobState.SUBMITTED))
    await stream.aclose()


async def test_a_refused_stream_reaches_watchers_as_connection_err_and_heals(
    armada: FakeArmada, client: AsyncJobServiceClient
) -> None:
    """Armada refusing the event stream: CONNECTION_ERR with its text, then the state again."""
    armada.publish(Q, JS, "running", "a")
    stream = client.watch_jobs(Q, JS, ["a"])
    assert (await anext(stream)).status.state in (JobState.RUNNING, JobState.JOB_ID_NOT_FOUND)
    armada.faults.refuse = grpc.StatusCode.PERMISSION_DENIED
    armada.faults.refuse_text = "user bob may not watch queue-a"
    armada.faults.break_after = 0
    armada.publish(Q, JS, "running", "x")  # the open stream breaks on its next event
    update = await anext(stream)
    while update.status.state is not JobState.CONNECTION_ERR:
        update = await anext(stream)
    assert update.job_id == "a"
    assert "user bob may not watch queue-a" in update.status.error
    armada.faults.refuse = None
    armada.faults.break_after = None
    update = await anext(stream)
    assert update == JobUpdate("a", JobStatus(JobState.RUNNING))
    armada.publish(Q, JS, "succeeded", "a")
    assert [u async for u in stream] == [JobUpdate("a", JobStatus(JobState.SUCCEEDED))]


async def test_a_watched_job_set_counts_as_polled_until_the_watch_ends(
    armada: FakeArmada, service: JobServiceApp, client: AsyncJobServiceClient
) -> None:
    """Expiry skips a watched job set; once the watch closes, its end counts as the last poll."""
    stream = client.watch_jobs(Q, JS, ["a"])
    await anext(stream)
    subs = service.subscriptions
    js = subs.job_sets[JobSetKey(Q, JS)]
    later = js.last_poll + subs.expiry_s * 10
    assert subs.expire_idle(later) == 0
    assert js.stream is not None
    await stream.aclose()
    await eventually(lambda: not js.watched)
    assert subs.expire_idle(js.last_poll + subs.expiry_s / 2) == 0
    assert subs.expire_idle(js.last_poll + subs.expiry_s + 1) == 1


async def test_bad_requests_are_invalid_argument_naming_the_field(
    service: JobServiceApp, open_channel: OpenChannel
) -> None:
    """An empty queue, a bad listed id, or too many ids: INVALID_ARGUMENT naming what is wrong."""
    stub = jobservice_pb2_grpc.JobServiceStub(open_channel(service))  # type: ignore[no-untyped-call]
    cases = [
        (jobservice_pb2.WatchJobsRequest(queue="", job_set_id=JS), "queue must not be empty"),
        (
            jobservice_pb2.WatchJobsRequest(queue=Q, job_set_id=JS, job_ids=["a", "b\0"]),
            "job_ids[1] must not contain NUL characters",
        ),
        (
            jobservice_pb2.WatchJobsRequest(
                queue=Q, job_set_id=JS, job_ids=[str(n) for n in range(MAX_JOBS_PER_CALL + 1)]
            ),
            "job_ids holds 10001 entries; at most 10000 are allowed per call",
        ),
    ]
    for request, text in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.WatchJobs(request):
                pass
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == text
    assert len(service.subscriptions) == 0


def test_a_slow_readers_feed_keeps_one_entry_per_changed_job() -> None:
    """However many events a job gets before the watch sends, the feed holds it once."""
    js = JobSet(JobSetKey(Q, JS), 0.0)
    js.load(None, (), 0.0)
    feed = WatchFeed(None)
    js.add_watcher(feed)
    applied = 0
    for n in range(1_000):
        for job in range(10):
            # Alternating states: every event changes its job.
            message = event_pb2.EventMessage()
            getattr(message, "running" if n % 2 else "submitted").job_id = f"job-{job}"
            applied += js.apply(f"{n}-{job}", message, 1.0)
    assert applied == 10_000
    assert feed.pending == 10
    changed, connection = feed.take()
    assert changed == [f"job-{job}" for job in range(10)]
    assert not connection
    assert feed.pending == 0


def test_a_listing_feed_ignores_jobs_it_does_not_watch() -> None:
    """A feed of listed jobs keeps only those; connection news are kept apart."""
    feed = WatchFeed(frozenset({"a"}))
    for job_id in ("a", "b", "a", "c"):
        feed.job_changed(job_id)
    feed.connection_changed()
    assert feed.take() == (["a"], True)


async def test_a_follower_replicas_watch_sees_the_owners_changes(
    armada: FakeArmada, serve: Serve, connect: Connect, pg_url: str
) -> None:
    """Two replicas on one PostgreSQL: a watch through the one that does not own the job set."""
    owner = await serve(database=pg_url, replica_name="owner")
    await connect(owner).get_job_status(Q, JS, "a")
    await eventually(lambda: owner.fleet is not None and JobSetKey(Q, JS) in owner.fleet.owned)
    follower = await serve(database=pg_url, replica_name="follower")
    stream = connect(follower).watch_jobs(Q, JS, ["a"])
    assert await anext(stream) == JobUpdate("a", JobStatus(JobState.JOB_ID_NOT_FOUND))
    assert follower.fleet is not None
    assert JobSetKey(Q, JS) not in follower.fleet.owned
    armada.publish(Q, JS, "running", "a")
    assert await anext(stream) == JobUpdate("a", JobStatus(JobState.RUNNING))
    armada.publish(Q, JS, "succeeded", "a")
    assert [u async for u in stream] == [JobUpdate("a", JobStatus(JobState.SUCCEEDED))]
    # One stream from Armada, the owner's: the follower read the database.
    assert len(armada.stream_requests(Q, JS)) == 1


async def test_closing_the_client_mid_watch_frees_the_server_side(
    service: JobServiceApp, connect: Connect
) -> None:
    """A watcher that goes away leaves no watch behind on the job set."""
    client = connect(service)
    stream = client.watch_jobs(Q, JS, ["a"])
    await anext(stream)
    js = service.subscriptions.job_sets[JobSetKey(Q, JS)]
    assert js.watched
    await client.close()
    await eventually(lambda: not js.watched)
    await asyncio.sleep(0)


async def test_stopping_the_service_ends_open_watches_as_unavailable(
    serve: Serve, connect: Connect
) -> None:
    """A service stopping ends its watches with UNAVAILABLE, which clients reopen elsewhere."""
    app = await serve()
    client = connect(app)
    stream = client.watch_jobs(Q, JS, ["a"])
    await anext(stream)
    stopping = asyncio.ensure_future(app.stop())
    with pytest.raises(ServiceUnavailable) as caught:
        await anext(stream)
    assert "shutting down" in caught.value.details
    await stopping
