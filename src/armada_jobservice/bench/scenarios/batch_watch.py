"""Scenario 8: batches and watches against one poll per job (issue 13's benchmarks).

Three comparisons, each measured in one run on one service process:

- **batch**: jobs answered per server-CPU-second by ``GetJobStatuses`` with
  100 jobs per call, against unary ``GetJobStatus`` (target: 30x or more).
- **watch**: a thousand waiting jobs followed to the end by
  ``wait_for_job`` (which watches; waits on one job set share a stream)
  against polling each job every 5 s: the server's CPU per minute (target:
  a tenth or less) and the delay from Armada publishing an event to the
  client seeing it (target: p99 under 50 ms).
- **triggerer**: the same thousand concurrent waits in one process: the
  calls the coalescing asyncio client's ``wait_for_job`` makes (shared watch
  streams) and the process's own CPU per minute, against one call per wait.

Both wait modes are metered over the same window: the jobs run (no events)
for ``waiting_s``, end over ``events_s``, and one poll interval follows. The
idle service and the same events with nobody waiting are metered in the same
run too, so the report shows what following the jobs adds beyond each.

The load runs in the bench process itself (one asyncio loop, as in an
Airflow triggerer); only the service's CPU is metered for the server figures.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

from armada_jobservice._async_client import AsyncJobServiceClient
from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice._wire import WireState
from armada_jobservice.bench.harness import LIFECYCLE, Bench, last_polls
from armada_jobservice.bench.procs import CpuMeter
from armada_jobservice.bench.report import Figure
from armada_jobservice.bench.targets import target

SCENARIO = "8 batch and watch"
POLL_INTERVAL_S = 5.0
JOBS_PER_CALL = 100
#: Longer than the flush interval (1 s with SQLite): seeded rows are written before metering.
SETTLE_S = 1.2
_Request = jobservice_pb2.JobServiceRequest


@dataclass(frozen=True, slots=True)
class BatchWatchSizes:
    """The sizes of one run of this scenario."""

    #: Job sets x jobs the batch comparison polls (all ended).
    batch_sets: int
    batch_jobs_per_set: int
    #: Seconds each of unary and batch polling runs.
    batch_s: float
    #: Waiting jobs, in job sets of this many jobs.
    waiting_jobs: int
    jobs_per_set: int
    #: Seconds the idle service is metered.
    idle_s: float
    #: Seconds the jobs run (no events) while their waits are metered.
    waiting_s: float
    #: Seconds over which the jobs' ends are published.
    events_s: float


SIZES = {
    "full": BatchWatchSizes(100, 100, 6.0, 1_000, 10, 10.0, 50.0, 10.0),
    "quick": BatchWatchSizes(20, 100, 0.75, 1_000, 10, 2.0, 1.0, 1.0),
    "smoke": BatchWatchSizes(4, 50, 0.5, 100, 10, 0.5, 0.5, 0.5),
}


def run(bench: Bench) -> None:
    """Scenario 8: GetJobStatuses vs GetJobStatus; watching vs polling; a coalescing triggerer."""
    sz = SIZES.get(bench.report.mode, SIZES["quick"])
    with bench.service() as svc:
        _batch(bench, sz, svc.address, svc.pid)
        modes = (POLL, WATCH, NOBODY)
        # Every mode's running jobs at once, then one pause for their flush.
        jobs = {mode: _seed_waiting(bench, sz, svc.address, mode) for mode in modes}
        time.sleep(SETTLE_S)
        # What the service costs doing nothing (its timers, gRPC's threads): no wait changes it.
        idle = CpuMeter(svc.pid).start()
        time.sleep(sz.idle_s)
        idle.stop()
        runs = {mode: _waits(bench, sz, svc.address, svc.pid, mode, jobs[mode]) for mode in modes}
    _report_waits(bench, sz, runs, idle.cpu_s / idle.wall_s * 60.0)


# -- batch against unary ------------------------------------------------------


def _batch(bench: Bench, sz: BatchWatchSizes, address: str, pid: int) -> None:
    queue = "batch"
    seeded = bench.sim.seed(queue, queue, sz.batch_sets, sz.batch_jobs_per_set, LIFECYCLE)
    bench.await_visible(address, last_polls(seeded, queue, WireState.SUCCEEDED))
    jobs = [
        jobservice_pb2.JobServiceRequest(queue=queue, job_set_id=s.job_set_id, job_id=j)
        for s in seeded
        for j in s.job_ids
    ]
    random.Random(8).shuffle(jobs)
    unary = _metered(pid, lambda: _unary_load(address, jobs, sz.batch_s))
    batch = _metered(pid, lambda: _batch_load(address, jobs, sz.batch_s))
    per_cpu = [answered / meter.cpu_s for answered, meter in (unary, batch)]
    bench.report.add(
        Figure(
            SCENARIO,
            f"jobs answered per server-CPU-second, {JOBS_PER_CALL} per GetJobStatuses call",
            per_cpu[1],
            "jobs/cpu-s",
            per_cpu[0],
            "unary GetJobStatus",
            **target("batch_jobs_per_cpu_s"),
            note=f"{len(jobs)} cached jobs, {sz.batch_s:g} s each, closed loop in one process",
        )
    )


def _metered(pid: int, load: Callable[[], Coroutine[None, None, int]]) -> tuple[int, CpuMeter]:
    meter = CpuMeter(pid).start()
    answered = asyncio.run(load())
    meter.stop()
    return answered, meter


async def _unary_load(
    address: str, jobs: list[jobservice_pb2.JobServiceRequest], seconds: float
) -> int:
    import grpc.aio

    async with grpc.aio.insecure_channel(address) as channel:
        stub = jobservice_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
        answered: int = 0
        end = time.perf_counter() + seconds

        async def caller(offset: int) -> None:
            nonlocal answered
            n = offset
            while time.perf_counter() < end:
                await stub.GetJobStatus(jobs[n % len(jobs)])
                answered += 1
                n += 32

        await asyncio.gather(*(caller(k) for k in range(32)))
    return answered


async def _batch_load(
    address: str, jobs: list[jobservice_pb2.JobServiceRequest], seconds: float
) -> int:
    import grpc.aio

    calls = [
        jobservice_pb2.JobStatusesRequest(jobs=jobs[k : k + JOBS_PER_CALL])
        for k in range(0, len(jobs), JOBS_PER_CALL)
    ]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = jobservice_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
        answered: int = 0
        end = time.perf_counter() + seconds

        async def caller(offset: int) -> None:
            nonlocal answered
            n = offset
            while time.perf_counter() < end:
                reply = await stub.GetJobStatuses(calls[n % len(calls)])
                answered += len(reply.statuses)
                n += 4

        await asyncio.gather(*(caller(k) for k in range(4)))
    return answered


# -- a thousand waiting jobs --------------------------------------------------

#: How the thousand waits learn of their jobs' ends.
POLL, WATCH = "poll", "watch"
#: The same events with nobody waiting: what applying and storing them costs.
NOBODY = "nobody"


@dataclass(frozen=True, slots=True)
class WaitRun:
    """One mode's run: server and client CPU over the window, calls, and event delays."""

    server_cpu_s: float
    client_cpu_s: float
    window_s: float
    calls: int
    delays_ms: list[float]

    def per_minute(self, cpu_s: float) -> float:
        """CPU seconds per minute of the window."""
        return cpu_s / self.window_s * 60.0


