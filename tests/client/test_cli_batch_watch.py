"""``status`` asks in one call and ``wait`` watches; both still work with an older service."""

from __future__ import annotations

import asyncio
import json

from armada_jobservice.cli.exit_codes import ExitCode
from armada_jobservice.server.app import JobServiceApp

from ..fake_armada import FakeArmada
from ..helpers import eventually, metric
from .conftest import Server, State
from .test_cli_client import cli, run_cli

Q, JS = "queue-a", "job-set-1"


async def test_status_of_many_jobs_is_one_call(armada: FakeArmada, service: JobServiceApp) -> None:
    """Three job ids: one GetJobStatuses call, no GetJobStatus, one line per job in order."""
    target = f"127.0.0.1:{service.grpc_port}"
    code, out, _ = await cli("status", Q, JS, "c", "a", "b", "--target", target, "--output", "json")
    assert code == ExitCode.NOT_FOUND
    assert [row["job_id"] for row in json.loads(out)] == ["c", "a", "b"]
    assert metric(service, "armada_jobservice_calls_total", method="GetJobStatuses") == 1
    assert metric(service, "armada_jobservice_calls_total", method="GetJobStatus") == 0


async def test_wait_watches_instead_of_polling(armada: FakeArmada, service: JobServiceApp) -> None:
    """wait opens one watch for its jobs and makes no poll; it exits 0 when all succeeded."""
    target = f"127.0.0.1:{service.grpc_port}"
    waiting = asyncio.ensure_future(cli("wait", Q, JS, "a", "b", "--target", target))
    await eventually(lambda: metric(service, "armada_jobservice_watch_streams_open") == 1)
    armada.publish(Q, JS, "succeeded", "a")
    armada.publish(Q, JS, "succeeded", "b")
    code, out, _ = await waiting
    assert code == ExitCode.OK
    assert [line.split() for line in out.splitlines()] == [["a", "SUCCEEDED"], ["b", "SUCCEEDED"]]
    assert metric(service, "armada_jobservice_calls_total", method="WatchJobs") == 1
    assert metric(service, "armada_jobservice_calls_total", method="GetJobStatus") == 0


def test_status_and_wait_poll_an_older_service(server: Server) -> None:
    """A service without GetJobStatuses and WatchJobs is asked one job at a time instead."""
    server.script.answers["a"] = [(State.SUCCEEDED, "")]
    server.script.answers["b"] = [(State.RUNNING, ""), (State.FAILED, "oom")]
    proc = run_cli("status", "q", "s", "a", "b", "--target", server.target)
    assert proc.returncode == ExitCode.IN_PROGRESS, proc.stderr
    assert [r.job_id for r in server.script.requests] == ["a", "b"]
    proc = run_cli("wait", "q", "s", "a", "b", "--target", server.target, "--poll-interval", "0.01")
    assert proc.returncode == ExitCode.FAILED, proc.stderr
    assert proc.stdout.split() == ["a", "SUCCEEDED", "b", "FAILED", "oom"]
