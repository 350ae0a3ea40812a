"""Fault injection over real gRPC: ended, broken and slowed streams, denied queues, outages."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from armada_client.asyncio_client import ArmadaAsyncIOClient

from armada_jobservice.sim import ArmadaSimulator, Faults

from .conftest import QUEUE, read_events, submit


def _script(sim: ArmadaSimulator, job_set_id: str = "f", count: int = 5) -> list[str]:
    return sim.drive(
        QUEUE, job_set_id, "job-1", ["submitted", "queued", "leased", "pending", "running"][:count]
    )


async def _error(awaitable) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value


async def test_end_streams_after_n_events(sim: ArmadaSimulator, channel: grpc.aio.Channel) -> None:
    """A stream ends cleanly (status OK) after N events, even while watching."""
    _script(sim)
    sim.faults.end_streams_after(2)
    assert len(await read_events(channel, "f", watch=True)) == 2


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL])
async def test_break_streams_after_n_events_then_resume(
    sim: ArmadaSimulator, channel: grpc.aio.Channel, code: grpc.StatusCode
) -> None:
    """A stream fails with the chosen code after N events; a resumed stream carries on."""
    ids = _script(sim)
    sim.faults.break_streams_after(3, code, times=1)
    received: list[tuple[str, str]] = []
    stub_error = await _error(_collect(channel, received))
    assert stub_error.code() == code
    assert [i for i, _ in received] == ids[:3]
    rest = await read_events(channel, "f", from_message_id=received[-1][0])
    assert [i for i, _ in rest] == ids[3:]
    assert [r.from_message_id for r in sim.stream_requests] == ["", ids[2]]


async def _collect(channel: grpc.aio.Channel, into: list[tuple[str, str]]) -> None:
    from armada_client.armada import event_pb2, event_pb2_grpc

    call = event_pb2_grpc.EventStub(channel).GetJobSetEvents(
        event_pb2.JobSetRequest(id="f", queue=QUEUE, watch=True)
    )
    async for message in call:
        into.append((message.id, message.message.WhichOneof("events") or ""))


async def test_a_rule_with_times_affects_only_that_many_streams(
    sim: ArmadaSimulator, channel: grpc.aio.Channel
) -> None:
    """``times=1`` ends the first stream early and leaves the second alone."""
    _script(sim)
    sim.faults.end_streams_after(1, times=1)
    assert len(await read_events(channel, "f")) == 1
    assert len(await read_events(channel, "f")) == 5


async def test_a_rule_scoped_to_a_job_set(sim: ArmadaSimulator, channel: grpc.aio.Channel) -> None:
    """A rule for one job set leaves other job sets' streams alone."""
    _script(sim, "f")
    _script(sim, "g")
    sim.faults.end_streams_after(0, job_set_id="f")
    assert await read_events(channel, "f") == []
    assert len(await read_events(channel, "g")) == 5


async def test_deny_queue(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient, channel: grpc.aio.Channel
) -> None:
    """A denied queue gets PERMISSION_DENIED on streams and submissions until allowed again."""
    _script(sim)
    sim.faults.deny_queue(QUEUE)
    assert (await _error(read_events(channel, "f"))).code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await _error(submit(client))).code() == grpc.StatusCode.PERMISSION_DENIED
    sim.faults.allow_queue(QUEUE)
    assert len(await read_events(channel, "f")) == 5


async def test_unavailable_for_a_while(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient, channel: grpc.aio.Channel
) -> None:
    """During an outage every rpc is UNAVAILABLE; after it, calls succeed again."""
    _script(sim)
    sim.faults.unavailable_for(3600)
    assert (await _error(client.submit_health())).code() == grpc.StatusCode.UNAVAILABLE
    assert (await _error(read_events(channel, "f"))).code() == grpc.StatusCode.UNAVAILABLE
    assert (await _error(client.get_job_status(["x"]))).code() == grpc.StatusCode.UNAVAILABLE
    sim.faults.available()
    assert (await client.submit_health()).status == 1


async def test_an_outage_breaks_open_streams(
    sim: ArmadaSimulator, channel: grpc.aio.Channel
) -> None:
    """Open watch streams fail with UNAVAILABLE when an outage starts."""
    _script(sim)
    reader = asyncio.create_task(read_events(channel, "f", watch=True))
    await sim.wait_for(lambda: sim.open_streams == 1)
    sim.faults.unavailable_for(3600)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await reader
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    await sim.wait_for(lambda: sim.open_streams == 0)


async def test_break_streams_now(sim: ArmadaSimulator, channel: grpc.aio.Channel) -> None:
    """break_streams fails every open stream at once with the given code."""
    _script(sim)
    readers = [asyncio.create_task(read_events(channel, "f", watch=True)) for _ in range(3)]
    await sim.wait_for(lambda: sim.open_streams == 3)
    assert sim.break_streams(grpc.StatusCode.INTERNAL) == 3
    results = await asyncio.gather(*readers, return_exceptions=True)
    assert all(
        isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.INTERNAL
        for r in results
    )


async def test_slow_streams_still_deliver_everything(
    sim: ArmadaSimulator, channel: grpc.aio.Channel
) -> None:
    """A stream delay slows delivery without dropping or reordering events."""
    ids = _script(sim)
    sim.faults.slow_streams(0.01)
    assert [i for i, _ in await read_events(channel, "f")] == ids
    sim.faults.slow_streams(0)
    assert sim.faults.stream_delay_s == 0


async def test_held_streams_open_but_send_nothing_until_released(
    sim: ArmadaSimulator, channel: grpc.aio.Channel
) -> None:
    """Held streams count as open and wait; released, they deliver everything in order."""
    ids = _script(sim)
    sim.faults.hold_streams()
    readers = [asyncio.ensure_future(read_events(channel, "f")) for _ in range(3)]
    await sim.wait_for(lambda: sim.open_streams == 3)
    await asyncio.sleep(0.2)
    assert not any(r.done() for r in readers)
    assert sim.open_streams == 3
    sim.faults.release_streams()
    assert [[i for i, _ in got] for got in await asyncio.gather(*readers)] == [ids] * 3
    # Released means released: a stream opened now does not wait.
    assert [i for i, _ in await read_events(channel, "f")] == ids


def test_faults_clear_and_validate() -> None:
    """clear() removes every fault; negative counts and delays are refused."""
    faults = Faults()
    faults.end_streams_after(1)
    faults.deny_queue("a")
    faults.slow_streams(1)
    faults.hold_streams()
    faults.clear()
    assert (faults.stream_rules, faults.denied_queues, faults.stream_delay_s) == ([], set(), 0)
    assert faults.released is None
    with pytest.raises(ValueError, match="negative"):
        faults.break_streams_after(-1)
    with pytest.raises(ValueError, match="negative"):
        faults.slow_streams(-1)