def _seed_waiting(
    bench: Bench, sz: BatchWatchSizes, address: str, mode: str
) -> list[tuple[str, str, str]]:
    """Running jobs for one mode, visible through the service (so subscribed and loaded)."""
    queue = "waits"
    n_sets = max(1, sz.waiting_jobs // sz.jobs_per_set)
    seeded = bench.sim.seed(queue, f"waits-{mode}", n_sets, sz.jobs_per_set, LIFECYCLE[:2])
    bench.await_visible(address, last_polls(seeded, queue, WireState.RUNNING))
    return [(queue, s.job_set_id, j) for s in seeded for j in s.job_ids]


def _waits(
    bench: Bench,
    sz: BatchWatchSizes,
    address: str,
    pid: int,
    mode: str,
    jobs: list[tuple[str, str, str]],
) -> WaitRun:
    ends = [(s, "succeeded", j) for _, s, j in jobs]
    random.Random(8).shuffle(ends)
    return asyncio.run(_follow(bench, sz, address, pid, mode, jobs, ends))


async def _follow(
    bench: Bench,
    sz: BatchWatchSizes,
    address: str,
    pid: int,
    mode: str,
    jobs: list[tuple[str, str, str]],
    ends: list[tuple[str, str, str]],
) -> WaitRun:
    # The baseline makes one call per wait: no sharing of any kind.
    client = AsyncJobServiceClient(address, coalesce_window_s=None if mode == POLL else 0.002)
    seen: dict[str, float] = {}
    # The same window in both modes: waiting, the jobs' ends, one poll interval after.
    window_s = sz.waiting_s + sz.events_s + (0.5 if mode == NOBODY else POLL_INTERVAL_S + 0.5)
    try:
        meter = CpuMeter(pid).start()
        cpu0 = time.process_time()
        started = time.time()
        waits = asyncio.gather(*(_wait(client, mode, job, seen) for job in jobs if mode != NOBODY))
        publish = asyncio.to_thread(
            bench.sim.publish_paced,
            jobs[0][0],
            ends,
            started + sz.waiting_s,
            sz.events_s / len(ends),
        )
        published, polls = await asyncio.gather(publish, waits)
        await asyncio.sleep(max(0.0, started + window_s - time.time()))
        client_cpu = time.process_time() - cpu0
        meter.stop()
        calls = sum(polls) if mode == POLL else client.watches_opened
    finally:
        await client.close()
    delays = [
        (seen[job_id] - at) * 1000.0
        for (_, _, job_id), at in zip(ends, published, strict=True)
        if job_id in seen
    ]
    return WaitRun(meter.cpu_s, client_cpu, meter.wall_s, calls, delays)


async def _wait(
    client: AsyncJobServiceClient, mode: str, job: tuple[str, str, str], seen: dict[str, float]
) -> int:
    """Follow one job to its end; record when the end was seen; return the polls made."""
    queue, job_set_id, job_id = job
    if mode == WATCH:
        await client.wait_for_job(queue, job_set_id, job_id)
        seen[job_id] = time.time()
        return 0
    # Each wait polls on its own schedule, spread over the interval as deferred tasks are.
    await asyncio.sleep(random.uniform(0, POLL_INTERVAL_S))
    polls = 0
    while True:
        status = await client.get_job_status(queue, job_set_id, job_id)
        polls += 1
        if status.state.is_terminal:
            seen[job_id] = time.time()
            return polls
        await asyncio.sleep(POLL_INTERVAL_S)


def _report_waits(
    bench: Bench, sz: BatchWatchSizes, runs: dict[str, WaitRun], idle_per_min: float
) -> None:
    poll, watch, nobody = runs[POLL], runs[WATCH], runs[NOBODY]
    note = (
        f"{sz.waiting_jobs} running jobs in job sets of {sz.jobs_per_set}: {sz.waiting_s:g} s "
        f"waiting, their ends over {sz.events_s:g} s, {watch.window_s:.1f} s metered"
    )
    baseline = f"polling every {POLL_INTERVAL_S:g} s"
    add = bench.report.add
    add(
        Figure(
            SCENARIO,
            "server CPU per minute, waiting jobs followed by watching",
            watch.per_minute(watch.server_cpu_s),
            "cpu-s/min",
            poll.per_minute(poll.server_cpu_s),
            baseline,
            higher_is_better=False,
            note=f"{note}; the idle service alone: {idle_per_min:.2f} cpu-s/min",
        )
    )
    # The target is judged on what following the jobs adds to the idle service:
    # its timers and gRPC's threads cost the same whether anyone waits or not.
    add(
        Figure(
            SCENARIO,
            "server CPU per minute the waits add (above idle), watching",
            max(0.0, watch.per_minute(watch.server_cpu_s) - idle_per_min),
            "cpu-s/min",
            max(0.0, poll.per_minute(poll.server_cpu_s) - idle_per_min),
            baseline,
            higher_is_better=False,
            **target("watch_cpu_added"),
            note="includes applying and storing the jobs' end events, alike in both",
        )
    )
    # In CPU seconds, not per minute: the runs' windows differ (nobody waits a poll interval).
    idle_per_s = idle_per_min / 60.0
    events_cpu_s = max(0.0, nobody.server_cpu_s - idle_per_s * nobody.window_s)

    def beyond_events(run: WaitRun) -> float:
        spent = run.server_cpu_s - idle_per_s * run.window_s - events_cpu_s
        return max(0.0, run.per_minute(spent))

    add(
        Figure(
            SCENARIO,
            "server CPU per minute the waits add (above idle and the events alone), watching",
            beyond_events(watch),
            "cpu-s/min",
            beyond_events(poll),
            baseline,
            higher_is_better=False,
            note=f"applying and storing the events with nobody waiting: {events_cpu_s:.3f} cpu-s",
        )
    )
    add(
        Figure(
            SCENARIO,
            "event-to-client delay p99, watching",
            _percentile(watch.delays_ms, 99),
            "ms",
            _percentile(poll.delays_ms, 99),
            baseline,
            higher_is_better=False,
            **target("watch_delay_p99"),
            note=f"p50 {_percentile(watch.delays_ms, 50):.1f} ms; "
            f"{len(watch.delays_ms)} of {sz.waiting_jobs} ends seen",
        )
    )
    triggerer = f"{sz.waiting_jobs} concurrent waits in one process"
    add(
        Figure(
            SCENARIO,
            "triggerer: calls made, coalescing client's waits",
            watch.calls,
            "calls",
            poll.calls,
            "one call per wait",
            higher_is_better=False,
            note=f"{triggerer}; the coalescing client's calls are shared watch streams",
        )
    )
    add(
        Figure(
            SCENARIO,
            "triggerer: its own CPU per minute, coalescing client's waits",
            watch.per_minute(watch.client_cpu_s),
            "cpu-s/min",
            poll.per_minute(poll.client_cpu_s),
            "one call per wait",
            higher_is_better=False,
            note=triggerer,
        )
    )


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]
