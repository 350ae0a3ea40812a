"""Database outages, caused for real: PostgreSQL's connections cut, SQLite's disk full.

While the database is away the service answers from memory, keeps every
change it could not write, says NOT_SERVING when its database does not answer,
and writes everything once the database is back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from armada_jobservice import JobState, ServingStatus
from armada_jobservice._wire import WireState
from armada_jobservice.server.app import LIVENESS_SERVICE, JobServiceApp
from armada_jobservice.server.model import JobRow, JobSetKey
from armada_jobservice.server.store.base import JobSetWrite

from ..fake_armada import FakeArmada
from ..helpers import Connect, OpenChannel, eventually, metric
from .outages import DatabaseOutage

Q, JS = "queue-a", "job-set-1"

postgres_only = pytest.mark.parametrize("database_outage", ["postgres"], indirect=True)
sqlite_only = pytest.mark.parametrize("database_outage", ["sqlite"], indirect=True)


async def test_failed_flush_loses_nothing(
    armada: FakeArmada,
    database_outage: DatabaseOutage,
    outage_service: JobServiceApp,
    connect: Connect,
) -> None:
    """Changes the database refuses are answered from memory and written once it is back."""
    app = outage_service
    client = connect(app)
    await client.get_job_status(Q, JS, "job-1")
    armada.publish(Q, JS, "running", "job-2")
    await eventually(
        lambda: client.get_job_status(Q, JS, "job-2"), lambda r: r.state == JobState.RUNNING
    )
    await eventually(lambda: app.subscriptions.job_sets[(Q, JS)].is_clean())
    await database_outage.begin()
    armada.publish(Q, JS, "succeeded", "job-1")
    # Polls are answered from memory while the database refuses the change.
    await eventually(
        lambda: client.get_job_status(Q, JS, "job-1"), lambda r: r.state == JobState.SUCCEEDED
    )
    await eventually(lambda: metric(app, "armada_jobservice_flush_failures_total") >= 2)
    assert not app.subscriptions.job_sets[(Q, JS)].is_clean()
    assert (await client.get_job_status(Q, JS, "job-2")).state == JobState.RUNNING
    await database_outage.end()
    await eventually(lambda: app.subscriptions.job_sets[(Q, JS)].is_clean())
    stored = await app.store.load_job_set((Q, JS))
    assert stored is not None
    assert sorted((r.job_id, r.state) for r in stored.rows) == [
        ("job-1", WireState.SUCCEEDED),
        ("job-2", WireState.RUNNING),
    ]
    assert stored.last_message_id == armada.logs[(Q, JS)][-1].id


@postgres_only
async def test_health_says_not_serving_while_the_database_is_away(
    database_outage: DatabaseOutage,
    outage_service: JobServiceApp,
    connect: Connect,
    open_channel: OpenChannel,
) -> None:
    """Without its database both health checks say NOT_SERVING, not an error; then SERVING."""
    app = outage_service
    client = connect(app)
    standard = health_pb2_grpc.HealthStub(open_channel(app))

    async def standard_status(service: str = "") -> int:
        answer = await standard.Check(health_pb2.HealthCheckRequest(service=service))
        return int(answer.status)

    await database_outage.begin()
    assert await app.writer.check_store() is False
    assert await client.health() == ServingStatus.NOT_SERVING
    # The standard service is refreshed by the health loop, about once a second.
    await eventually(standard_status, lambda s: s == health_pb2.HealthCheckResponse.NOT_SERVING)
    assert metric(app, "armada_jobservice_serving") == 0
    # Liveness is the process, not its database: a restart would not mend this.
    assert await standard_status(LIVENESS_SERVICE) == health_pb2.HealthCheckResponse.SERVING
    await database_outage.end()
    assert await app.writer.check_store() is True
    assert await client.health() == ServingStatus.SERVING
    await eventually(standard_status, lambda s: s == health_pb2.HealthCheckResponse.SERVING)
    assert metric(app, "armada_jobservice_serving") == 1


@postgres_only
async def test_unreadable_database_answers_connection_err(
    database_outage: DatabaseOutage, outage_service: JobServiceApp, connect: Connect
) -> None:
    """An unreadable new job set answers CONNECTION_ERR; it is read once the database returns."""
    client = connect(outage_service)
    await database_outage.begin()
    reply = await client.get_job_status(Q, "unreadable", "job-1")
    assert reply.state == JobState.CONNECTION_ERR
    assert "database" in reply.error
    await database_outage.end()
    reply = await eventually(
        lambda: client.get_job_status(Q, "unreadable", "job-1"),
        lambda r: r.state == JobState.JOB_ID_NOT_FOUND,
    )
    assert reply.error == ""


@sqlite_only
async def test_full_disk_still_loads_stored_job_sets(
    database_outage: DatabaseOutage, outage_service: JobServiceApp, connect: Connect
) -> None:
    """A full disk stops SQLite's writes only: a stored job set is still loaded and answered."""
    app = outage_service
    row = JobRow("job-1", WireState.FAILED, "boom")
    await app.store.write([JobSetWrite(JobSetKey(Q, "stored"), "m-1", time.time(), [row])])
    await database_outage.begin()
    reply = await connect(app).get_job_status(Q, "stored", "job-1")
    assert (reply.state, reply.error) == (JobState.FAILED, "boom")


@sqlite_only
async def test_refused_flushes_back_off_and_are_logged_once(
    armada: FakeArmada,
    database_outage: DatabaseOutage,
    outage_service: JobServiceApp,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full disk is retried with a doubling delay, logged once, and its recovery logged."""
    app = outage_service
    client = connect(app)
    await client.get_job_status(Q, JS, "job-1")
    await eventually(lambda: app.subscriptions.job_sets[(Q, JS)].is_clean())
    await database_outage.begin()
    armada.publish(Q, JS, "running", "job-1")
    caplog.set_level(logging.INFO, logger="armada_jobservice.server.writer")
    await eventually(lambda: metric(app, "armada_jobservice_flush_failures_total") >= 1)
    started = time.monotonic()
    await asyncio.sleep(3.0)
    refused = metric(app, "armada_jobservice_flush_failures_total")
    elapsed = time.monotonic() - started
    # Retried after 0.1, 0.2, 0.4, 0.8, 1.6 s: about six tries in three
    # seconds (a retry every 0.1 s would make thirty).
    assert 2 <= refused <= 2 + math.log2(elapsed / 0.1 + 1), refused
    # One line for the whole outage so far, not one per try.
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith("flush of 1 jobs failed, will retry:"), errors
    await database_outage.end()
    await eventually(lambda: app.subscriptions.job_sets[(Q, JS)].is_clean())
    messages = [r.getMessage() for r in caplog.records]
    assert any("took a flush again after" in m for m in messages), messages
    stored = await app.store.load_job_set((Q, JS))
    assert stored is not None
    assert [(r.job_id, r.state) for r in stored.rows] == [("job-1", WireState.RUNNING)]
