"""``ArmadaJobServiceTrigger`` in one event loop, as the triggerer runs many: one shared client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("airflow", reason="Airflow is not installed; run scripts/test-airflow")

from armada_jobservice.airflow import ArmadaJobServiceTrigger, _armada
from armada_jobservice.airflow._shared import open_clients, shared_client

from .dagfile import POD


async def test_one_client_per_service_and_token() -> None:
    """Users of one address and token share a client; another token gets its own; all close."""
    async with (
        shared_client("127.0.0.1:1", tls=False, token=None) as a,
        shared_client("127.0.0.1:1", tls=False, token=None) as b,
        shared_client("127.0.0.1:1", tls=False, token="t") as c,
    ):
        assert a is b
        assert c is not a
        assert open_clients() == 2
    assert open_clients() == 0


def submit(stack: dict[str, str], job_set_id: str, outcome: str, **more: str) -> str:
    """Submit one scripted job to the simulator through armada-client (more: annotations)."""
    import grpc

    item = _armada.request_item(
        pod_spec=POD,
        priority=1.0,
        namespace=None,
        labels={},
        annotations={"armada-sim/outcome": outcome, **more},
    )
    with grpc.insecure_channel(stack["armada"]) as channel:
        client = _armada.armada_client(channel)
        return _armada.submit_item(client, queue="airflow", job_set_id=job_set_id, item=item)


async def test_concurrent_triggers_each_get_their_job(stack: dict[str, str]) -> None:
    """Triggers waiting at once on one shared client each fire their own job's end."""
    jobs = {outcome: submit(stack, "trigger-set", outcome) for outcome in ("succeeded", "failed")}

    async def fire(job_id: str) -> dict[str, Any]:
        trigger = ArmadaJobServiceTrigger(
            queue="airflow",
            job_set_id="trigger-set",
            job_id=job_id,
            jobservice_url=stack["jobservice"],
            poll_interval_s=0.05,
        )
        [event] = [e async for e in trigger.run()]
        return dict(event.payload)

    events = await asyncio.gather(*(fire(job_id) for job_id in jobs.values()))
    assert [(e["job_id"], e["state"]) for e in events] == [
        (jobs["succeeded"], "SUCCEEDED"),
        (jobs["failed"], "FAILED"),
    ]
    assert open_clients() == 0


async def test_on_kill_cancels_the_job(stack: dict[str, str]) -> None:
    """When a user kills the deferred task, the trigger's on_kill cancels the Armada job."""
    from armada_jobservice import AsyncJobServiceClient, JobState

    job_id = submit(stack, "trigger-kill", "succeeded", **{"armada-sim/hold-at": "running"})
    trigger = ArmadaJobServiceTrigger(
        queue="airflow",
        job_set_id="trigger-kill",
        job_id=job_id,
        jobservice_url=stack["jobservice"],
        armada_url=stack["armada"],
    )
    await trigger.on_kill()
    # Held at running, the job only ends if the cancellation reached Armada.
    async with AsyncJobServiceClient(stack["jobservice"]) as client:
        final = await client.wait_for_job(
            "airflow", "trigger-kill", job_id, poll_interval_s=0.05, timeout_s=30
        )
    assert final.state is JobState.CANCELLED
