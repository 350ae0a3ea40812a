"""Answers for jobs whose events are gone, from the simulator's query API, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from armada_jobservice import AsyncJobServiceClient, JobState
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.config import Settings
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.sim import ArmadaSimulator

from ..helpers import eventually, metric

Q, JS = "q", "js"
FAILED = {"armada-sim/outcome": "failed", "armada-sim/failure-reason": "OOMKilled: 9 GiB"}
CANCELLED = {"armada-sim/outcome": "cancelled", "armada-sim/cancel-reason": "not needed"}


@pytest.fixture
async def sim() -> AsyncIterator[ArmadaSimulator]:
    """The simulator with queue ``q``, jobs ending at once."""
    async with ArmadaSimulator(queues=[Q], time_scale=0.0, seed=3) as simulator:
        yield simulator


@pytest.fixture
def settings(sim: ArmadaSimulator, tmp_path: Path) -> Settings:
    """A service on the simulator that counts a stream quiet for 0.2 s as caught up."""
    return Settings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        armada_url=sim.address,
        database=f"sqlite:///{tmp_path / 'jobservice.db'}",
        flush_interval_s=0.05,
        reconnect_max_backoff_s=0.2,
        backfill_quiet_s=0.2,
        backfill_queries_per_s=20.0,
        backfill_not_found_s=3600.0,
    )


Start = Callable[..., Awaitable[JobServiceApp]]


@pytest.fixture
async def start(settings: Settings) -> AsyncIterator[Start]:
    """Start a service (the fixture's settings, with overrides); all are stopped at the end."""
    apps: list[JobServiceApp] = []

    async def one(**overrides: Any) -> JobServiceApp:
        app = JobServiceApp(dataclasses.replace(settings, **overrides))
        await app.start()
        apps.append(app)
        return app

    yield one
    for app in apps:
        await app.stop()


async def finished_and_expired(sim: ArmadaSimulator, *annotations: dict[str, str]) -> list[str]:
    """Jobs that ran to their end in job set ``js``, whose events then expired."""
    ids = [sim.submit(Q, JS, a)[0] for a in annotations]
    await sim.wait_for_terminal(ids)
    assert sim.expire_events(Q, JS) > 0
    assert sim.events(Q, JS) == []
    return ids


def queries(sim: ArmadaSimulator) -> int:
    """Query-API calls the simulator answered."""
    return sum(sim.query_calls.values())


async def settled(app: JobServiceApp) -> None:
    """Wait until no job waits to be asked about."""
    await eventually(lambda: app.backfill.pending, lambda n: n == 0)


async def test_a_job_whose_events_expired_answers_its_end_from_the_query_api(
    sim: ArmadaSimulator, start: Start
) -> None:
    """After catch-up, expired jobs answer their true end (with texts), stored for a restart."""
    failed, succeeded, cancelled = await finished_and_expired(sim, FAILED, {}, CANCELLED)
    app = await start()
    async with AsyncJobServiceClient(f"127.0.0.1:{app.grpc_port}") as client:
        first = await client.get_job_status(Q, JS, failed)
        assert first.state is JobState.JOB_ID_NOT_FOUND  # the stream has not caught up yet

        async def poll(job_id: str) -> Any:
            return await client.get_job_status(Q, JS, job_id)

        answer = await eventually(lambda: poll(failed), lambda s: s.state is JobState.FAILED)
        assert "OOMKilled: 9 GiB" in answer.error
        done = await eventually(lambda: poll(succeeded), lambda s: s.state is JobState.SUCCEEDED)
        assert done.error == ""
        gone = await eventually(lambda: poll(cancelled), lambda s: s.state is JobState.CANCELLED)
        assert "not needed" in gone.error
    assert sim.query_calls["GetJobDetails"] >= 1
    assert sim.query_calls["GetJobErrors"] >= 1
    assert metric(app, "armada_jobservice_backfill_jobs_answered_total") == 3
    asked = queries(sim)
    await app.stop()

    again = await start()
    async with AsyncJobServiceClient(f"127.0.0.1:{again.grpc_port}") as client:
        stored = await client.get_job_status(Q, JS, failed)
        assert stored.state is JobState.FAILED
        assert "OOMKilled: 9 GiB" in stored.error
        assert (await client.get_job_status(Q, JS, cancelled)).state is JobState.CANCELLED
    assert queries(sim) == asked


async def test_an_unknown_id_is_asked_about_once_not_per_poll(
    sim: ArmadaSimulator, start: Start
) -> None:
    """A truly unknown id answers JOB_ID_NOT_FOUND, and later polls cause no further query."""
    known = sim.submit(Q, JS)[0]
    await sim.wait_for_terminal([known])
    app = await start()
    async with AsyncJobServiceClient(f"127.0.0.1:{app.grpc_port}") as client:

        async def poll() -> Any:
            return await client.get_job_status(Q, JS, "no-such-job")

        await eventually(lambda: _poll_then_count(poll, sim), lambda n: n >= 1)
        await settled(app)
        asked = queries(sim)
        for _ in range(30):
            assert (await poll()).state is JobState.JOB_ID_NOT_FOUND
        await settled(app)
        assert queries(sim) == asked == 1
        assert (await client.get_job_status(Q, JS, known)).state is JobState.SUCCEEDED
    assert app.backfill.not_found == 1


async def _poll_then_count(poll: Callable[[], Awaitable[Any]], sim: ArmadaSimulator) -> int:
    assert (await poll()).state is JobState.JOB_ID_NOT_FOUND
    return sim.query_calls["GetJobDetails"]


async def test_a_job_of_another_job_set_is_not_answered(sim: ArmadaSimulator, start: Start) -> None:
    """A job named under a job set it is not in stays JOB_ID_NOT_FOUND (no cross-queue answers)."""
    (other,) = [sim.submit(Q, "elsewhere", FAILED)[0]]
    await sim.wait_for_terminal([other])
    sim.submit(Q, JS)
    app = await start()
    async with AsyncJobServiceClient(f"127.0.0.1:{app.grpc_port}") as client:
        await eventually(lambda: _poll_job_then_count(client, other, app), lambda n: n >= 1)
        await settled(app)
        assert (await client.get_job_status(Q, JS, other)).state is JobState.JOB_ID_NOT_FOUND
    assert app.backfill.answered == 0


async def _poll_job_then_count(
    client: AsyncJobServiceClient, job_id: str, app: JobServiceApp
) -> int:
    assert (await client.get_job_status(Q, JS, job_id)).state is JobState.JOB_ID_NOT_FOUND
    return app.backfill.not_found


async def test_many_unknown_jobs_are_asked_about_in_few_batches(
    sim: ArmadaSimulator, start: Start
) -> None:
    """250 expired jobs polled at once take a handful of GetJobDetails calls, not 250."""
    ids = await finished_and_expired(sim, *([{}] * 250))
    app = await start(backfill_batch_size=100, backfill_queries_per_s=2.0)
    async with AsyncJobServiceClient(f"127.0.0.1:{app.grpc_port}") as client:
        await client.get_job_status(Q, JS, "first-poll")
        js = app.subscriptions.job_sets[JobSetKey(Q, JS)]
        await eventually(lambda: app.backfill.caught_up(js, time.monotonic()))

        async def all_answered() -> bool:
            answers = await asyncio.gather(*(client.get_job_status(Q, JS, j) for j in ids))
            return all(a.state is JobState.SUCCEEDED for a in answers)

        await eventually(all_answered, timeout=30.0, interval=0.2)
    assert sim.query_calls["GetJobDetails"] <= 250 // 100 + 2
    assert sim.query_calls["GetJobErrors"] == 0
    assert app.backfill.answered == 250


async def test_a_refusing_query_api_leaves_jobs_unknown_then_answered_once_it_works(
    sim: ArmadaSimulator, start: Start
) -> None:
    """While the query API refuses, polls answer JOB_ID_NOT_FOUND, nothing waits; then the truth."""
    (failed,) = await finished_and_expired(sim, FAILED)
    sim.query_refusal = grpc.StatusCode.PERMISSION_DENIED
    app = await start()
    async with AsyncJobServiceClient(f"127.0.0.1:{app.grpc_port}") as client:

        async def poll() -> Any:
            return await client.get_job_status(Q, JS, failed)

        await eventually(lambda: _poll_then_failures(poll, app), lambda n: n >= 1, interval=0.05)
        await settled(app)
        assert (await poll()).state is JobState.JOB_ID_NOT_FOUND
        assert metric(app, "armada_jobservice_backfill_failures_total") >= 1
        sim.query_refusal = None
        answer = await eventually(poll, lambda s: s.state is JobState.FAILED, interval=0.1)
        assert "OOMKilled" in answer.error


async def _poll_then_failures(poll: Callable[[], Awaitable[Any]], app: JobServiceApp) -> int:
    assert (await poll()).state is JobState.JOB_ID_NOT_FOUND
    return sum(app.backfill.failures.values())


async def test_in_a_fleet_only_the_owner_asks_and_followers_answer_from_the_database(
    sim: ArmadaSimulator, start: Start, pg_url: str
) -> None:
    """Two replicas polled alike: the lease holder asks Armada, the other reads its rows."""
    (failed,) = await finished_and_expired(sim, FAILED)
    fleet = [await start(database=pg_url, replica_name=f"r{n}", lease_ttl_s=3.0) for n in range(2)]
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(AsyncJobServiceClient(f"127.0.0.1:{app.grpc_port}"))
            for app in fleet
        ]

        async def every_replica_answers() -> bool:
            answers = [await c.get_job_status(Q, JS, failed) for c in clients]
            return all(a.state is JobState.FAILED and "OOMKilled" in a.error for a in answers)

        await eventually(every_replica_answers, interval=0.05)
    owners = [app for app in fleet if JobSetKey(Q, JS) in app.fleet.owned]  # type: ignore[union-attr]
    assert len(owners) == 1
    (follower,) = [app for app in fleet if app is not owners[0]]
    assert owners[0].backfill.answered == 1
    assert follower.backfill.queries == 0
    assert follower.backfill.answered == 0


