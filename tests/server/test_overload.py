"""Overload: calls beyond ``max_concurrent_calls`` and first polls beyond ``max_subscriptions``.

Shed work is answered at once with a clear status; what is cached keeps
answering; memory holds no more than the limits allow; the service recovers
by itself once the flood stops, and waits ride it out.
"""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest

from armada_jobservice import AsyncJobServiceClient, JobState, ServiceOverloaded
from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc

from ..fake_armada import FakeArmada
from ..helpers import Connect, OpenChannel, Serve, eventually

Q = "queue-a"


async def _hold_watches(channel: grpc.aio.Channel, n: int) -> list[grpc.aio.UnaryStreamCall]:  # type: ignore[type-arg]
    """Open *n* WatchJobs streams on jobs that never end; each holds one call slot."""
    stub = jobservice_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
    calls = []
    for k in range(n):
        call = stub.WatchJobs(
            jobservice_pb2.WatchJobsRequest(queue=Q, job_set_id=f"held-{k}", job_ids=["never"])
        )
        await call.read()  # the job's current state: the stream is open
        calls.append(call)
    return calls


async def test_calls_beyond_the_limit_are_shed_at_once_and_the_service_recovers(
    serve: Serve, connect: Connect, open_channel: OpenChannel
) -> None:
    """At max_concurrent_calls in progress, one more is RESOURCE_EXHAUSTED, not a timeout."""
    app = await serve(max_concurrent_calls=2)
    client = connect(app)
    held = await _hold_watches(open_channel(app), 2)
    started = time.monotonic()
    with pytest.raises(ServiceOverloaded) as info:
        await client.get_job_status(Q, "other", "j", timeout_s=5)
    # Refused by gRPC before any handler ran, well within the call's deadline.
    assert time.monotonic() - started < 2.5
    assert info.value.code == "RESOURCE_EXHAUSTED"
    # Nothing of the shed call reached the service: no job set was opened for it.
    assert (Q, "other") not in app.subscriptions.job_sets
    held[0].cancel()
    state = await eventually(lambda: _status_or_none(client, "other"), lambda s: s is not None)
    assert state == JobState.JOB_ID_NOT_FOUND
    held[1].cancel()


async def _status_or_none(client: AsyncJobServiceClient, job_set_id: str) -> JobState | None:
    try:
        status = await client.get_job_status(Q, job_set_id, "j")
    except ServiceOverloaded:
        return None
    return status.state


async def test_a_wait_rides_out_shedding(
    armada: FakeArmada, serve: Serve, connect: Connect, open_channel: OpenChannel
) -> None:
    """A wait whose calls are shed backs off and tries again; it ends when the job does."""
    app = await serve(max_concurrent_calls=2)
    client = connect(app)
    held = await _hold_watches(open_channel(app), 2)
    wait = asyncio.create_task(
        client.wait_for_job(Q, "waited", "j", poll_interval_s=0.1, connection_error_timeout_s=30)
    )
    await asyncio.sleep(0.5)  # several of its tries were shed
    assert not wait.done()
    for call in held:
        call.cancel()
    await eventually(lambda: (Q, "waited") in app.subscriptions.job_sets)
    armada.publish(Q, "waited", "submitted", "j")
    armada.publish(Q, "waited", "succeeded", "j")
    status = await asyncio.wait_for(wait, 20)
    assert status.state == JobState.SUCCEEDED


async def test_a_flood_of_first_polls_opens_no_more_than_the_limit(
    armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """Ten times max_subscriptions new job sets at once: the limit's worth is subscribed.

    The rest answer CONNECTION_ERR naming the limit and leave nothing in
    memory; a subscribed job set keeps answering; once the flood's job sets
    expire, new ones are subscribed again.
    """
    limit = 5
    app = await serve(max_subscriptions=limit, subscription_expiry_s=0.5)
    client = connect(app)
    armada.publish(Q, "cached", "running", "j")
    await eventually(
        lambda: client.get_job_status(Q, "cached", "j"), lambda s: s.state == JobState.RUNNING
    )
    answers = await asyncio.gather(
        *(client.get_job_status(Q, f"flood-{k}", "j") for k in range(10 * limit))
    )
    refused = [a for a in answers if a.state == JobState.CONNECTION_ERR]
    assert len(refused) == 10 * limit - (limit - 1)
    assert all("max_subscriptions" in a.error for a in refused)
    assert app.subscriptions.active == limit
    assert len(app.subscriptions.job_sets) == limit
    assert armada.open_streams <= limit
    assert (await client.get_job_status(Q, "cached", "j")).state == JobState.RUNNING
    # The flood stops: its job sets expire (as "cached" does), and room returns.
    await eventually(lambda: app.subscriptions.active == 0, timeout=15)
    late = await client.get_job_status(Q, "after-the-flood", "j")
    assert late.state == JobState.JOB_ID_NOT_FOUND
    assert app.subscriptions.active == 1


async def test_calls_queued_beyond_max_queued_calls_are_refused_at_once(
    serve: Serve, connect: Connect
) -> None:
    """With the event loop busy, calls wait in gRPC; beyond max_queued_calls they are refused.

    The service's own event loop is held (as a flood holds it) while a thread
    sends 40 polls: gRPC holds 5 of them (and the one or two the server had
    asked for in advance) and refuses the rest at once with CANCELLED,
    without the loop; once the loop is free the held ones are answered.
    """
    app = await serve(max_queued_calls=5)
    await connect(app).get_job_status(Q, "busy", "j")  # subscribed: later polls are cache hits
    ended: list[tuple[str, float]] = []
    all_sent = threading.Event()

    def record(future: grpc.Future) -> None:
        code = future.code()
        ended.append((code.name if code is not None else "?", time.monotonic()))

    with grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        stub = jobservice_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
        request = jobservice_pb2.JobServiceRequest(queue=Q, job_set_id="busy", job_id="j")
        # Connected before the loop is held (from a thread: the loop must answer).
        await asyncio.to_thread(stub.GetJobStatus, request, timeout=5)

        def flood() -> None:
            for _ in range(40):
                stub.GetJobStatus.future(request, timeout=10).add_done_callback(record)
            all_sent.set()

        threading.Thread(target=flood).start()
        # Hold the service's event loop: nothing is taken from gRPC's queue.
        all_sent.wait(5)
        time.sleep(1.0)  # noqa: ASYNC251 - blocking the loop is the point
        released = time.monotonic()
        await eventually(lambda: len(ended) == 40, timeout=15)
    codes = [code for code, _ in ended]
    answered = codes.count("OK")
    assert 5 <= answered <= 8, codes
    assert codes.count("CANCELLED") == 40 - answered, codes
    # Every refusal came while the loop was held: none waited for the service.
    assert all(at < released for code, at in ended if code == "CANCELLED")
    assert all(at >= released for code, at in ended if code == "OK")
