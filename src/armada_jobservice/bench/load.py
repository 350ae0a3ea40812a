"""Load generators, each in a spawned process of its own, on uvloop.

Closed loop: a number of callers, each sending its next poll when the last
one is answered (saturation). Open loop: polls sent on a fixed schedule
whatever the answers do, with latency counted from the scheduled time so a
stalled server is not hidden by a stalled load generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from armada_jobservice.bench.procs import Child

#: A poll: (queue, job set id, job id, expected state or None for "anything").
Poll = tuple[str, str, str, int | None]

_NOT_FOUND = 6


@dataclass(slots=True)
class LoadResult:
    """What the load processes of one run saw, merged."""

    calls: int = 0
    errors: int = 0
    wrong: int = 0
    latencies_s: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def percentile_ms(self, p: float) -> float:
        """The *p*-th percentile latency in milliseconds (NaN without samples)."""
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[index] * 1000


async def _sleep_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _polls(
    address: str, polls: Sequence[Poll], mode: str, param: float, duration_s: float, start: float
) -> dict[str, Any]:
    import grpc

    from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc

    requests = [
        (jobservice_pb2.JobServiceRequest(queue=q, job_set_id=s, job_id=j), want)
        for q, s, j, want in polls
    ]
    out: dict[str, Any] = {"calls": 0, "errors": 0, "wrong": 0, "lat": []}
    lat: list[float] = out["lat"]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = jobservice_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
        await channel.channel_ready()
        await _sleep_until(start)
        t0 = time.perf_counter()
        end = t0 + duration_s
        n = len(requests)

        async def one(i: int, sent: float) -> None:
            request, want = requests[i % n]
            try:
                answer = await stub.GetJobStatus(request)
            except grpc.aio.AioRpcError:
                out["errors"] += 1
                return
            done = time.perf_counter()
            if done > end:
                return
            out["calls"] += 1
            lat.append(done - sent)
            if want is not None and answer.state != want:
                out["wrong"] += 1

        if mode == "closed":

            async def caller(offset: int) -> None:
                i = offset
                while time.perf_counter() < end:
                    await one(i, time.perf_counter())
                    i += int(param)

            await asyncio.gather(*(caller(k) for k in range(int(param))))
        else:
            interval = 1.0 / param
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


async def _first_polls(
    address: str,
    polls: Sequence[Poll],
    concurrency: int,
    start: float,
    timeout_s: float,
    interval_s: float,
) -> dict[str, Any]:
    """Poll each job until it shows its expected state (or any state when None).

    Times the first answer and the wait until the expected state is visible.
    """
    import grpc

    from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc

    first: list[float] = []
    visible: list[float] = []
    out: dict[str, Any] = {
        "first": first,
        "visible": visible,
        "errors": 0,
        "missed": 0,
        "first_done": 0.0,
    }
    todo = list(polls)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = jobservice_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
        await channel.channel_ready()
        await _sleep_until(start)
        t0 = time.perf_counter()

        async def worker() -> None:
            while todo:
                q, s, j, want = todo.pop()
                request = jobservice_pb2.JobServiceRequest(queue=q, job_set_id=s, job_id=j)
                sent = time.perf_counter()
                try:
                    answer = await stub.GetJobStatus(request)
                except grpc.aio.AioRpcError:
                    out["errors"] += 1
                    continue
                got = time.perf_counter()
                first.append(got - sent)
                out["first_done"] = max(out["first_done"], got - t0)
                if timeout_s <= 0:
                    # Only the first poll: it subscribes; others watch the rest.
                    continue
                while answer.state == _NOT_FOUND if want is None else answer.state != want:
                    if time.perf_counter() - sent > timeout_s:
                        out["missed"] += 1
                        break
                    await asyncio.sleep(interval_s)
                    answer = await stub.GetJobStatus(request)
                else:
                    visible.append(time.perf_counter() - sent)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


async def _streams(
    address: str,
    job_sets: Sequence[tuple[str, str]],
    total: int,
    start: float,
    timeout_s: float,
    open_step: int,
) -> dict[str, Any]:
    """Read and parse the job sets' event streams until *total* events arrived.

    Also notes this process's memory before the streams open and once every
    stream has delivered its first event (the cost of an open stream).
    """
    import os

    import grpc
    from armada_client.armada import event_pb2, event_pb2_grpc

    from armada_jobservice.bench.procs import rss_bytes

    out: dict[str, Any] = {"received": 0, "elapsed_s": float("nan"), "rss_open": 0, "cpu_s": 0.0}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = event_pb2_grpc.EventStub(channel)  # type: ignore[no-untyped-call]
        await channel.channel_ready()
        all_in = asyncio.Event()
        opened = [0]
        out["rss_before"] = rss_bytes(os.getpid())
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
                    out["received"] += 1
                    if out["received"] >= total:
                        out["elapsed_s"] = time.perf_counter() - t0
                        out["cpu_s"] = time.process_time() - c0
                        # For runs timed from an instant outside this process.
                        out["done_at"], out["cpu_done_s"] = time.time(), time.process_time()
                        all_in.set()
                if first:
                    first = False
                    opened[0] += 1
                    if opened[0] == len(job_sets):
                        out["rss_open"] = rss_bytes(os.getpid())

        loop = asyncio.get_running_loop()
        tasks = []
        # Opened in steps, as the service opens them (one per first poll): a
        # single burst of thousands of calls on one channel starves some.
        for k in range(0, len(job_sets), open_step):
            tasks += [loop.create_task(read(q, s)) for q, s in job_sets[k : k + open_step]]
            while opened[0] < min(k + open_step, len(job_sets)) and not all_in.is_set():
                if time.perf_counter() - t0 > timeout_s:
                    break
                await asyncio.sleep(0.001)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), timeout_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return out


async def _first_events(
    address: str, job_sets: Sequence[tuple[str, str]], concurrency: int, start: float
) -> dict[str, Any]:
    """Open each job set's stream directly and time its first event."""
    import grpc
    from armada_client.armada import event_pb2, event_pb2_grpc

    visible: list[float] = []
    todo = list(job_sets)
    async with grpc.aio.insecure_channel(address) as channel:
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

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"visible": visible}