async def test_polls_beyond_the_pending_bound_are_not_queued(
    sim: ArmadaSimulator, start: Start
) -> None:
    """With at most 5 waiting and one call per 1,000 s, 20 unknown jobs queue at most 5."""
    ids = await finished_and_expired(sim, *([{}] * 20))
    app = await start(backfill_max_pending=5, backfill_queries_per_s=0.001)
    async with AsyncJobServiceClient(f"127.0.0.1:{app.grpc_port}") as client:
        await client.get_job_status(Q, JS, "first-poll")
        js = app.subscriptions.job_sets[JobSetKey(Q, JS)]
        await eventually(lambda: app.backfill.caught_up(js, time.monotonic()))
        answers = await asyncio.gather(*(client.get_job_status(Q, JS, j) for j in ids))
    assert {a.state for a in answers} == {JobState.JOB_ID_NOT_FOUND}
    assert app.backfill.pending <= 5
    # The first call took at most 5; every other poll was queued or refused.
    assert app.backfill.dropped >= 20 - 5 - 5
    assert metric(app, "armada_jobservice_backfill_jobs_not_queued_total") == app.backfill.dropped


async def test_events_expired_by_the_simulators_retention_are_backfilled(
    start: Start, settings: Settings
) -> None:
    """With a real retention time (not a step), an expired failure still answers FAILED."""
    async with ArmadaSimulator(queues=[Q], time_scale=0.0, event_retention_s=0.3) as sim:
        (failed,) = [sim.submit(Q, JS, FAILED)[0]]
        await sim.wait_for_terminal([failed])
        await eventually(lambda: not sim.event_log.exists(Q, JS))
        app = await start(armada_url=sim.address)
        async with AsyncJobServiceClient(f"127.0.0.1:{app.grpc_port}") as client:
            answer = await eventually(
                lambda: client.get_job_status(Q, JS, failed),
                lambda s: s.state is JobState.FAILED,
            )
        assert "OOMKilled" in answer.error
        assert sim.query_calls["GetJobDetails"] >= 1
        await app.stop()
