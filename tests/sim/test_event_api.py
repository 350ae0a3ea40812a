"""api.Event over real gRPC: lifecycles, resume, watch, errorIfMissing, scripted events."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import grpc
import pytest
from armada_client.armada import event_pb2
from armada_client.asyncio_client import ArmadaAsyncIOClient
from armada_client.client import ArmadaClient

from armada_jobservice.sim import ArmadaSimulator, JobPhase, build_event

from .conftest import QUEUE, read_events, submit

HAPPY = ["submitted", "queued", "leased", "pending", "running"]


@pytest.mark.parametrize(
    ("annotations", "tail"),
    [
        ({}, ["succeeded"]),
        ({"armada-sim/outcome": "failed"}, ["failed"]),
        ({"armada-sim/outcome": "preempted"}, ["preempted"]),
        ({"armada-sim/outcome": "cancelled"}, ["cancelling", "cancelled"]),
    ],
)
async def test_each_outcome_has_armadas_event_sequence(
    sim: ArmadaSimulator,
    client: ArmadaAsyncIOClient,
    channel: grpc.aio.Channel,
    annotations: dict[str, str],
    tail: list[str],
) -> None:
    """A job goes submitted, queued, leased, pending, running, then its outcome's events."""
    [job_id] = await submit(client, annotations=[annotations])
    await sim.wait_for_terminal([job_id])
    assert [kind for _, kind in await read_events(channel)] == HAPPY + tail


async def test_a_failure_carries_reason_exit_code_and_cause(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient
) -> None:
    """The failed event has the scripted reason, the exit code per container and the cause."""
    [job_id] = await submit(
        client,
        annotations=[
            {
                "armada-sim/outcome": "failed",
                "armada-sim/failure-reason": "OOMKilled",
                "armada-sim/exit-code": "137",
                "armada-sim/failure-cause": "OOM",
            }
        ],
    )
    await sim.wait_for_terminal([job_id])
    failed = sim.events(QUEUE, "js")[-1].message.failed
    assert failed.reason == "OOMKilled"
    assert dict(failed.exit_codes) == {"main": 137}
    assert failed.cause == event_pb2.OOM
    assert failed.container_statuses[0].exitCode == 137


async def test_lease_returned_detour(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient, channel: grpc.aio.Channel
) -> None:
    """A returned lease sends the job back to the queue, then it runs normally."""
    [job_id] = await submit(client, annotations=[{"armada-sim/lease-returns": "1"}])
    await sim.wait_for_terminal([job_id])
    assert [k for _, k in await read_events(channel)] == [
        "submitted",
        "queued",
        "leased",
        "lease_returned",
        "queued",
        "leased",
        "pending",
        "running",
        "succeeded",
    ]


async def test_submitted_event_carries_the_job(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient
) -> None:
    """The submitted event holds the api.Job with its annotations and pod spec."""
    [job_id] = await submit(client, annotations=[{"team": "x"}])
    submitted = sim.events(QUEUE, "js")[0].message.submitted
    assert submitted.job.id == job_id
    assert submitted.job.annotations["team"] == "x"
    assert submitted.job.pod_spec.containers[0].name == "main"


async def test_resume_after_a_message_id(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient, channel: grpc.aio.Channel
) -> None:
    """from_message_id resumes right after that id, and the request records it."""
    [job_id] = await submit(client)
    await sim.wait_for_terminal([job_id])
    everything = await read_events(channel)
    rest = await read_events(channel, from_message_id=everything[2][0])
    assert rest == everything[3:]
    assert sim.stream_requests[-1].from_message_id == everything[2][0]
    assert await read_events(channel, from_message_id=everything[-1][0]) == []


async def test_ids_increase_as_strings(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient, channel: grpc.aio.Channel
) -> None:
    """Message ids of a job set are strictly increasing when compared as strings."""
    await submit(client, annotations=[{}] * 5)
    await sim.wait_for(lambda: len(sim.events(QUEUE, "js")) >= 30)
    ids = [i for i, _ in await read_events(channel)]
    assert all(a < b for a, b in itertools.pairwise(ids))


