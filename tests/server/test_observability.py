"""What operators see: health checks, server reflection and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from armada_jobservice import AsyncJobServiceClient, JobState, ServingStatus
from armada_jobservice.server.app import JobServiceApp

from ..fake_armada import FakeArmada
from ..helpers import Connect, OpenChannel, Serve, eventually, metric

Q, JS = "queue-a", "job-set-1"


def scrape(app: JobServiceApp) -> str:
    """The text of the service's /metrics page (blocking: call it in a thread)."""
    url = f"http://127.0.0.1:{app.metrics_port}/metrics"
    with urllib.request.urlopen(url) as answer:
        text: str = answer.read().decode()
    return text


async def test_health_legacy_and_standard(
    service: JobServiceApp, client: AsyncJobServiceClient, open_channel: OpenChannel
) -> None:
    """The legacy Health rpc and grpc.health.v1 (liveness too) say SERVING with the database."""
    assert await client.health() == ServingStatus.SERVING
    stub = health_pb2_grpc.HealthStub(open_channel(service))
    for name in ("", "jobservice.JobService", "liveness"):
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(
    service: JobServiceApp, open_channel: OpenChannel
) -> None:
    """Server reflection names the job service and the health service (for grpcurl)."""
    stub = reflection_pb2_grpc.ServerReflectionStub(open_channel(service))

    async def requests() -> Any:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    answers = [answer async for answer in stub.ServerReflectionInfo(requests())]
    # Exactly one answer to the one request: a stream that yields nothing fails here.
    assert len(answers) == 1
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"jobservice.JobService", "grpc.health.v1.Health"} <= names


async def test_metrics_endpoint(armada: FakeArmada, serve: Serve, connect: Connect) -> None:
    """/metrics serves subscriptions, events, polls by state, flushes and cached jobs."""
    app = await serve(metrics_port=0, metrics_host="127.0.0.1")
    client = connect(app)
    await client.get_job_status(Q, JS, "job-1")
    armada.publish(Q, JS, "running", "job-1")
    await eventually(
        lambda: client.get_job_status(Q, JS, "job-1"), lambda r: r.state == JobState.RUNNING
    )
    await eventually(lambda: metric(app, "armada_jobservice_flush_batch_jobs_sum") > 0)
    text = await asyncio.to_thread(scrape, app)
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


async def test_metrics_show_an_event_loop_stall(serve: Serve) -> None:
    """A 0.3 s stall of the event loop shows in the lag histogram, above 0.1 s."""
    app = await serve(metrics_port=0, metrics_host="127.0.0.1")
    name = "armada_jobservice_event_loop_lag_seconds"

    def over_100ms() -> float:
        text = scrape(app)
        count = re.search(rf"^{name}_count (\S+)", text, re.M)
        upto = re.search(rf'^{name}_bucket{{le="0.1"}} (\S+)', text, re.M)
        assert count is not None
        assert upto is not None
        return float(count.group(1)) - float(upto.group(1))

    # Some lag samples first, so the stall is measured against a running probe.
    await eventually(lambda: metric(app, f"{name}_count") >= 2)
    before = await asyncio.to_thread(over_100ms)
    time.sleep(0.3)  # noqa: ASYNC251 - the stall under test: blocks the service's event loop
    await eventually(lambda: asyncio.to_thread(over_100ms), lambda n: n >= before + 1)
