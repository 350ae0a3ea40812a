"""Subscriptions: one event stream per polled job set, its failures, expiry, limit and retention."""

from __future__ import annotations

import asyncio

import grpc

from armada_jobservice import AsyncJobServiceClient, JobState
from armada_jobservice._wire import WireState
from armada_jobservice.server.app import JobServiceApp

from ..fake_armada import FakeArmada
from ..helpers import Connect, Serve, eventually

Q, JS = "queue-a", "job-set-1"


async def test_same_job_set_id_in_two_queues_is_two_sets(
    armada: FakeArmada, client: AsyncJobServiceClient
) -> None:
    """Job sets are keyed by (queue, id): equal ids in two queues do not mix."""
    await client.get_job_status("q1", JS, "job-1")
    await client.get_job_status("q2", JS, "job-1")
    armada.publish("q1", JS, "succeeded", "job-1")
    armada.publish("q2", JS, "running", "job-1")
    await eventually(
        lambda: client.get_job_status("q1", JS, "job-1"), lambda r: r.state == JobState.SUCCEEDED
    )
    reply = await eventually(
        lambda: client.get_job_status("q2", JS, "job-1"), lambda r: r.state == JobState.RUNNING
    )
    assert reply.state == JobState.RUNNING


async def test_concurrent_first_polls_open_exactly_one_stream(
    armada: FakeArmada, client: AsyncJobServiceClient
) -> None:
    """Many first polls of one job set at the same moment open a single upstream stream."""
    replies = await asyncio.gather(*(client.get_job_status(Q, JS, f"job-{n}") for n in range(50)))
    assert {r.state for r in replies} == {JobState.JOB_ID_NOT_FOUND}
    await eventually(lambda: armada.open_streams == 1)
    # A second stream, were one opened, would be requested within this time.
    await asyncio.sleep(0.2)
    assert len(armada.stream_requests(Q, JS)) == 1
    assert armada.open_streams == 1


async def test_broken_stream_resumes_after_last_applied_event(
    armada: FakeArmada, client: AsyncJobServiceClient
) -> None:
    """After a stream breaks, the service re-opens it from the id of the last event it applied."""
    await client.get_job_status(Q, JS, "job-1")
    await eventually(lambda: armada.open_streams == 1)
    ids = [armada.publish(Q, JS, "submitted", f"job-{n}") for n in range(3)]
    await eventually(
        lambda: client.get_job_status(Q, JS, "job-2"), lambda r: r.state == JobState.SUBMITTED
    )
    armada.faults.break_after = 0
    ids.append(armada.publish(Q, JS, "running", "job-0"))
    # The open stream breaks before sending the new event; re-opened streams
    # break at once too, each asking to resume after the third event.
    await eventually(lambda: len(armada.stream_requests(Q, JS)) >= 3)
    armada.faults.break_after = None
    await eventually(
        lambda: client.get_job_status(Q, JS, "job-0"), lambda r: r.state == JobState.RUNNING
    )
    resumed = [r.from_message_id for r in armada.stream_requests(Q, JS)[1:]]
    # Every re-opened stream asks for the events after the last one applied.
    assert len(resumed) >= 2
    assert set(resumed) == {ids[2]}


async def test_refusal_answers_connection_err_at_once(
    armada: FakeArmada, client: AsyncJobServiceClient
) -> None:
    """PERMISSION_DENIED from Armada answers CONNECTION_ERR with Armada's text straight away."""
    armada.faults.refuse = grpc.StatusCode.PERMISSION_DENIED
    armada.faults.refuse_text = "user bob may not watch queue-a"
    await client.get_job_status(Q, JS, "job-1")
    reply = await eventually(
        lambda: client.get_job_status(Q, JS, "job-1"),
        lambda r: r.state == JobState.CONNECTION_ERR,
    )
    assert "PERMISSION_DENIED" in reply.error
    assert "user bob may not watch queue-a" in reply.error


async def break_armada(
    app: JobServiceApp, armada: FakeArmada, client: AsyncJobServiceClient
) -> None:
    """Cache job-1 RUNNING and job-2 SUCCEEDED, then make Armada fail until the faults are reset."""
    await client.get_job_status(Q, JS, "job-1")
    armada.publish(Q, JS, "running", "job-1")
    armada.publish(Q, JS, "succeeded", "job-2")
    await eventually(
        lambda: client.get_job_status(Q, JS, "job-2"), lambda r: r.state == JobState.SUCCEEDED
    )
    armada.faults.refuse = grpc.StatusCode.UNAVAILABLE
    armada.faults.refuse_text = "armada is down"
    armada.faults.break_after = 0
    armada.publish(Q, JS, "submitted", "job-3")  # breaks the open stream
    await eventually(lambda: app.subscriptions.job_sets[(Q, JS)].failing_since is not None)


