"""Both clients' batch and watch calls, against the real service and against an older one."""

from __future__ import annotations

import asyncio
import threading

import pytest

from armada_jobservice import (
    AsyncJobServiceClient,
    JobNotFoundTimeout,
    JobServiceClient,
    JobState,
    JobStatus,
    JobUpdate,
    RPCError,
)
from armada_jobservice.server.app import JobServiceApp

from ..fake_armada import FakeArmada
from ..helpers import Connect, eventually, metric
from .conftest import Server, State

Q, JS = "queue-a", "job-set-1"


def target(app: JobServiceApp) -> str:
    """The address of a running service."""
    return f"127.0.0.1:{app.grpc_port}"


async def test_blocking_client_batches_and_watches(
    armada: FakeArmada, service: JobServiceApp
) -> None:
    """``get_job_statuses`` answers in order across job sets; ``watch_jobs`` follows to the end."""
    armada.publish(Q, JS, "running", "a")
    with JobServiceClient(target(service)) as client:
        asked = [(Q, JS, "a"), (Q, "other", "b")]
        answers = await eventually(
            lambda: asyncio.to_thread(client.get_job_statuses, asked),
            lambda r: r[0].state is JobState.RUNNING,
        )
        assert answers == [JobStatus(JobState.RUNNING), JobStatus(JobState.JOB_ID_NOT_FOUND)]
        updates = client.watch_jobs(Q, JS, ["a"])
        first = await asyncio.to_thread(next, updates)
        assert first == JobUpdate("a", JobStatus(JobState.RUNNING))
        armada.publish(Q, JS, "succeeded", "a")
        rest = await asyncio.to_thread(list, updates)
    assert rest == [JobUpdate("a", JobStatus(JobState.SUCCEEDED))]
    assert metric(service, "armada_jobservice_calls_total", method="GetJobStatuses") == 2


async def test_blocking_wait_for_jobs_watches_to_the_end(
    armada: FakeArmada, service: JobServiceApp
) -> None:
    """``wait_for_jobs`` returns every job's end, learned from one watch and no polls."""
    seen: list[JobUpdate] = []
    started = threading.Event()

    def on_update(update: JobUpdate) -> None:
        seen.append(update)
        started.set()

    with JobServiceClient(target(service)) as client:
        waiting = asyncio.ensure_future(
            asyncio.to_thread(client.wait_for_jobs, Q, JS, ["a", "b"], on_update=on_update)
        )
        await asyncio.to_thread(started.wait, 10)
        armada.publish(Q, JS, "succeeded", "a")
        armada.publish(Q, JS, "failed", "b", reason="oom")
        results = await waiting
    assert results == {"a": JobStatus(JobState.SUCCEEDED), "b": JobStatus(JobState.FAILED, "oom")}
    assert seen[-1].status.state.is_terminal
    assert metric(service, "armada_jobservice_calls_total", method="WatchJobs") == 1
    assert metric(service, "armada_jobservice_calls_total", method="GetJobStatus") == 0


async def test_a_watching_wait_still_gives_up_on_a_job_never_found(
    service: JobServiceApp, connect: Connect
) -> None:
    """No update comes for an unknown job: the not-found timeout still ends the wait."""
    client = connect(service)
    with pytest.raises(JobNotFoundTimeout) as caught:
        await client.wait_for_job(Q, JS, "never", not_found_timeout_s=0.2)
    assert caught.value.last_status == JobStatus(JobState.JOB_ID_NOT_FOUND)
    assert metric(service, "armada_jobservice_calls_total", method="GetJobStatus") == 0


async def test_concurrent_polls_of_one_async_client_share_calls(
    armada: FakeArmada, service: JobServiceApp, connect: Connect
) -> None:
    """Two hundred concurrent polls go out in a few GetJobStatuses calls, answered right."""
    armada.publish(Q, JS, "running", "job-7")
    client = connect(service)
    await eventually(
        lambda: client.get_job_status(Q, JS, "job-7"), lambda s: s.state is JobState.RUNNING
    )
    before = client.calls_shared
    answers = await asyncio.gather(*(client.get_job_status(Q, JS, f"job-{n}") for n in range(200)))
    calls, polls = (a - b for a, b in zip(client.calls_shared, before, strict=True))
    assert polls == 200
    assert calls < 20
    assert answers[7] == JobStatus(JobState.RUNNING)
    assert {a.state for i, a in enumerate(answers) if i != 7} == {JobState.JOB_ID_NOT_FOUND}
    assert metric(service, "armada_jobservice_calls_total", method="GetJobStatuses") == calls


async def test_one_bad_poll_fails_alone_when_polls_are_shared(
    service: JobServiceApp, connect: Connect
) -> None:
    """A poll with an empty job id fails (INVALID_ARGUMENT); the polls sharing its call do not."""
    client = connect(service)
    answers = await asyncio.gather(
        client.get_job_status(Q, JS, "a"),
        client.get_job_status(Q, JS, ""),
        client.get_job_status(Q, JS, "b"),
        return_exceptions=True,
    )
    assert answers[0] == answers[2] == JobStatus(JobState.JOB_ID_NOT_FOUND)
    assert isinstance(answers[1], RPCError)
    assert answers[1].code == "INVALID_ARGUMENT"


