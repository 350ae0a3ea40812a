"""Load generators, each in a spawned process of its own, on uvloop.

Closed loop: a number of callers, each sending its next poll when the last
one is answered (saturation). Open loop: polls sent on a fixed schedule
whatever the answers do, with latency counted from the scheduled time so a
stalled server is not hidden by a stalled load generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any, TypeVar

from armada_jobservice._wire import WireState
from armada_jobservice.bench.messages import (
    Done,
    Failed,
    FirstEvents,
    FirstPolls,
    Go,
    LoadRequest,
    Poll,
    PollCounts,
    PollLoad,
    Ready,
    StreamCounts,
    StreamRead,
    Visibility,
    VisibleAt,
)
from armada_jobservice.bench.procfs import rss_bytes
from armada_jobservice.bench.procs import BenchError, Child

T = TypeVar("T")


async def _sleep_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _polls(load: PollLoad, start: float) -> PollCounts:
    import grpc

    from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc

    requests = [
        (
            jobservice_pb2.JobServiceRequest(
                queue=p.queue, job_set_id=p.job_set_id, job_id=p.job_id
            ),
            p.want,
        )
        for p in load.polls
    ]
    out = PollCounts()
    lat = out.latencies_s
    codes, states = out.error_codes, out.states
    timeout = load.timeout_s
    async with grpc.aio.insecure_channel(load.address) as channel:
        stub = jobservice_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
        await channel.channel_ready()
        await _sleep_until(start)
        t0 = time.perf_counter()
        end = t0 + load.duration_s if load.mode != "once" else float("inf")
        n = len(requests)

        async def one(i: int, sent: float) -> None:
            request, want = requests[i % n]
            try:
                answer = await stub.GetJobStatus(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                out.errors += 1
                name = exc.code().name
                codes[name] = codes.get(name, 0) + 1
                return
            done = time.perf_counter()
            if done > end:
                return
            out.calls += 1
            lat.append(done - sent)
            states[answer.state] = states.get(answer.state, 0) + 1
            if want is not None and answer.state != want:
                out.wrong += 1

        if load.mode == "once":
            todo = list(range(n))
            todo.reverse()

            async def sender() -> None:
                while todo:
                    await one(todo.pop(), time.perf_counter())

            await asyncio.gather(*(sender() for _ in range(int(load.param))))
        elif load.mode == "closed":
            callers = int(load.param)

            async def caller(offset: int) -> None:
                i = offset
                while time.perf_counter() < end:
                    await one(i, time.perf_counter())
                    i += callers

            await asyncio.gather(*(caller(k) for k in range(callers)))
        else:
            interval = 1.0 / load.param
            tasks: set[asyncio.Task[None]] = set()
            i = 0
            while True:
                now = time.perf_counter()
                if now >= end:
                    break
                # Send every poll whose time has come; the sleep below is coarse.
                while t0 + i * interval <= now:
                    task = asyncio.get_running_loop().create_task(one(i, t0 + i * interval))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    i += 1
                await asyncio.sleep(min(interval, 0.002))
            if tasks:
                await asyncio.wait(tasks, timeout=5)
    return out


async def _first_polls(load: FirstPolls, start: float) -> Visibility:
    """Poll each job until it shows its expected state (or any state when None).

    Times the first answer and the wait until the expected state is visible.
    """
    import grpc

    from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc

    out = Visibility()
    todo = list(load.polls)
    async with grpc.aio.insecure_channel(load.address) as channel:
        stub = jobservice_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
        await channel.channel_ready()
        await _sleep_until(start)
        t0 = time.perf_counter()

        async def worker() -> None:
            while todo:
                poll = todo.pop()
                request = jobservice_pb2.JobServiceRequest(
                    queue=poll.queue, job_set_id=poll.job_set_id, job_id=poll.job_id
                )
                sent = time.perf_counter()
                try:
                    answer = await stub.GetJobStatus(request)
                except grpc.aio.AioRpcError:
                    out.errors += 1
                    continue
                got = time.perf_counter()
                out.first.append(got - sent)
                out.first_done = max(out.first_done, got - t0)
                if load.timeout_s <= 0:
                    # Only the first poll: it subscribes; others watch the rest.
                    continue
                while (
                    answer.state == WireState.JOB_ID_NOT_FOUND
                    if poll.want is None
                    else answer.state != poll.want
                ):
                    if time.perf_counter() - sent > load.timeout_s:
                        out.missed += 1
                        break
                    await asyncio.sleep(load.interval_s)
                    answer = await stub.GetJobStatus(request)
                else:
                    out.visible.append(time.perf_counter() - sent)

        await asyncio.gather(*(worker() for _ in range(load.concurrency)))
    return out


async def _streams(load: StreamRead, start: float) -> StreamCounts:
    """Read and parse the job sets' event streams until *total* events arrived.

    Also notes this process's memory before the streams open and once every
    stream has delivered its first event (the cost of an open stream).
    """
    import grpc
    from armada_client.armada import event_pb2, event_pb2_grpc

    out = StreamCounts()
    job_sets, total = load.job_sets, load.total
    async with grpc.aio.insecure_channel(load.address) as channel:
        stub = event_pb2_grpc.EventStub(channel)  # type: ignore[no-untyped-call]
        await channel.channel_ready()
        all_in = asyncio.Event()
        opened = [0]
        out.rss_before = rss_bytes(os.getpid())
        await _sleep_until(start)
        t0 = time.perf_counter()
        c0 = time.process_time()

        async def read(queue: str, job_set_id: str) -> None:
            request = event_pb2.JobSetRequest(id=job_set_id, queue=queue, watch=True)
            first = True
            async for msg in stub.GetJobSetEvents(request):
                # Touch what the service reads of each message: the parse is the baseline.
                message = msg.message
                kind = message.WhichOneof("events")
                if kind is not None and msg.id and getattr(message, kind).job_id:
                    out.received += 1
                    if out.received >= total:
                        out.elapsed_s = time.perf_counter() - t0
                        out.cpu_s = time.process_time() - c0
                        out.done_at, out.cpu_done_s = time.time(), time.process_time()
                        all_in.set()
                if first:
                    first = False
                    opened[0] += 1
                    if opened[0] == len(job_sets):
                        out.rss_open = rss_bytes(os.getpid())

        loop = asyncio.get_running_loop()
        tasks = []
        step = load.open_step
        # Opened in steps, as the service opens them (one per first poll): a
        # single burst of thousands of calls on one channel starves some.
        for k in range(0, len(job_sets), step):
            tasks += [loop.create_task(read(q, s)) for q, s in job_sets[k : k + step]]
            while opened[0] < min(k + step, len(job_sets)) and not all_in.is_set():
                if time.perf_counter() - t0 > load.timeout_s:
                    break
                await asyncio.sleep(0.001)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), load.timeout_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return out


async def _first_events(load: FirstEvents, start: float) -> list[float]:
    """Open each job set's stream directly; return the seconds until each first event."""
    import grpc
    from armada_client.armada import event_pb2, event_pb2_grpc

    visible: list[float] = []
    todo = list(load.job_sets)
    async with grpc.aio.insecure_channel(load.address) as channel:
        stub = event_pb2_grpc.EventStub(channel)  # type: ignore[no-untyped-call]
        await channel.channel_ready()
        await _sleep_until(start)

        async def worker() -> None:
            while todo:
                queue, job_set_id = todo.pop()
                request = event_pb2.JobSetRequest(id=job_set_id, queue=queue, watch=True)
                sent = time.perf_counter()
                call = stub.GetJobSetEvents(request)
                async for _msg in call:
                    visible.append(time.perf_counter() - sent)
                    break
                call.cancel()

        await asyncio.gather(*(worker() for _ in range(load.concurrency)))
    return visible


