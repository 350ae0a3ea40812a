"""The job service end to end: real gRPC server, fake Armada upstream, real client."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.config import Settings

from ..conftest import Client, State
from ..fake_armada import FakeArmada
from ..helpers import eventually

Q, JS = "queue-a", "job-set-1"


async def state_of(client: Client, job_id: str, queue: str = Q, job_set: str = JS) -> Any:
    """The answer for one job."""
    return await client.status(queue, job_set, job_id)


async def test_first_poll_answers_not_found_and_subscribes(
    armada: FakeArmada, client: Client
) -> None:
    """A first poll answers JOB_ID_NOT_FOUND at once and opens one watch stream."""
    reply = await state_of(client, "job-1")
    assert reply.state == State.JOB_ID_NOT_FOUND
    requests = await eventually(lambda: armada.stream_requests(Q, JS))
    assert len(requests) == 1
    assert requests[0].watch is True
    assert requests[0].from_message_id == ""


@pytest.mark.parametrize(
    ("events", "state", "error"),
    [
        ([("submitted", {})], State.SUBMITTED, ""),
        ([("submitted", {}), ("queued", {}), ("leased", {})], State.SUBMITTED, ""),
        ([("submitted", {}), ("running", {})], State.RUNNING, ""),
        ([("submitted", {}), ("running", {}), ("succeeded", {})], State.SUCCEEDED, ""),
        (
            [("submitted", {}), ("failed", {"reason": "OOMKilled", "exit_codes": {"main": 137}})],
            State.FAILED,
            "OOMKilled (exit codes: main=137)",
        ),
        (
            [("submitted", {}), ("cancelled", {"reason": "user asked", "requestor": "alice"})],
            State.CANCELLED,
            "user asked (by alice)",
        ),
        (
            [("submitted", {}), ("running", {}), ("preempted", {"reason": "higher priority"})],
            State.FAILED,
            "preempted: higher priority",
        ),
        # A terminal state stays put whatever comes later.
        ([("succeeded", {}), ("running", {}), ("failed", {"reason": "late"})], State.SUCCEEDED, ""),
    ],
)
async def test_every_state_reaches_the_poller(
    armada: FakeArmada,
    client: Client,
    events: list[tuple[str, dict[str, Any]]],
    state: int,
    error: str,
) -> None:
    """Each event sequence ends in the state (and error text) the contract names."""
    await state_of(client, "job-1")
    for kind, fields in events:
        armada.publish(Q, JS, kind, "job-1", **fields)
    reply = await eventually(
        lambda: state_of(client, "job-1"), lambda r: r.state == state and r.error == error
    )
    assert (reply.state, reply.error) == (state, error)


async def test_jobs_nobody_asked_about_are_cached(armada: FakeArmada, client: Client) -> None:
    """Every job of a subscribed set is cached, also those never polled before."""
    await state_of(client, "job-1")
    for n in range(20):
        armada.publish(Q, JS, "submitted", f"other-{n}")
    armada.publish(Q, JS, "running", "other-19")
    reply = await eventually(
        lambda: state_of(client, "other-19"), lambda r: r.state == State.RUNNING
    )
    assert reply.state == State.RUNNING
    assert (await state_of(client, "other-0")).state == State.SUBMITTED


async def test_same_job_set_id_in_two_queues_is_two_sets(
    armada: FakeArmada, client: Client
) -> None:
    """Job sets are keyed by (queue, id): equal ids in two queues do not mix."""
    await state_of(client, "job-1", queue="q1")
    await state_of(client, "job-1", queue="q2")
    armada.publish("q1", JS, "succeeded", "job-1")
    armada.publish("q2", JS, "running", "job-1")
    await eventually(
        lambda: state_of(client, "job-1", queue="q1"), lambda r: r.state == State.SUCCEEDED
    )
    reply = await eventually(
        lambda: state_of(client, "job-1", queue="q2"), lambda r: r.state == State.RUNNING
    )
    assert reply.state == State.RUNNING


async def test_concurrent_first_polls_open_exactly_one_stream(
    armada: FakeArmada, client: Client
) -> None:
    """Many first polls of one job set at the same moment open a single upstream stream."""
    replies = await asyncio.gather(*(state_of(client, f"job-{n}") for n in range(50)))
    assert {r.state for r in replies} == {State.JOB_ID_NOT_FOUND}
    await asyncio.sleep(0.2)
    assert len(armada.stream_requests(Q, JS)) == 1
    assert armada.open_streams == 1


async def test_broken_stream_resumes_after_last_applied_event(
    armada: FakeArmada, client: Client
) -> None:
    """After a stream breaks, the service re-opens it from the id of the last event it applied."""
    await state_of(client, "job-1")
    await eventually(lambda: armada.open_streams == 1)
    ids = [armada.publish(Q, JS, "submitted", f"job-{n}") for n in range(3)]
    await eventually(lambda: state_of(client, "job-2"), lambda r: r.state == State.SUBMITTED)
    armada.faults.break_after = 0
    ids.append(armada.publish(Q, JS, "running", "job-0"))
    # The open stream breaks before sending the new event; re-opened streams
    # break at once too, each asking to resume after the third event.
    await eventually(lambda: len(armada.stream_requests(Q, JS)) >= 3)
    armada.faults.break_after = None
    await eventually(lambda: state_of(client, "job-0"), lambda r: r.state == State.RUNNING)
    resumed = [r.from_message_id for r in armada.stream_requests(Q, JS)[1:]]
    # Every re-opened stream asks for the events after the last one applied.
    assert len(resumed) >= 2
    assert set(resumed) == {ids[2]}


async def test_refusal_answers_connection_err_at_once(armada: FakeArmada, client: Client) -> None:
    """PERMISSION_DENIED from Armada answers CONNECTION_ERR with Armada's text straight away."""
    armada.faults.refuse = grpc.StatusCode.PERMISSION_DENIED
    armada.faults.refuse_text = "user bob may not watch queue-a"
    await state_of(client, "job-1")
    reply = await eventually(
        lambda: state_of(client, "job-1"), lambda r: r.state == State.CONNECTION_ERR
    )
    assert "PERMISSION_DENIED" in reply.error
    assert "user bob may not watch queue-a" in reply.error


