"""Fixtures for the simulator's tests: a simulator on a free port and armada-client's clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from armada_client.asyncio_client import ArmadaAsyncIOClient
from armada_client.k8s.io.api.core.v1 import generated_pb2 as core_v1

from armada_jobservice.sim import ArmadaSimulator

QUEUE = "q"


@pytest.fixture
async def sim() -> AsyncIterator[ArmadaSimulator]:
    """A started simulator with queue ``q``, no delays (time scale 0) and a fixed seed."""
    async with ArmadaSimulator(queues=[QUEUE], time_scale=0.0, seed=7) as simulator:
        yield simulator


@pytest.fixture
async def channel(sim: ArmadaSimulator) -> AsyncIterator[grpc.aio.Channel]:
    """An asyncio channel to the simulator."""
    async with grpc.aio.insecure_channel(sim.address) as ch:
        yield ch


@pytest.fixture
def client(channel: grpc.aio.Channel) -> ArmadaAsyncIOClient:
    """armada-client's own asyncio client, talking to the simulator."""
    return ArmadaAsyncIOClient(channel)


def pod_spec() -> core_v1.PodSpec:
    """A minimal pod spec of one container."""
    return core_v1.PodSpec(containers=[core_v1.Container(name="main", image="busybox")])


async def submit(
    client: ArmadaAsyncIOClient,
    job_set_id: str = "js",
    annotations: list[dict[str, str]] | None = None,
    queue: str = QUEUE,
) -> list[str]:
    """Submit one job per annotation dict (one plain job by default) and return the ids."""
    items = [
        client.create_job_request_item(pod_spec=pod_spec(), annotations=a)
        for a in (annotations or [{}])
    ]
    response = await client.submit_jobs(queue, job_set_id, items)
    return [item.job_id for item in response.job_response_items]


async def read_events(
    channel: grpc.aio.Channel,
    job_set_id: str = "js",
    *,
    queue: str = QUEUE,
    from_message_id: str = "",
    watch: bool = False,
    error_if_missing: bool = False,
    limit: int | None = None,
) -> list[tuple[str, str]]:
    """Read a GetJobSetEvents stream into (message id, event kind) pairs."""
    from armada_client.armada import event_pb2, event_pb2_grpc

    stub = event_pb2_grpc.EventStub(channel)
    call = stub.GetJobSetEvents(
        event_pb2.JobSetRequest(
            id=job_set_id,
            queue=queue,
            from_message_id=from_message_id,
            watch=watch,
            errorIfMissing=error_if_missing,
        )
    )
    out: list[tuple[str, str]] = []
    async for message in call:
        out.append((message.id, message.message.WhichOneof("events") or ""))
        if limit is not None and len(out) >= limit:
            call.cancel()
            break
    return out
