"""api.Submit, api.QueueService and api.Jobs over real gRPC with armada-client's client."""

from __future__ import annotations

import grpc
import pytest
from armada_client.armada import submit_pb2
from armada_client.asyncio_client import ArmadaAsyncIOClient
from armada_client.typings import JobState as ClientJobState

from armada_jobservice.sim import ArmadaSimulator, JobPhase

from .conftest import QUEUE, pod_spec, submit


async def _code_of(awaitable) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value.code()


async def test_submit_returns_one_id_per_item_and_the_jobs_finish(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient
) -> None:
    """SubmitJobs answers distinct ULID-like ids, and each job runs to its outcome."""
    ids = await submit(client, annotations=[{}, {"armada-sim/outcome": "failed"}])
    assert len(set(ids)) == 2
    assert all(len(i) == 26 for i in ids)
    await sim.wait_for_terminal(ids)
    assert [sim.job_phase(i) for i in ids] == [JobPhase.SUCCEEDED, JobPhase.FAILED]


async def test_submit_to_a_missing_queue_is_permission_denied(client: ArmadaAsyncIOClient) -> None:
    """As in Armada, an unknown queue fails authorisation: PERMISSION_DENIED."""
    assert await _code_of(submit(client, queue="nope")) == grpc.StatusCode.PERMISSION_DENIED


async def test_submit_without_a_job_set_id_is_invalid(client: ArmadaAsyncIOClient) -> None:
    """An empty job set id is INVALID_ARGUMENT."""
    assert await _code_of(submit(client, job_set_id="")) == grpc.StatusCode.INVALID_ARGUMENT


async def test_submit_without_a_pod_spec_is_invalid(client: ArmadaAsyncIOClient) -> None:
    """An item with no pod spec is INVALID_ARGUMENT, and no job is created."""
    item = client.create_job_request_item(priority=1)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.submit_jobs(QUEUE, "js", [item])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "PodSpec" in (info.value.details() or "")


async def test_submit_with_two_pod_specs_is_invalid(client: ArmadaAsyncIOClient) -> None:
    """Multi-pod jobs are refused as Armada refuses them."""
    item = client.create_job_request_item(pod_specs=[pod_spec(), pod_spec()])
    assert await _code_of(client.submit_jobs(QUEUE, "js", [item])) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_submit_with_a_bad_simulator_annotation_is_invalid(
    client: ArmadaAsyncIOClient,
) -> None:
    """A malformed armada-sim/ annotation is INVALID_ARGUMENT, naming the annotation."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await submit(client, annotations=[{"armada-sim/run-seconds": "later"}])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "armada-sim/run-seconds" in (info.value.details() or "")


async def test_resubmitting_a_client_id_returns_the_original_job(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient
) -> None:
    """A repeated client_id in the same queue is deduplicated to the first job's id."""
    item = client.create_job_request_item(pod_spec=pod_spec(), client_id="abc")
    first = await client.submit_jobs(QUEUE, "js", [item])
    second = await client.submit_jobs(QUEUE, "js", [item])
    assert first.job_response_items[0].job_id == second.job_response_items[0].job_id
    assert len(sim.job_ids(QUEUE, "js")) == 1


async def test_queue_crud(client: ArmadaAsyncIOClient) -> None:
    """Create, get, list and delete a queue; duplicates and missing queues get Armada's codes."""
    await client.create_queue(client.create_queue_request("other", priority_factor=2.0))
    assert (await client.get_queue("other")).priority_factor == 2.0
    assert (
        await _code_of(client.create_queue(client.create_queue_request("other", None)))
        == grpc.StatusCode.ALREADY_EXISTS
    )
    assert sorted(q.name for q in await client.get_queues()) == ["other", QUEUE]
    await client.delete_queue("other")
    await client.delete_queue("other")  # deleting a missing queue is not an error in Armada
    assert await _code_of(client.get_queue("other")) == grpc.StatusCode.NOT_FOUND


async def test_queue_methods_of_the_submit_service_work_too(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient
) -> None:
    """The deprecated queue rpcs of api.Submit reach the same queues."""
    await client.submit_stub.CreateQueue(submit_pb2.Queue(name="legacy", priority_factor=1))
    assert "legacy" in sim.queues
    got = await client.submit_stub.GetQueue(submit_pb2.QueueGetRequest(name="legacy"))
    assert got.name == "legacy"