async def test_concurrent_waits_on_one_job_set_share_one_watch(
    armada: FakeArmada, service: JobServiceApp, connect: Connect
) -> None:
    """Fifty waits on one job set: one stream (or a few, as waits join); every wait ends right."""
    client = connect(service)
    waits = [asyncio.ensure_future(client.wait_for_job(Q, JS, f"job-{n}")) for n in range(50)]
    await eventually(lambda: metric(service, "armada_jobservice_watch_streams_open") >= 1)
    for n in range(50):
        armada.publish(Q, JS, "succeeded" if n % 2 else "cancelled", f"job-{n}")
    results = await asyncio.gather(*waits)
    assert [r.state for r in results] == [
        JobState.SUCCEEDED if n % 2 else JobState.CANCELLED for n in range(50)
    ]
    opened = metric(service, "armada_jobservice_calls_total", method="WatchJobs")
    assert opened == client.watches_opened
    assert opened <= 3
    assert metric(service, "armada_jobservice_calls_total", method="GetJobStatus") == 0


async def test_a_wait_joining_an_open_watch_gets_its_jobs_current_state(
    armada: FakeArmada, service: JobServiceApp, connect: Connect
) -> None:
    """A second wait on a job an open watch already follows learns its state from the watch."""
    client = connect(service)
    first = asyncio.ensure_future(client.wait_for_job(Q, JS, "a"))
    await eventually(lambda: metric(service, "armada_jobservice_watch_streams_open") == 1)
    armada.publish(Q, JS, "running", "a")
    seen: list[JobStatus] = []
    await eventually(
        lambda: client.get_job_status(Q, JS, "a"), lambda s: s.state is JobState.RUNNING
    )
    second = asyncio.ensure_future(client.wait_for_job(Q, JS, "a", on_status=seen.append))
    await eventually(lambda: seen)
    assert seen[0] == JobStatus(JobState.RUNNING)
    armada.publish(Q, JS, "succeeded", "a")
    assert await first == await second == JobStatus(JobState.SUCCEEDED)
    assert client.watches_opened == 1


def test_an_older_service_is_polled_by_both_clients(server: Server) -> None:
    """A service without the new rpcs answers UNIMPLEMENTED: the clients poll GetJobStatus."""
    server.script.answers["a"] = [(State.RUNNING, ""), (State.SUCCEEDED, "")]
    server.script.answers["b"] = [(State.FAILED, "oom")]
    with JobServiceClient(server.target) as client:
        assert client.get_job_statuses([("q", "s", "a"), ("q", "s", "b")]) == [
            JobStatus(JobState.RUNNING),
            JobStatus(JobState.FAILED, "oom"),
        ]
        with pytest.raises(RPCError) as caught:
            next(client.watch_jobs("q", "s", ["a"]))
        assert caught.value.code == "UNIMPLEMENTED"
        results = client.wait_for_jobs("q", "s", ["a", "b"], poll_interval_s=0.01)
    assert results == {"a": JobStatus(JobState.SUCCEEDED), "b": JobStatus(JobState.FAILED, "oom")}
    polled = [r.job_id for r in server.script.requests]
    assert polled[:2] == ["a", "b"]
    assert "a" in polled[2:]

    async def go() -> JobStatus:
        server.script.answers["c"] = [(State.SUBMITTED, ""), (State.CANCELLED, "by bob")]
        async with AsyncJobServiceClient(server.target) as client:
            return await client.wait_for_job("q", "s", "c", poll_interval_s=0.01)

    assert asyncio.run(go()) == JobStatus(JobState.CANCELLED, "by bob")
    assert [r.job_id for r in server.script.requests].count("c") == 2


async def test_a_wait_for_a_new_job_reopens_the_shared_watch_listing_both(
    armada: FakeArmada, service: JobServiceApp, connect: Connect
) -> None:
    """A second wait bringing a job the open watch does not list: one stream again, for both."""
    client = connect(service)
    first = asyncio.ensure_future(client.wait_for_job(Q, JS, "a"))
    await eventually(lambda: metric(service, "armada_jobservice_watch_streams_open") == 1)
    second = asyncio.ensure_future(client.wait_for_job(Q, JS, "b"))
    await eventually(lambda: client.watches_opened == 2)
    await eventually(lambda: metric(service, "armada_jobservice_watch_streams_open") == 1)
    armada.publish(Q, JS, "succeeded", "b")
    armada.publish(Q, JS, "failed", "a", reason="oom")
    assert await second == JobStatus(JobState.SUCCEEDED)
    assert await first == JobStatus(JobState.FAILED, "oom")
    assert metric(service, "armada_jobservice_calls_total", method="WatchJobs") == 2
