"""Event expiry: a job set's events go together once it is idle, as in Armada's event store."""

from __future__ import annotations

import grpc
import pytest
from armada_client.armada import event_pb2, job_pb2, job_pb2_grpc, submit_pb2
from armada_client.asyncio_client import ArmadaAsyncIOClient

from armada_jobservice.sim import ArmadaSimulator
from armada_jobservice.sim.eventlog import EventLog, format_message_id

from .conftest import QUEUE, read_events, submit

EMPTY = event_pb2.EventMessage()


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_job_set_idle_for_the_retention_loses_its_events_and_positions_carry_on() -> None:
    """Events expire together after ``retention_s`` without a new one; ids keep growing."""
    clock = Clock()
    log = EventLog(retention_s=10.0, clock=clock)
    first = [log.append(QUEUE, "js", EMPTY) for _ in range(3)]
    clock.now += 9.9
    assert log.exists(QUEUE, "js")
    later = log.append(QUEUE, "js", EMPTY)
    clock.now += 9.9
    kept = log.get(QUEUE, "js")
    assert kept is not None
    assert len(kept) == 4
    clock.now += 0.1
    assert not log.exists(QUEUE, "js")
    assert log.total_events() == 0
    after = log.append(QUEUE, "js", EMPTY)
    assert [*first, later] == [format_message_id(n) for n in range(1, 5)]
    assert after == format_message_id(5)


def test_expire_idle_drops_only_the_job_sets_idle_long_enough() -> None:
    """The sweep drops idle job sets' events and keeps the busy ones'."""
    clock = Clock()
    log = EventLog(retention_s=10.0, clock=clock)
    log.append(QUEUE, "old", EMPTY)
    clock.now += 6
    log.append(QUEUE, "new", EMPTY)
    clock.now += 5
    assert log.expire_idle() == 1
    assert not log.exists(QUEUE, "old")
    assert log.exists(QUEUE, "new")


def test_without_retention_events_are_kept_for_ever() -> None:
    """No retention: the sweep drops nothing however old the events are."""
    clock = Clock()
    log = EventLog(clock=clock)
    log.append(QUEUE, "js", EMPTY)
    clock.now += 1e9
    assert log.expire_idle() == 0
    assert log.exists(QUEUE, "js")


async def test_streams_after_expiry_start_at_the_oldest_kept_event(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient, channel: grpc.aio.Channel
) -> None:
    """From the start, or after an expired id, a stream begins at the first event kept."""
    [old] = await submit(client)
    await sim.wait_for_terminal([old])
    before = await read_events(channel)
    assert sim.expire_events(QUEUE, "js") == len(before)
    assert await read_events(channel) == []
    [new] = await submit(client)
    await sim.wait_for_terminal([new])
    kept = await read_events(channel)
    assert kept[0] == (format_message_id(len(before) + 1), "submitted")
    assert await read_events(channel, from_message_id=before[1][0]) == kept
    assert await read_events(channel, from_message_id=kept[0][0]) == kept[1:]


async def test_an_expired_job_set_is_missing_until_its_next_event(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient, channel: grpc.aio.Channel
) -> None:
    """With errorIfMissing, a job set whose events all expired is NOT_FOUND."""
    [job] = await submit(client)
    await sim.wait_for_terminal([job])
    sim.expire_events(QUEUE, "js")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_events(channel, error_if_missing=True)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_the_query_api_answers_jobs_whose_events_expired(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient, channel: grpc.aio.Channel
) -> None:
    """GetJobStatus, GetJobDetails and GetJobErrors answer from the job records, not events."""
    [ok, bad] = await submit(client, annotations=[{}, {"armada-sim/outcome": "failed"}])
    await sim.wait_for_terminal([ok, bad])
    sim.expire_events(QUEUE, "js")
    stub = job_pb2_grpc.JobsStub(channel)  # type: ignore[no-untyped-call]
    states = await stub.GetJobStatus(job_pb2.JobStatusRequest(job_ids=[ok, bad, "nope"]))
    assert dict(states.job_states) == {
        ok: submit_pb2.SUCCEEDED,
        bad: submit_pb2.FAILED,
        "nope": submit_pb2.UNKNOWN,
    }
    details = await stub.GetJobDetails(job_pb2.JobDetailsRequest(job_ids=[ok, "nope"]))
    assert list(details.job_details) == [ok]
    assert (details.job_details[ok].queue, details.job_details[ok].jobset) == (QUEUE, "js")
    errors = await stub.GetJobErrors(job_pb2.JobErrorsRequest(job_ids=[bad]))
    assert errors.job_errors[bad]
    assert sim.query_calls == {"GetJobStatus": 1, "GetJobDetails": 1, "GetJobErrors": 1}


async def test_a_query_refusal_fails_every_query_call_and_nothing_else(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient, channel: grpc.aio.Channel
) -> None:
    """``query_refusal`` makes the query API answer that status; event streams still work."""
    [job] = await submit(client)
    await sim.wait_for_terminal([job])
    sim.query_refusal = grpc.StatusCode.UNAVAILABLE
    stub = job_pb2_grpc.JobsStub(channel)  # type: ignore[no-untyped-call]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetJobStatus(job_pb2.JobStatusRequest(job_ids=[job]))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert await read_events(channel)


def test_the_retention_flag_reaches_the_event_log() -> None:
    """``--event-retention-s`` sets the log's retention; zero or less is refused."""
    from armada_jobservice.cli import build_parser
    from armada_jobservice.cli.sim import build

    args = build_parser().parse_args(["armada-sim", "--event-retention-s", "3600"])
    assert build(args).event_log.retention_s == 3600.0
    assert build(build_parser().parse_args(["armada-sim"])).event_log.retention_s is None
    bad = build_parser().parse_args(["armada-sim", "--event-retention-s", "0"])
    with pytest.raises(ValueError, match="event-retention-s"):
        build(bad)