async def test_a_malformed_from_message_id_is_invalid(channel: grpc.aio.Channel) -> None:
    """An id the simulator never handed out is INVALID_ARGUMENT."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read_events(channel, from_message_id="1-0")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_error_if_missing(channel: grpc.aio.Channel) -> None:
    """An unknown job set is NOT_FOUND with errorIfMissing, an empty stream without it."""
    assert await read_events(channel, "never") == []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read_events(channel, "never", error_if_missing=True)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_unknown_queue_is_not_found(channel: grpc.aio.Channel) -> None:
    """GetJobSetEvents on a queue that does not exist is NOT_FOUND, as in Armada."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read_events(channel, queue="nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_watch_delivers_events_published_later(
    sim: ArmadaSimulator, channel: grpc.aio.Channel
) -> None:
    """A watching stream stays open and receives events appended after it caught up."""
    sim.emit(QUEUE, "w", "job-1", "submitted")
    reader = asyncio.create_task(read_events(channel, "w", watch=True, limit=3))
    await sim.wait_for(lambda: sim.open_streams == 1)
    sim.emit(QUEUE, "w", "job-1", "running")
    sim.emit(QUEUE, "w", "job-1", "succeeded")
    assert [k for _, k in await reader] == ["submitted", "running", "succeeded"]
    await sim.wait_for(lambda: sim.open_streams == 0)


async def test_without_watch_the_stream_ends_after_the_stored_events(
    sim: ArmadaSimulator, channel: grpc.aio.Channel
) -> None:
    """A non-watching stream returns what was stored when it arrived, then ends."""
    sim.drive(QUEUE, "s", "job-1", ["submitted", "queued"])
    assert len(await read_events(channel, "s")) == 2
    assert sim.stream_requests[-1].watch is False


async def test_publish_any_message_and_drive_a_script(
    sim: ArmadaSimulator, channel: grpc.aio.Channel
) -> None:
    """publish appends a ready EventMessage; drive scripts a job; both update the job's state."""
    ids = sim.drive(QUEUE, "p", "job-9", ["submitted", "queued", "running"])
    message = build_event("failed", QUEUE, "p", "job-9", reason="scripted")
    ids.append(sim.publish(QUEUE, "p", message))
    assert [i for i, _ in await read_events(channel, "p")] == ids
    assert sim.job_phase("job-9") is JobPhase.FAILED
    assert sim.job("job-9").error == "scripted"  # type: ignore[union-attr]


async def test_a_published_terminal_event_stops_the_simulated_lifecycle(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient
) -> None:
    """Publishing succeeded for a held job ends it; releasing it afterwards does nothing."""
    [job_id] = await submit(client, annotations=[{"armada-sim/hold-at": "queued"}])
    sim.emit(QUEUE, "js", job_id, "succeeded")
    assert sim.release(job_id) is False
    assert sim.job_phase(job_id) is JobPhase.SUCCEEDED


async def test_hold_and_release(sim: ArmadaSimulator, client: ArmadaAsyncIOClient) -> None:
    """A job held at pending waits there until released, then finishes."""
    [job_id] = await submit(client, annotations=[{"armada-sim/hold-at": "pending"}])
    await sim.wait_for(lambda: sim.job_phase(job_id) is JobPhase.PENDING)
    assert sim.release(job_id) is True
    await sim.wait_for_terminal([job_id])
    assert sim.job_phase(job_id) is JobPhase.SUCCEEDED


async def test_the_deprecated_watch_rpc(sim: ArmadaSimulator, client: ArmadaAsyncIOClient) -> None:
    """Watch streams the same events as GetJobSetEvents with watch and errorIfMissing."""
    sim.drive(QUEUE, "old", "job-1", ["submitted", "queued"])
    call = client.event_stub.Watch(event_pb2.WatchRequest(queue=QUEUE, job_set_id="old"))
    got = []
    async for message in call:
        got.append(message.message.WhichOneof("events"))
        if len(got) == 2:
            call.cancel()
            break
    assert got == ["submitted", "queued"]
    assert sim.stream_requests[-1].rpc == "Watch"


async def test_the_sync_clients_resilient_stream(sim: ArmadaSimulator) -> None:
    """armada-client's sync ArmadaClient reads a job set through its resilient stream."""
    sim.drive(QUEUE, "sync", "job-1", ["submitted", "queued", "running"])

    def read_three() -> list[str]:
        with grpc.insecure_channel(sim.address) as channel:
            client = ArmadaClient(channel, event_timeout=timedelta(seconds=30))
            stream = client.get_job_events_stream(QUEUE, "sync")
            kinds = []
            for message in stream:
                kinds.append(client.unmarshal_event_response(message).type.value)
                if len(kinds) == 3:
                    stream.cancel()
            return kinds

    assert await asyncio.to_thread(read_three) == ["submitted", "queued", "running"]
    request = sim.stream_requests[-1]
    assert (request.watch, request.error_if_missing) == (True, True)