async def test_outage_inside_the_grace_answers_cached_state(
    armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """While a stream fails and the grace period lasts, unfinished jobs keep their cached state."""
    # A grace far longer than the test: every poll below is inside it, however slow the machine.
    app = await serve(connection_error_grace_s=3600.0)
    client = connect(app)
    await break_armada(app, armada, client)
    # Let the service retry (and fail) a few times: the answer must not change.
    await eventually(lambda: len(armada.stream_requests(Q, JS)) >= 3)
    for _ in range(5):
        reply = await client.get_job_status(Q, JS, "job-1")
        assert (reply.state, reply.error) == (JobState.RUNNING, "")
    assert app.subscriptions.job_sets[(Q, JS)].failing_since is not None


async def test_outage_past_the_grace_answers_connection_err_then_recovers(
    armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """Past the grace unfinished jobs answer CONNECTION_ERR; when Armada is back they heal."""
    app = await serve(connection_error_grace_s=0.0)
    client = connect(app)
    await break_armada(app, armada, client)
    reply = await eventually(
        lambda: client.get_job_status(Q, JS, "job-1"),
        lambda r: r.state == JobState.CONNECTION_ERR,
    )
    assert "armada is down" in reply.error or "stream broken" in reply.error
    # A job already terminal keeps answering its terminal state.
    assert (await client.get_job_status(Q, JS, "job-2")).state == JobState.SUCCEEDED
    # When Armada is back, the stream resumes and the errors stop.
    armada.faults.refuse = None
    armada.faults.break_after = None
    await eventually(
        lambda: client.get_job_status(Q, JS, "job-3"), lambda r: r.state == JobState.SUBMITTED
    )
    assert (await client.get_job_status(Q, JS, "job-1")).state == JobState.RUNNING


async def test_subscription_expires_without_polls(
    armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """A job set not polled for the expiry time loses its stream even while events arrive."""
    app = await serve(subscription_expiry_s=0.5)
    client = connect(app)
    await client.get_job_status(Q, JS, "job-1")
    await eventually(lambda: armada.open_streams == 1)
    for n in range(5):
        armada.publish(Q, JS, "submitted", f"job-{n}")
        await asyncio.sleep(0.05)
    assert app.subscriptions.active == 1
    await eventually(lambda: armada.open_streams == 0 and app.subscriptions.active == 0)
    # Its data was flushed and it left memory; the next poll answers from the database.
    await eventually(lambda: (Q, JS) not in app.subscriptions.job_sets)
    assert (await client.get_job_status(Q, JS, "job-4")).state == JobState.SUBMITTED
    assert app.subscriptions.active == 1
    requests = await eventually(lambda: armada.stream_requests(Q, JS), lambda r: len(r) == 2)
    assert requests[1].from_message_id == armada.logs[(Q, JS)][-1].id


async def test_subscription_limit(armada: FakeArmada, serve: Serve, connect: Connect) -> None:
    """Beyond max_subscriptions, a new job set answers CONNECTION_ERR; the others keep working."""
    app = await serve(max_subscriptions=2)
    client = connect(app)
    assert (await client.get_job_status(Q, "s1", "j")).state == JobState.JOB_ID_NOT_FOUND
    assert (await client.get_job_status(Q, "s2", "j")).state == JobState.JOB_ID_NOT_FOUND
    reply = await client.get_job_status(Q, "s3", "j")
    assert reply.state == JobState.CONNECTION_ERR
    assert "subscription limit" in reply.error
    armada.publish(Q, "s2", "running", "j")
    await eventually(
        lambda: client.get_job_status(Q, "s2", "j"), lambda r: r.state == JobState.RUNNING
    )
    assert len(armada.requests) == 2


async def test_retention_deletes_idle_job_sets_whole(
    armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """A job set idle for the retention time is deleted with its jobs; a subscribed one is kept."""
    app = await serve(subscription_expiry_s=0.2, job_set_retention_s=0.5)
    client = connect(app)
    await client.get_job_status(Q, "old", "job-1")
    await client.get_job_status(Q, "live", "job-1")
    armada.publish(Q, "old", "succeeded", "job-1")
    armada.publish(Q, "live", "running", "job-1")
    await eventually(
        lambda: client.get_job_status(Q, "old", "job-1"), lambda r: r.state == JobState.SUCCEEDED
    )
    # "old" is left alone: it expires, is flushed and leaves memory.
    await eventually(lambda: (Q, "old") not in app.subscriptions.job_sets)
    for _ in range(10):
        await client.get_job_status(Q, "live", "job-1")  # keeps "live" subscribed
        await asyncio.sleep(0.1)
    # The writer's periodic sweep deletes "old" once idle for 0.5 s.
    await eventually(lambda: app.store.load_job_set((Q, "old")), lambda s: s is None)
    live = await app.store.load_job_set((Q, "live"))
    assert live is not None
    assert [(r.job_id, r.state) for r in live.rows] == [("job-1", WireState.RUNNING)]
    assert (await client.get_job_status(Q, "live", "job-1")).state == JobState.RUNNING
    # Polled again, the deleted set starts over from Armada's first event.
    reply = await client.get_job_status(Q, "old", "job-1")
    assert reply.state == JobState.JOB_ID_NOT_FOUND
    await eventually(
        lambda: client.get_job_status(Q, "old", "job-1"), lambda r: r.state == JobState.SUCCEEDED
    )
