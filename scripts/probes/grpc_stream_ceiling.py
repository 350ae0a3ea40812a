"""How fast can a bare grpc.aio server stream events on this machine?

A reference for the simulator's delivery rate: a server in a child process
(uvloop) yields one prebuilt ``EventStreamMessage`` over and over; this
process reads every stream to its end on one channel and reports messages
per second and the server's CPU time per message.

    .venv/bin/python scripts/probes/grpc_stream_ceiling.py            # 1x30000, 1000x90, 100x2000
    .venv/bin/python scripts/probes/grpc_stream_ceiling.py 100 2000   # streams, messages per stream
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import uvloop
from armada_client.armada import event_pb2, event_pb2_grpc

from armada_jobservice.bench.procfs import cpu_s

MESSAGE = event_pb2.EventStreamMessage(
    id="000000000001-0",
    message=event_pb2.EventMessage(
        submitted=event_pb2.JobSubmittedEvent(
            job_id="01m8hsccff33qrfhk1103n1xqb", job_set_id="set", queue="q"
        )
    ),
)


class _Servicer(event_pb2_grpc.EventServicer):
    def __init__(self, per_stream: int) -> None:
        self.per_stream = per_stream

    async def GetJobSetEvents(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for _ in range(self.per_stream):
            yield MESSAGE


def _serve(per_stream: int, ports: Any) -> None:
    async def main() -> None:
        server = grpc.aio.server()
        event_pb2_grpc.add_EventServicer_to_server(_Servicer(per_stream), server)  # type: ignore[no-untyped-call]
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await server.wait_for_termination()

    uvloop.run(main())


async def _read_all(port: int, streams: int) -> tuple[int, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = event_pb2_grpc.EventStub(channel)  # type: ignore[no-untyped-call]
        await channel.channel_ready()

        async def one() -> int:
            n = 0
            async for _ in stub.GetJobSetEvents(event_pb2.JobSetRequest(id="s", queue="q")):
                n += 1
            return n

        started = time.perf_counter()
        counts = await asyncio.gather(*(one() for _ in range(streams)))
        return sum(counts), time.perf_counter() - started


def measure(streams: int, per_stream: int) -> None:
    """Print messages/s and server CPU per message for one shape."""
    ports: Any = mp.Queue()
    server = mp.Process(target=_serve, args=(per_stream, ports))
    server.start()
    try:
        port = ports.get(timeout=30)
        cpu0 = cpu_s(server.pid or 0)
        received, elapsed = uvloop.run(_read_all(port, streams))
        cpu = cpu_s(server.pid or 0) - cpu0
    finally:
        server.terminate()
        server.join()
    print(
        f"{streams} streams x {per_stream}: {received / elapsed:,.0f} msgs/s, "
        f"server {cpu / received * 1e6:.1f} us/msg"
    )


if __name__ == "__main__":
    shapes = (
        [(int(sys.argv[1]), int(sys.argv[2]))]
        if len(sys.argv) > 2
        else [
            (1, 30_000),
            (1_000, 90),
            (100, 2_000),
        ]
    )
    for shape in shapes:
        measure(*shape)