async def _visible_at(load: VisibleAt) -> list[float]:
    """For each poll, from its scheduled time, poll until its expected state shows."""
    import grpc

    from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc

    seen = [float("nan")] * len(load.polls)
    async with grpc.aio.insecure_channel(load.address) as channel:
        stub = jobservice_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
        await channel.channel_ready()

        async def watch(i: int, poll: Poll) -> None:
            await _sleep_until(load.start + i * load.gap_s)
            request = jobservice_pb2.JobServiceRequest(
                queue=poll.queue, job_set_id=poll.job_set_id, job_id=poll.job_id
            )
            deadline = time.time() + load.timeout_s
            while time.time() < deadline:
                try:
                    answer = await stub.GetJobStatus(request)
                except grpc.aio.AioRpcError:
                    answer = None
                if answer is not None and answer.state == poll.want:
                    seen[i] = time.time()
                    return
                await asyncio.sleep(load.interval_s)

        await asyncio.gather(*(watch(i, p) for i, p in enumerate(load.polls)))
    return seen


async def _run(request: LoadRequest, start: float) -> Any:
    match request:
        case PollLoad():
            return await _polls(request, start)
        case FirstPolls():
            return await _first_polls(request, start)
        case StreamRead():
            return await _streams(request, start)
        case FirstEvents():
            return await _first_events(request, start)
        case VisibleAt():
            return await _visible_at(request)


def _main(conn: Any, request: LoadRequest) -> None:
    import uvloop

    try:
        conn.send(Ready())
        go = conn.recv()
        if not isinstance(go, Go):
            raise BenchError(f"expected Go, got {go!r}")
        conn.send(Done(uvloop.run(_run(request, go.start))))
    except Exception as exc:
        conn.send(Failed(repr(exc)))


class LoadGroup:
    """Several load processes started together at one agreed wall-clock instant.

    Each process runs one request; all requests of a group are of one type,
    and ``results()`` returns that type's result per process.
    """

    def __init__(self, requests: Sequence[LoadRequest]) -> None:
        self.children = [Child(_main, request) for request in requests]
        for child in self.children:
            ready = child.recv()
            if not isinstance(ready, Ready):
                raise BenchError(f"load process sent {ready!r} before it was ready")
        self.pids = [c.pid for c in self.children]

    def go(self, lead_s: float = 0.3) -> float:
        """Tell every process to start *lead_s* from now; return that wall-clock instant."""
        start = time.time() + lead_s
        for child in self.children:
            child.conn.send(Go(start))
        return start

    def results(self, timeout_s: float = 600.0) -> list[Any]:
        """Wait for every process's result."""
        try:
            out = []
            for child in self.children:
                answer = child.recv(timeout_s)
                if not isinstance(answer, Done):
                    raise BenchError(f"load process answered {answer!r}")
                out.append(answer.value)
            return out
        finally:
            for child in self.children:
                child.stop()


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    """Deal *items* round-robin into *parts* lists."""
    return [list(items[k::parts]) for k in range(parts)]
