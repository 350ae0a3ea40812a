"""Load check of the simulator: streams held, events per second, RSS per open stream.

Runs ``armada-jobservice armada-sim`` in a child process (time scale 0, zero
durations) and drives it from this process with real gRPC:

1. ``--streams`` job sets each get one job (six events), then one watching
   GetJobSetEvents stream each; the child's RSS before and after gives the
   memory per open stream.
2. With those streams still open, ``--fanout-sets`` job sets get
   ``--jobs-per-set`` jobs each while ``--watchers`` streams watch each of
   them; delivered events per second are counted at the client.
3. In-process, the event log's publish rate without gRPC.

    .venv/bin/python scripts/probes/sim_streams.py --streams 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from armada_client.armada import event_pb2, event_pb2_grpc, submit_pb2, submit_pb2_grpc
from armada_client.k8s.io.api.core.v1 import generated_pb2 as core_v1

from armada_jobservice._ready import NotReady, wait_for_ready_file
from armada_jobservice.bench.procfs import cpu_s, rss_bytes

QUEUE = "bench"


def start_server(ready_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the simulator process; return it with its address once its ready file says so."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "armada_jobservice.cli",
            "armada-sim",
            "--port",
            "0",
            "--ready-file",
            str(ready_file),
            "--queue",
            QUEUE,
            "--time-scale",
            "0",
            "--queue-seconds",
            "0",
            "--pending-seconds",
            "0",
            "--run-seconds",
            "0",
            "--log-level",
            "WARNING",
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        ready = wait_for_ready_file(ready_file, proc, timeout_s=60)
    except NotReady:
        proc.kill()
        proc.wait()
        raise
    return proc, ready.address


def item() -> submit_pb2.JobSubmitRequestItem:
    """One job request with a minimal pod spec."""
    spec = core_v1.PodSpec(containers=[core_v1.Container(name="main", image="busybox")])
    return submit_pb2.JobSubmitRequestItem(pod_spec=spec, priority=1)


async def submit_all(
    stub: submit_pb2_grpc.SubmitStub, job_sets: list[str], jobs: int, concurrency: int = 64
) -> None:
    """Submit ``jobs`` jobs to each job set, ``concurrency`` calls at a time."""
    gate = asyncio.Semaphore(concurrency)
    request_items = [item() for _ in range(jobs)]

    async def one(job_set: str) -> None:
        async with gate:
            await stub.SubmitJobs(
                submit_pb2.JobSubmitRequest(
                    queue=QUEUE, job_set_id=job_set, job_request_items=request_items
                )
            )

    await asyncio.gather(*(one(js) for js in job_sets))


class Watcher:
    """Counts what one watching stream receives."""

    def __init__(self) -> None:
        """Start with nothing received."""
        self.received = 0
        self.first = asyncio.Event()


async def watch(
    stub: event_pb2_grpc.EventStub, job_set: str, watcher: Watcher, stop: asyncio.Event
) -> None:
    """Hold a watching stream on ``job_set`` until ``stop``."""
    call = stub.GetJobSetEvents(event_pb2.JobSetRequest(queue=QUEUE, id=job_set, watch=True))
    stopper = asyncio.ensure_future(stop.wait())
    stopper.add_done_callback(lambda _: call.cancel())
    try:
        async for _ in call:
            watcher.received += 1
            watcher.first.set()
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            raise
    finally:
        stopper.cancel()


async def bench(args: argparse.Namespace, proc: subprocess.Popen[bytes], address: str) -> None:
    """Run the three measurements against the simulator *proc* and print their figures."""
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(args.channels)
    ]
    submit = submit_pb2_grpc.SubmitStub(channels[0])  # type: ignore[no-untyped-call]
    events = [event_pb2_grpc.EventStub(c) for c in channels]  # type: ignore[no-untyped-call]
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        # 1. Idle streams.
        idle_sets = [f"idle-{i}" for i in range(args.streams)]
        t0 = time.perf_counter()
        await submit_all(submit, idle_sets, 1)
        print(
            f"submitted 1 job to each of {args.streams} job sets in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        await asyncio.sleep(1)
        rss_before = rss_bytes(proc.pid) // 1024
        client_before = rss_bytes(os.getpid()) // 1024
        watchers = [Watcher() for _ in idle_sets]
        t0 = time.perf_counter()
        for i, (js, w) in enumerate(zip(idle_sets, watchers, strict=True)):
            tasks.append(asyncio.create_task(watch(events[i % len(events)], js, w, stop)))
        # A stream that fails must fail the run, not leave it waiting.
        firsts: asyncio.Future[Any] = asyncio.gather(*(w.first.wait() for w in watchers))
        pending: list[asyncio.Future[Any]] = [firsts, *tasks]
        done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if firsts not in done:
            firsts.cancel()
            raise RuntimeError(f"a stream ended early: {next(iter(done)).exception()!r}")
        opened_s = time.perf_counter() - t0
        await asyncio.sleep(1)
        rss_after = rss_bytes(proc.pid) // 1024
        client_after = rss_bytes(os.getpid()) // 1024
        got = sum(w.received for w in watchers)
        print(
            f"opened {args.streams} watch streams in {opened_s:.1f} s "
            f"(first events delivered: {got})"
        )
        print(
            f"server RSS {rss_before / 1024:.0f} -> {rss_after / 1024:.0f} MiB: "
            f"{(rss_after - rss_before) * 1024 / args.streams / 1024:.1f} KiB per open stream"
        )
        print(
            f"client RSS {client_before / 1024:.0f} -> {client_after / 1024:.0f} MiB: "
            f"{(client_after - client_before) * 1024 / args.streams / 1024:.1f} KiB per stream"
        )

        # 2. Fan-out throughput with the idle streams still open.
        hot_sets = [f"hot-{i}" for i in range(args.fanout_sets)]
        hot = [Watcher() for _ in range(args.fanout_sets * args.watchers)]
        for i, w in enumerate(hot):
            js = hot_sets[i % len(hot_sets)]
            tasks.append(asyncio.create_task(watch(events[i % len(events)], js, w, stop)))
        await asyncio.sleep(1)
        expected = args.fanout_sets * args.jobs_per_set * 6
        t0 = time.perf_counter()
        server_cpu0, client_cpu0 = cpu_s(proc.pid), time.process_time()
        await submit_all(submit, hot_sets, args.jobs_per_set, concurrency=8)
        submitted_s = time.perf_counter() - t0
        deadline = time.perf_counter() + 120
        # Sampling a counter keeps the watchers' hot path free of notifications.
        while (  # noqa: ASYNC110
            sum(w.received for w in hot) < expected * args.watchers
            and time.perf_counter() < deadline
        ):
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        delivered = sum(w.received for w in hot)
        server_cpu, client_cpu = cpu_s(proc.pid) - server_cpu0, time.process_time() - client_cpu0
        print(
            f"CPU during fan-out: server {server_cpu:.1f} s "
            f"({server_cpu * 1e6 / max(delivered, 1):.0f} us per delivery), "
            f"client {client_cpu:.1f} s"
        )
        print(
            f"{expected} events ({args.fanout_sets} job sets x {args.jobs_per_set} jobs x 6) "
            f"created in {submitted_s:.1f} s, {delivered} deliveries to "
            f"{len(hot)} streams in {elapsed:.1f} s: "
            f"{expected / submitted_s:,.0f} events/s created, "
            f"{delivered / elapsed:,.0f} deliveries/s, with {args.streams} idle streams open"
        )
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()

    # 3. The event log alone.
    from armada_jobservice.sim import ArmadaSimulator, build_event

    sim = ArmadaSimulator(queues=[QUEUE])
    message = build_event("running", QUEUE, "js", "job-1")
    count = 200_000
    t0 = time.perf_counter()
    for i in range(count):
        sim.publish(QUEUE, f"js-{i % 100}", message)
    print(f"in-process publish: {count / (time.perf_counter() - t0):,.0f} events/s")


def main() -> None:
    """Parse flags and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--fanout-sets", type=int, default=20)
    parser.add_argument("--watchers", type=int, default=5)
    parser.add_argument("--jobs-per-set", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sim-streams-") as tmp:
        proc, address = start_server(Path(tmp) / "sim.ready.json")
        try:
            asyncio.run(bench(args, proc, address))
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