async def test_outage_answers_cached_state_within_grace_then_connection_err(
    armada: FakeArmada, make_settings: Callable[..., Settings]
) -> None:
    """While a stream fails, unfinished jobs keep their cached state until the grace ends."""
    async with JobServiceApp(make_settings(connection_error_grace_s=1.0)) as app:
        client = Client(app.grpc_port)
        await state_of(client, "job-1")
        armada.publish(Q, JS, "running", "job-1")
        armada.publish(Q, JS, "succeeded", "job-2")
        await eventually(lambda: state_of(client, "job-2"), lambda r: r.state == State.SUCCEEDED)
        armada.faults.refuse = grpc.StatusCode.UNAVAILABLE
        armada.faults.refuse_text = "armada is down"
        armada.faults.break_after = 0
        armada.publish(Q, JS, "submitted", "job-3")  # breaks the open stream
        first = await eventually(lambda: app.subscriptions.job_sets[(Q, JS)].failing_since)
        reply = await state_of(client, "job-1")
        if time.monotonic() - first < 0.9:  # still inside the grace period
            assert reply.state == State.RUNNING
        reply = await eventually(
            lambda: state_of(client, "job-1"), lambda r: r.state == State.CONNECTION_ERR
        )
        assert "armada is down" in reply.error or "stream broken" in reply.error
        # A job already terminal keeps answering its terminal state.
        assert (await state_of(client, "job-2")).state == State.SUCCEEDED
        # When Armada is back, the stream resumes and the errors stop.
        armada.faults.refuse = None
        armada.faults.break_after = None
        reply = await eventually(
            lambda: state_of(client, "job-3"), lambda r: r.state == State.SUBMITTED
        )
        assert (await state_of(client, "job-1")).state == State.RUNNING
        await client.close()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("queue", "", "queue must not be empty"),
        ("job_set_id", "", "job_set_id must not be empty"),
        ("job_id", "", "job_id must not be empty"),
        ("job_id", "x" * 1025, "job_id is longer than 1024"),
        ("queue", "q" * 5000, "queue is longer than 1024"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    client: Client, field: str, value: str, message: str
) -> None:
    """Empty or over-long ids are INVALID_ARGUMENT with a message naming the field."""
    request = {"queue": Q, "job_set_id": JS, "job_id": "job-1", field: value}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.status(**request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")


async def test_longest_allowed_ids_are_answered(client: Client) -> None:
    """Ids of exactly 1,024 characters are accepted."""
    reply = await client.status("q" * 1024, "s" * 1024, "j" * 1024)
    assert reply.state == State.JOB_ID_NOT_FOUND


async def test_subscription_expires_without_polls(
    armada: FakeArmada, make_settings: Callable[..., Settings]
) -> None:
    """A job set not polled for the expiry time loses its stream even while events arrive."""
    async with JobServiceApp(make_settings(subscription_expiry_s=0.5)) as app:
        client = Client(app.grpc_port)
        await state_of(client, "job-1")
        await eventually(lambda: armada.open_streams == 1)
        for n in range(5):
            armada.publish(Q, JS, "submitted", f"job-{n}")
            await asyncio.sleep(0.05)
        assert app.subscriptions.active == 1
        await eventually(lambda: armada.open_streams == 0 and app.subscriptions.active == 0)
        # Its data was flushed and it left memory; the next poll answers from the database.
        await eventually(lambda: (Q, JS) not in app.subscriptions.job_sets)
        assert (await state_of(client, "job-4")).state == State.SUBMITTED
        assert app.subscriptions.active == 1
        requests = await eventually(lambda: armada.stream_requests(Q, JS), lambda r: len(r) == 2)
        assert requests[1].from_message_id == armada.logs[(Q, JS)][-1].id
        await client.close()


async def test_subscription_limit(
    armada: FakeArmada, make_settings: Callable[..., Settings]
) -> None:
    """Beyond max_subscriptions, a new job set answers CONNECTION_ERR; the others keep working."""
    async with JobServiceApp(make_settings(max_subscriptions=2)) as app:
        client = Client(app.grpc_port)
        assert (await state_of(client, "j", job_set="s1")).state == State.JOB_ID_NOT_FOUND
        assert (await state_of(client, "j", job_set="s2")).state == State.JOB_ID_NOT_FOUND
        reply = await state_of(client, "j", job_set="s3")
        assert reply.state == State.CONNECTION_ERR
        assert "subscription limit" in reply.error
        armada.publish(Q, "s2", "running", "j")
        reply = await eventually(
            lambda: state_of(client, "j", job_set="s2"), lambda r: r.state == State.RUNNING
        )
        assert len(armada.requests) == 2
        await client.close()


async def test_retention_deletes_idle_job_sets_whole(
    armada: FakeArmada, make_settings: Callable[..., Settings]
) -> None:
    """A job set idle for the retention time is deleted with its jobs; a subscribed one is kept."""
    settings = make_settings(subscription_expiry_s=0.2, job_set_retention_s=0.5)
    async with JobServiceApp(settings) as app:
        client = Client(app.grpc_port)
        await state_of(client, "job-1", job_set="old")
        await state_of(client, "job-1", job_set="live")
        armada.publish(Q, "old", "succeeded", "job-1")
        armada.publish(Q, "live", "running", "job-1")
        await eventually(
            lambda: state_of(client, "job-1", job_set="old"), lambda r: r.state == State.SUCCEEDED
        )
        # "old" is left alone: it expires, is flushed and leaves memory.
        await eventually(lambda: (Q, "old") not in app.subscriptions.job_sets)
        for _ in range(10):
            await state_of(client, "job-1", job_set="live")  # keeps "live" subscribed
            await asyncio.sleep(0.1)
        # The writer's periodic sweep deletes "old" once idle for 0.5 s.
        await eventually(lambda: app.store.load_job_set((Q, "old")), lambda s: s is None)
        live = await app.store.load_job_set((Q, "live"))
        assert live is not None
        assert [(r.job_id, r.state) for r in live.rows] == [("job-1", State.RUNNING)]
        assert (await state_of(client, "job-1", job_set="live")).state == State.RUNNING
        # Polled again, the deleted set starts over from Armada's first event.
        assert (await state_of(client, "job-1", job_set="old")).state == State.JOB_ID_NOT_FOUND
        await eventually(
            lambda: state_of(client, "job-1", job_set="old"), lambda r: r.state == State.SUCCEEDED
        )
        await client.close()


async def test_health_legacy_and_standard(service: JobServiceApp, client: Client) -> None:
    """The legacy Health rpc and grpc.health.v1 both say SERVING while the database answers."""
    from google.protobuf import empty_pb2

    reply = await client.stub.Health(empty_pb2.Empty())
    assert reply.status == jobservice_pb2.HealthCheckResponse.SERVING
    stub = health_pb2_grpc.HealthStub(client.channel)
    for name in ("", "jobservice.JobService"):
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_says_not_serving_when_the_database_fails(
    service: JobServiceApp, client: Client
) -> None:
    """When the database stops answering, both health checks say NOT_SERVING, not an error."""
    from google.protobuf import empty_pb2

    store: Any = service.store.store
    store._conn.close()  # the real connection dies under the service
    await service.writer.check_store()
    reply = await client.stub.Health(empty_pb2.Empty())
    assert reply.status == jobservice_pb2.HealthCheckResponse.NOT_SERVING
    stub = health_pb2_grpc.HealthStub(client.channel)
    answer = await eventually(
        lambda: stub.Check(health_pb2.HealthCheckRequest(service="")),
        lambda a: a.status == health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    store._conn = None
    store.open()


async def test_failed_flush_loses_nothing(
    armada: FakeArmada, service: JobServiceApp, client: Client
) -> None:
    """A batch the database refuses is written by a later flush."""
    await state_of(client, "job-1")
    store: Any = service.store.store
    real_conn = store._conn
    store._conn = None  # every store call now raises StoreError
    armada.publish(Q, JS, "succeeded", "job-1")
    await eventually(lambda: state_of(client, "job-1"), lambda r: r.state == State.SUCCEEDED)
    await eventually(lambda: service.metrics.flush_failures > 0)
    store._conn = real_conn
    await eventually(lambda: service.subscriptions.job_sets[(Q, JS)].is_clean())
    stored = await service.store.load_job_set((Q, JS))
    assert stored is not None
    assert [(r.job_id, r.state) for r in stored.rows] == [("job-1", State.SUCCEEDED)]


async def test_metrics_endpoint(armada: FakeArmada, make_settings: Callable[..., Settings]) -> None:
    """/metrics serves subscriptions, events, polls by state, flushes and cached jobs."""
    import urllib.request

    async with JobServiceApp(make_settings(metrics_port=0, metrics_host="127.0.0.1")) as app:
        client = Client(app.grpc_port)
        await state_of(client, "job-1")
        armada.publish(Q, JS, "running", "job-1")
        await eventually(lambda: state_of(client, "job-1"), lambda r: r.state == State.RUNNING)
        await eventually(lambda: app.metrics.flush_jobs._sum.get() > 0)
        url = f"http://127.0.0.1:{app.metrics_port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
        for line in (
            "armada_jobservice_subscriptions_active 1.0",
            "armada_jobservice_cached_jobs 1.0",
            "armada_jobservice_events_applied_total 1.0",
            'armada_jobservice_polls_total{state="RUNNING"}',
            'armada_jobservice_polls_total{state="JOB_ID_NOT_FOUND"}',
            "armada_jobservice_flush_batch_jobs_count",
            "armada_jobservice_flush_duration_seconds_bucket",
            "armada_jobservice_serving 1.0",
        ):
            assert line in text
        await client.close()


async def test_metrics_show_an_event_loop_stall(make_settings: Callable[..., Settings]) -> None:
    """A 0.3 s stall of the event loop shows in the lag histogram, above 0.1 s."""
    import re
    import urllib.request

    async with JobServiceApp(make_settings(metrics_port=0, metrics_host="127.0.0.1")) as app:
        url = f"http://127.0.0.1:{app.metrics_port}/metrics"

        def over_100ms() -> float:
            text = urllib.request.urlopen(url).read().decode()
            name = "armada_jobservice_event_loop_lag_seconds"
            count = float(re.search(rf"^{name}_count (\S+)", text, re.M).group(1))  # type: ignore[union-attr]
            upto = re.search(rf'^{name}_bucket{{le="0.1"}} (\S+)', text, re.M)
            return count - float(upto.group(1))  # type: ignore[union-attr]

        await asyncio.sleep(0.2)
        before = await asyncio.to_thread(over_100ms)
        time.sleep(0.3)  # noqa: ASYNC251 - the stall under test: blocks the service's event loop
        await eventually(lambda: asyncio.to_thread(over_100ms), lambda n: n >= before + 1)


async def test_reflection_lists_the_services(service: JobServiceApp, client: Client) -> None:
    """Server reflection names the job service and the health service (for grpcurl)."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)

    async def requests() -> Any:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for answer in stub.ServerReflectionInfo(requests()):
        names = {s.name for s in answer.list_services_response.service}
        assert {"jobservice.JobService", "grpc.health.v1.Health"} <= names
        break


async def test_old_generated_client_names_work(service: JobServiceApp) -> None:
    """The full method names of the contract answer (as armada-airflow's clients call them)."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}")
    call = channel.unary_unary(
        "/jobservice.JobService/GetJobStatus",
        request_serializer=jobservice_pb2.JobServiceRequest.SerializeToString,
        response_deserializer=jobservice_pb2.JobServiceResponse.FromString,
    )
    reply = await call(jobservice_pb2.JobServiceRequest(job_id="a", job_set_id="b", queue="c"))
    assert reply.state == State.JOB_ID_NOT_FOUND
    await channel.close()
    assert dataclasses.is_dataclass(service.settings)
    assert jobservice_pb2_grpc.JobServiceStub is not None


async def test_concurrent_first_polls_of_many_stored_job_sets(
    service: JobServiceApp, client: Client
) -> None:
    """First polls of many job sets at once each get their own stored jobs (read in batches)."""
    from armada_jobservice.server.cache import JobRow, JobSetKey
    from armada_jobservice.server.store.base import JobSetWrite

    await service.store.write(
        [
            JobSetWrite(JobSetKey(Q, f"s{n}"), f"m{n}", time.time(), [JobRow(f"j{n}", n % 5, None)])
            for n in range(40)
        ]
    )
    replies = await asyncio.gather(*(state_of(client, f"j{n}", job_set=f"s{n}") for n in range(40)))
    assert [r.state for r in replies] == [n % 5 for n in range(40)]


async def test_unreadable_database_answers_connection_err(
    service: JobServiceApp, client: Client
) -> None:
    """When a new job set cannot be read from the database, polls answer CONNECTION_ERR."""
    store: Any = service.store.store
    real_conn, store._conn = store._conn, None
    try:
        reply = await state_of(client, "job-1", job_set="unreadable")
        assert reply.state == State.CONNECTION_ERR
        assert "database" in reply.error
    finally:
        store._conn = real_conn
    reply = await eventually(
        lambda: state_of(client, "job-1", job_set="unreadable"),
        lambda r: r.state == State.JOB_ID_NOT_FOUND,
    )
    assert reply.error == ""


async def test_first_polls_during_a_read_wait_and_are_read_together(
    service: JobServiceApp, client: Client
) -> None:
    """One database read is in flight at a time; first polls arriving meanwhile share the next."""
    store: Any = service.store
    real_load = store.load_job_sets
    gate = asyncio.Event()
    batches: list[list[Any]] = []

    async def gated_load(keys: list[Any]) -> Any:
        batches.append(list(keys))
        if len(batches) == 1:
            await gate.wait()
        return await real_load(keys)

    store.load_job_sets = gated_load
    first = asyncio.ensure_future(state_of(client, "j", job_set="s0"))
    await eventually(lambda: len(batches) == 1)
    rest = [asyncio.ensure_future(state_of(client, "j", job_set=f"s{n}")) for n in range(1, 20)]
    # All nineteen wait behind the first read, none starts a read of its own.
    await eventually(lambda: len(service.subscriptions._to_load) == 19)
    assert len(batches) == 1
    gate.set()
    replies = await asyncio.gather(first, *rest)
    assert [r.state for r in replies] == [State.JOB_ID_NOT_FOUND] * 20
    assert [len(b) for b in batches] == [1, 19]
    assert {k.job_set_id for b in batches for k in b} == {f"s{n}" for n in range(20)}


async def test_flush_between_full_passes_writes_positions_of_changed_job_sets(
    armada: FakeArmada, make_settings: Callable[..., Settings]
) -> None:
    """A flush of only the job sets with events still stores an event that changed no job."""
    # The writer's own loop never runs a flush here: each flush below is called by hand.
    async with JobServiceApp(make_settings(flush_interval_s=3600.0)) as app:
        client = Client(app.grpc_port)
        await state_of(client, "job-1", job_set="quiet")
        await state_of(client, "job-1")
        armada.publish(Q, JS, "submitted", "job-1")
        js = app.subscriptions.job_sets[(Q, JS)]
        await eventually(lambda: js.last_message_id == armada.logs[(Q, JS)][-1].id)
        assert await app.writer.flush_once(full=False) == 1
        # "queued" changes no job's state, only the stream position to resume from.
        armada.publish(Q, JS, "queued", "job-1")
        await eventually(lambda: js.last_message_id == armada.logs[(Q, JS)][-1].id)
        assert app.subscriptions.changed == {js}
        assert await app.writer.flush_once(full=False) == 0
        assert app.subscriptions.changed == set()
        stored = await app.store.load_job_set((Q, JS))
        assert stored is not None
        assert stored.last_message_id == armada.logs[(Q, JS)][-1].id
        assert [(r.job_id, r.state) for r in stored.rows] == [("job-1", State.SUBMITTED)]
        # The job set without events was not written by these flushes; a full pass writes it.
        assert await app.store.load_job_set((Q, "quiet")) is None
        await app.writer.flush_once()
        assert await app.store.load_job_set((Q, "quiet")) is not None
        await client.close()


async def test_quiet_streams_are_flushed_before_the_interval(
    armada: FakeArmada, make_settings: Callable[..., Settings]
) -> None:
    """Once events stop, changes are written soon, not a whole flush interval later."""
    async with JobServiceApp(make_settings(flush_interval_s=3600.0)) as app:
        client = Client(app.grpc_port)
        await state_of(client, "job-1")
        armada.publish(Q, JS, "running", "job-1")
        stored = await eventually(
            lambda: app.store.load_job_set((Q, JS)), lambda s: s is not None and bool(s.rows)
        )
        assert [(r.job_id, r.state) for r in stored.rows] == [("job-1", State.RUNNING)]
        await client.close()


async def test_a_trickle_of_events_is_not_a_flush_per_event(
    armada: FakeArmada, make_settings: Callable[..., Settings]
) -> None:
    """Events 30 ms apart (quiet between each) still share flushes: at most one per 0.1 s."""
    from armada_jobservice.server.writer import QUIET_MIN_GAP_S

    async with JobServiceApp(make_settings(flush_interval_s=3600.0)) as app:
        client = Client(app.grpc_port)
        await state_of(client, "job-0")
        flushes = []
        real_flush = app.writer.flush_once

        async def counted(*args: Any, **kwargs: Any) -> int:
            flushes.append(time.monotonic())
            return await real_flush(*args, **kwargs)

        app.writer.flush_once = counted  # type: ignore[method-assign]
        started = time.monotonic()
        for n in range(30):
            armada.publish(Q, JS, "submitted", f"job-{n}")
            await asyncio.sleep(0.03)
        await eventually(lambda: app.subscriptions.job_sets[(Q, JS)].is_clean())
        elapsed = time.monotonic() - started
        assert flushes, "nothing was flushed"
        assert len(flushes) <= elapsed / QUIET_MIN_GAP_S + 1
        gaps = [b - a for a, b in itertools.pairwise(flushes)]
        assert all(g >= QUIET_MIN_GAP_S * 0.9 for g in gaps), gaps
        await client.close()