async def test_cancel_a_held_job(sim: ArmadaSimulator, client: ArmadaAsyncIOClient) -> None:
    """CancelJobs cancels a live job: cancelling then cancelled, with requestor and reason."""
    [job_id] = await submit(client, annotations=[{"armada-sim/hold-at": "running"}])
    await sim.wait_for(lambda: sim.job_phase(job_id) is JobPhase.RUNNING)
    result = await client.submit_stub.CancelJobs(
        submit_pb2.JobCancelRequest(
            queue=QUEUE, job_set_id="js", job_ids=[job_id], reason="not needed"
        )
    )
    assert list(result.cancelled_ids) == [job_id]
    await sim.wait_for_terminal([job_id])
    kinds = [m.message.WhichOneof("events") for m in sim.events(QUEUE, "js")]
    assert kinds[-2:] == ["cancelling", "cancelled"]
    cancelled = sim.events(QUEUE, "js")[-1].message.cancelled
    assert (cancelled.requestor, cancelled.reason) == ("anonymous", "not needed")


async def test_cancel_job_set_with_a_state_filter(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient
) -> None:
    """CancelJobSet with filter QUEUED cancels only the queued jobs."""
    queued, running = await submit(
        client, annotations=[{"armada-sim/hold-at": "queued"}, {"armada-sim/hold-at": "running"}]
    )
    await sim.wait_for(lambda: sim.job_phase(running) is JobPhase.RUNNING)
    await client.cancel_jobset(QUEUE, "js", [ClientJobState.QUEUED])
    await sim.wait_for_terminal([queued])
    assert sim.job_phase(queued) is JobPhase.CANCELLED
    assert sim.job_phase(running) is JobPhase.RUNNING


async def test_cancel_job_set_rejects_pending_without_running(client: ArmadaAsyncIOClient) -> None:
    """PENDING and RUNNING must go together in a filter, as in Armada."""
    assert await _code_of(client.cancel_jobset(QUEUE, "js", [ClientJobState.PENDING])) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_cancel_needs_queue_and_job_set(client: ArmadaAsyncIOClient) -> None:
    """CancelJobs without a queue is INVALID_ARGUMENT; on a missing queue NOT_FOUND."""
    assert (
        await _code_of(
            client.submit_stub.CancelJobs(
                submit_pb2.JobCancelRequest(job_set_id="js", job_ids=["x"])
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        await _code_of(
            client.submit_stub.CancelJobs(
                submit_pb2.JobCancelRequest(queue="nope", job_set_id="js", job_ids=["x"])
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )


async def test_cancelling_a_finished_job_emits_nothing(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient
) -> None:
    """A terminal job stays as it was when cancelled."""
    [job_id] = await submit(client)
    await sim.wait_for_terminal([job_id])
    before = len(sim.events(QUEUE, "js"))
    await client.cancel_jobs(QUEUE, "js", job_id)
    assert len(sim.events(QUEUE, "js")) == before
    assert sim.job_phase(job_id) is JobPhase.SUCCEEDED


async def test_preempt_jobs(sim: ArmadaSimulator, client: ArmadaAsyncIOClient) -> None:
    """PreemptJobs ends a live job with preempting then preempted."""
    [job_id] = await submit(client, annotations=[{"armada-sim/hold-at": "running"}])
    await sim.wait_for(lambda: sim.job_phase(job_id) is JobPhase.RUNNING)
    await client.preempt_jobs(QUEUE, "js", job_id)
    assert sim.job_phase(job_id) is JobPhase.PREEMPTED
    kinds = [m.message.WhichOneof("events") for m in sim.events(QUEUE, "js")]
    assert kinds[-2:] == ["preempting", "preempted"]


async def test_jobs_api_reports_states_and_errors(
    sim: ArmadaSimulator, client: ArmadaAsyncIOClient
) -> None:
    """GetJobStatus maps states to api.JobState; GetJobErrors gives a failure's reason."""
    ok, bad, held = await submit(
        client,
        annotations=[
            {},
            {"armada-sim/outcome": "failed", "armada-sim/failure-reason": "disk full"},
            {"armada-sim/hold-at": "queued"},
        ],
    )
    await sim.wait_for_terminal([ok, bad])
    status = await client.get_job_status([ok, bad, held, "unknown-id"])
    assert dict(status.job_states) == {
        ok: submit_pb2.SUCCEEDED,
        bad: submit_pb2.FAILED,
        held: submit_pb2.QUEUED,
        "unknown-id": submit_pb2.UNKNOWN,
    }
    errors = await client.get_job_errors([ok, bad])
    assert dict(errors.job_errors) == {ok: "", bad: "disk full"}


async def test_health_of_submit_and_event_services(client: ArmadaAsyncIOClient) -> None:
    """Both Health rpcs answer SERVING."""
    assert (await client.submit_health()).status == 1
    assert (await client.event_health()).status == 1
