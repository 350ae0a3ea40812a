"""Where does the job service's ingestion over many job sets spend its CPU?

A bare grpc.aio server (child process) serves, on every GetJobSetEvents
call, the same history of ``3 x JOBS`` events and then idles. This process
reads STREAMS such streams in one of three ways and prints events/s and its
own CPU time per event (all threads):

- ``base``: a receive-and-parse client, as the benchmark's baseline;
- ``direct``: an in-process ``JobServiceApp`` subscribed by calling
  ``SubscriptionManager.subscribe`` for each job set (no polls);
- ``polls``: the same service, subscribed by one first ``GetJobStatus`` per
  job set sent from a separate process (64 at a time), as in the benchmark.

    .venv/bin/python scripts/probes/ingest_experiment.py 1000 30 base direct polls
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import uvloop
from armada_client.armada import event_pb2, event_pb2_grpc

_POLLER = """
import asyncio, sys, grpc, uvloop
from armada_jobservice._gen import jobservice_pb2 as pb, jobservice_pb2_grpc as pbg
async def main(port, n):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub, sem = pbg.JobServiceStub(ch), asyncio.Semaphore(64)
        async def one(i):
            async with sem:
                request = pb.JobServiceRequest(queue="q", job_set_id=f"s{i}", job_id="j")
                await stub.GetJobStatus(request)
        await asyncio.gather(*(one(i) for i in range(n)))
uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def history(jobs: int) -> list[Any]:
    """Submitted, running and succeeded events of *jobs* jobs, in that order."""
    out: list[Any] = []
    for kind in ("submitted", "running", "succeeded"):
        for j in range(jobs):
            message = event_pb2.EventMessage()
            event = getattr(message, kind)
            event.job_id, event.job_set_id, event.queue = f"01m8hsccff33qrfhk1103{j:05d}", "s", "q"
            out.append(event_pb2.EventStreamMessage(id=f"{len(out) + 1:012d}-0", message=message))
    return out


class _Servicer(event_pb2_grpc.EventServicer):
    def __init__(self, jobs: int) -> None:
        self.messages = history(jobs)

    async def GetJobSetEvents(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for message in self.messages:
            yield message
        await asyncio.sleep(3600)


def _serve(jobs: int, ports: Any) -> None:
    async def main() -> None:
        limit = ("grpc.server.max_pending_requests", 100_000)
        hard = ("grpc.server.max_pending_requests_hard_limit", 100_000)
        server = grpc.aio.server(options=[limit, hard])
        event_pb2_grpc.add_EventServicer_to_server(_Servicer(jobs), server)  # type: ignore[no-untyped-call]
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await server.wait_for_termination()

    uvloop.run(main())


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _base(port: int, streams: int, total: int) -> tuple[float, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = event_pb2_grpc.EventStub(channel)  # type: ignore[no-untyped-call]
        await channel.channel_ready()
        got, done = [0], asyncio.Event()

        async def read(i: int) -> None:
            request = event_pb2.JobSetRequest(id=f"s{i}", queue="q", watch=True)
            async for msg in stub.GetJobSetEvents(request):
                kind = msg.message.WhichOneof("events")
                if kind and msg.id and getattr(msg.message, kind).job_id:
                    got[0] += 1
                    if got[0] >= total:
                        done.set()

        cpu, started = _cpu_s(), time.perf_counter()
        tasks = [asyncio.create_task(read(i)) for i in range(streams)]
        await done.wait()
        result = time.perf_counter() - started, _cpu_s() - cpu
        for task in tasks:
            task.cancel()
        return result


async def _service(port: int, streams: int, total: int, mode: str) -> tuple[float, float]:
    from armada_jobservice.server.app import JobServiceApp
    from armada_jobservice.server.config import Settings
    from armada_jobservice.server.model import JobSetKey

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            grpc_host="127.0.0.1",
            grpc_port=0,
            armada_url=f"127.0.0.1:{port}",
            database=f"sqlite:///{tmp}/js.db",
            max_subscriptions=streams + 10,
        )
        async with JobServiceApp(settings) as app:
            cpu, started = _cpu_s(), time.perf_counter()
            if mode == "direct":
                now = time.monotonic()
                for i in range(streams):
                    app.subscriptions.subscribe(JobSetKey("q", f"s{i}"), now)
            else:
                args = [sys.executable, "-c", _POLLER, str(app.grpc_port), str(streams)]
                poller = subprocess.Popen(args)  # noqa: ASYNC220 - started once, reaped at the end
            while app.changes.events_seen < total:  # noqa: ASYNC110 - sampling a counter
                await asyncio.sleep(0.005)
            result = time.perf_counter() - started, _cpu_s() - cpu
            if mode != "direct":
                poller.wait()
            return result


def main() -> None:
    """Run each named mode once, each in a fresh process against a fresh server."""
    streams, jobs, modes = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    if len(modes) > 1:
        # grpc.aio streams stall on a second event loop in one process.
        for mode in modes:
            subprocess.run([sys.executable, __file__, str(streams), str(jobs), mode], check=True)
        return
    total = streams * jobs * 3
    for mode in modes:
        ports: Any = mp.Queue()
        server = mp.Process(target=_serve, args=(jobs, ports))
        server.start()
        try:
            port = ports.get(timeout=30)
            run = (
                _base(port, streams, total)
                if mode == "base"
                else _service(port, streams, total, mode)
            )
            elapsed, cpu = uvloop.run(run)
        finally:
            server.terminate()
            server.join()
        rate, per_event = total / elapsed, cpu / total * 1e6
        print(f"{mode}: {rate:,.0f} events/s, {per_event:.1f} us CPU per event", flush=True)


if __name__ == "__main__":
    main()