_KINDS: dict[str, Callable[..., Any]] = {
    "polls": _polls,
    "first_polls": _first_polls,
    "streams": _streams,
    "first_events": _first_events,
}


def _main(conn: Any, kind: str, args: tuple[Any, ...]) -> None:
    import uvloop

    try:
        conn.send(("ready",))
        (_, start) = conn.recv()
        result = uvloop.run(_call(kind, args, start))
        conn.send(("done", result))
    except Exception as exc:
        conn.send(("error", repr(exc)))


async def _call(kind: str, args: tuple[Any, ...], start: float) -> Any:
    fn = _KINDS[kind]
    if kind == "polls":
        address, polls, mode, param, duration_s = args
        return await fn(address, polls, mode, param, duration_s, start)
    if kind == "first_polls":
        address, polls, concurrency, timeout_s, interval_s = args
        return await fn(address, polls, concurrency, start, timeout_s, interval_s)
    if kind == "first_events":
        address, job_sets, concurrency = args
        return await fn(address, job_sets, concurrency, start)
    address, job_sets, total, timeout_s, open_step = args
    return await fn(address, job_sets, total, start, timeout_s, open_step)


class LoadGroup:
    """Several load processes started together at one agreed wall-clock instant."""

    def __init__(self, kind: str, per_process_args: Sequence[tuple[Any, ...]]) -> None:
        self.children = [Child(_main, kind, args) for args in per_process_args]
        for child in self.children:
            child.recv()
        self.pids = [c.pid for c in self.children]

    def go(self, lead_s: float = 0.3) -> float:
        """Tell every process to start *lead_s* from now; return that wall-clock instant."""
        start = time.time() + lead_s
        for child in self.children:
            child.conn.send(("go", start))
        return start

    def results(self, timeout_s: float = 600.0) -> list[dict[str, Any]]:
        """Wait for every process's result."""
        try:
            return [child.recv(timeout_s)[1] for child in self.children]
        finally:
            for child in self.children:
                child.stop()


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """Deal *items* round-robin into *parts* lists."""
    return [list(items[k::parts]) for k in range(parts)]


def merge_polls(results: Sequence[dict[str, Any]]) -> LoadResult:
    """Merge the ``polls`` results of several processes."""
    merged = LoadResult()
    for r in results:
        merged.calls += r["calls"]
        merged.errors += r["errors"]
        merged.wrong += r["wrong"]
        merged.latencies_s.extend(r["lat"])
    return merged
