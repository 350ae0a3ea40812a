"""The Armada simulator in a child process, seeded and inspected over a pipe.

The simulator's Python API (``publish``, ``stream_requests``) lives in the
process that runs it; this module runs it in a spawned child on uvloop and
turns a few requests from the parent into calls of that API.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from armada_jobservice.bench.messages import Done, Failed, Listening, Seeded, Stop
from armada_jobservice.bench.procs import ServingChild
from armada_jobservice.bench.workload import Event, draw_job, expected_state, interleave
from armada_jobservice.sim import ArmadaSimulator, build_event, failure_fields
from armada_jobservice.sim.engine import new_job_id


class StreamOpened(NamedTuple):
    """A ``GetJobSetEvents`` call the simulator received."""

    queue: str
    job_set_id: str
    from_message_id: str


def _event_fields(kind: str) -> dict[str, Any]:
    return failure_fields("OOMKilled: out of memory", 137, "OOM") if kind == "failed" else {}


def _seed(
    sim: ArmadaSimulator,
    queue: str,
    prefix: str,
    n_sets: int,
    jobs_per_set: int,
    kinds: tuple[str, ...],
    rng: random.Random,
    /,
) -> list[Seeded]:
    if queue not in sim.queues:
        sim.create_queue(queue)
    seeded = []
    for n in range(n_sets):
        job_set_id = f"{prefix}-{n:05d}"
        job_ids = [new_job_id(rng) for _ in range(jobs_per_set)]
        last = ""
        # Kind by kind, so a job set's stream interleaves its jobs as Armada's does.
        for kind in kinds:
            fields = _event_fields(kind)
            for job_id in job_ids:
                last = sim.publish(
                    queue, job_set_id, build_event(kind, queue, job_set_id, job_id, **fields)
                )
        seeded.append(Seeded(job_set_id, job_ids, last))
    return seeded


def _seed_mix(
    sim: ArmadaSimulator,
    queue: str,
    prefix: str,
    n_sets: int,
    jobs_per_set: int,
    rng: random.Random,
    /,
) -> list[Seeded]:
    """Seed job sets whose jobs follow the bench's mix (``workload.BENCH_MIX``)."""
    if queue not in sim.queues:
        sim.create_queue(queue)
    seeded = []
    for n in range(n_sets):
        job_set_id = f"{prefix}-{n:05d}"
        job_ids = [new_job_id(rng) for _ in range(jobs_per_set)]
        per_job = [draw_job(job_id, rng) for job_id in job_ids]
        last, last_index, published = "", -1, 0
        for index, (kind, fields) in interleave(per_job):
            event = build_event(kind, queue, job_set_id, job_ids[index], **fields)
            last = sim.publish(queue, job_set_id, event)
            last_index = index
            published += 1
        wants = tuple(expected_state(events) for events in per_job)
        seeded.append(Seeded(job_set_id, job_ids, last, wants, published, last_index))
    return seeded


class _MixedFeed:
    """Endless events over some job sets: each job set runs one mixed job after another."""

    def __init__(self, queue: str, job_set_ids: list[str], rng: random.Random) -> None:
        self.queue = queue
        self.job_set_ids = job_set_ids
        self.rng = rng
        self.pending: list[list[tuple[str, Event]]] = [[] for _ in job_set_ids]

    def next(self, sent: int) -> tuple[str, Any]:
        """The *sent*-th event: (job set id, message), round-robin over the job sets."""
        k = sent % len(self.job_set_ids)
        todo = self.pending[k]
        if not todo:
            job_id = new_job_id(self.rng)
            todo.extend((job_id, e) for e in reversed(draw_job(job_id, self.rng)))
        job_id, (kind, fields) = todo.pop()
        job_set_id = self.job_set_ids[k]
        return job_set_id, build_event(kind, self.queue, job_set_id, job_id, **fields)


async def _trickle(
    sim: ArmadaSimulator,
    queue: str,
    job_set_ids: list[str],
    rate_per_s: float,
    counter: list[int],
    rng: random.Random,
    /,
) -> None:
    """Publish mixed lifecycles' events round-robin over job sets at a steady rate."""
    start = time.perf_counter()
    sent = 0
    feed = _MixedFeed(queue, job_set_ids, rng)
    while True:
        due = int((time.perf_counter() - start) * rate_per_s)
        while sent < due:
            job_set_id, message = feed.next(sent)
            sim.publish(queue, job_set_id, message)
            sent += 1
        counter[0] = sent
        await asyncio.sleep(0.005)


@dataclass(frozen=True, slots=True)
class SeedSets:
    """Publish each kind of event for every job of *n_sets* new job sets."""

    queue: str
    prefix: str
    n_sets: int
    jobs_per_set: int
    kinds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SeedMix:
    """Publish the events of *n_sets* new job sets of jobs drawn from the bench's mix."""

    queue: str
    prefix: str
    n_sets: int
    jobs_per_set: int


@dataclass(frozen=True, slots=True)
class StartTrickle:
    """Publish mixed lifecycles' events over *job_set_ids* at a steady rate."""

    queue: str
    job_set_ids: list[str]
    rate_per_s: float


@dataclass(frozen=True, slots=True)
class StopTrickle:
    """Stop the trickle; answer how many events it published."""


@dataclass(frozen=True, slots=True)
class TakeStreamRequests:
    """Answer every stream opened since the last such request, and forget them."""


@dataclass(frozen=True, slots=True)
class CountOpenStreams:
    """Answer how many event streams are open."""


@dataclass(frozen=True, slots=True)
class HoldStreams:
    """Let streams open but send nothing until :class:`ReleaseStreams`."""


@dataclass(frozen=True, slots=True)
class ReleaseStreams:
    """Let held streams send; answer the wall-clock time of the release."""


@dataclass(frozen=True, slots=True)
class PublishPaced:
    """Publish one event per entry, the i-th at wall time ``start + i * gap_s``.

    Answers the wall time each was published at.
    """

    queue: str
    #: (job set id, event kind, job id) per event.
    events: list[tuple[str, str, str]]
    start: float
    gap_s: float


SimRequest = (
    PublishPaced
    | SeedSets
    | SeedMix
    | StartTrickle
    | StopTrickle
    | TakeStreamRequests
    | CountOpenStreams
    | HoldStreams
    | ReleaseStreams
)


class _Host:
    """The child's side: the simulator and the trickle task, driven by requests."""

    def __init__(self, sim: ArmadaSimulator) -> None:
        self.sim = sim
        self.rng = random.Random(5)
        self.trickle: asyncio.Task[None] | None = None
        self.counter = [0]

    def stop_trickle(self) -> int:
        if self.trickle is not None:
            self.trickle.cancel()
            self.trickle = None
        return self.counter[0]

    def handle(self, request: SimRequest) -> Any:
        sim = self.sim
        match request:
            case SeedSets(queue, prefix, n_sets, per_set, kinds):
                return _seed(sim, queue, prefix, n_sets, per_set, kinds, self.rng)
            case SeedMix(queue, prefix, n_sets, per_set):
                return _seed_mix(sim, queue, prefix, n_sets, per_set, self.rng)
            case StartTrickle(queue, job_set_ids, rate):
                self.stop_trickle()
                self.counter[0] = 0
                self.trickle = asyncio.get_running_loop().create_task(
                    _trickle(sim, queue, job_set_ids, rate, self.counter, self.rng)
                )
                return None
            case StopTrickle():
                return self.stop_trickle()
            case TakeStreamRequests():
                found = [
                    StreamOpened(r.queue, r.job_set_id, r.from_message_id)
                    for r in sim.stream_requests
                ]
                sim.stream_requests.clear()
                return found
            case CountOpenStreams():
                return sim.open_streams
            case HoldStreams():
                sim.faults.hold_streams()
                return None
            case ReleaseStreams():
                sim.faults.release_streams()
                return time.time()
        raise TypeError(f"unknown request {request!r}")


async def _publish_paced(sim: ArmadaSimulator, request: PublishPaced) -> list[float]:
    published = []
    for i, (job_set_id, kind, job_id) in enumerate(request.events):
        delay = request.start + i * request.gap_s - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        event = build_event(kind, request.queue, job_set_id, job_id, **_event_fields(kind))
        sim.publish(request.queue, job_set_id, event)
        published.append(time.time())
    return published


async def _serve(conn: Any) -> None:
    loop = asyncio.get_running_loop()
    async with ArmadaSimulator("127.0.0.1", 0, time_scale=0.0, seed=5) as sim:
        host = _Host(sim)
        conn.send(Listening(sim.port))
        while True:
            request = await loop.run_in_executor(None, conn.recv)
            if isinstance(request, Stop):
                host.stop_trickle()
                conn.send(Done())
                return
            try:
                if isinstance(request, PublishPaced):
                    conn.send(Done(await _publish_paced(sim, request)))
                else:
                    conn.send(Done(host.handle(request)))
            except Exception as exc:
                conn.send(Failed(repr(exc)))


def _main(conn: Any) -> None:
    import uvloop

    try:
        uvloop.run(_serve(conn))
    except Exception as exc:
        conn.send(Failed(repr(exc)))


class SimHost(ServingChild):
    """Parent-side handle of the simulator child."""

    def __init__(self) -> None:
        super().__init__(_main)

    def _call(self, request: SimRequest) -> Any:
        return self.child.call(request, timeout_s=300.0)

    def seed(
        self, queue: str, prefix: str, n_sets: int, jobs_per_set: int, kinds: tuple[str, ...]
    ) -> list[Seeded]:
        """Publish each kind of event for every job of *n_sets* new job sets."""
        result: list[Seeded] = self._call(SeedSets(queue, prefix, n_sets, jobs_per_set, kinds))
        return result

    def seed_mix(self, queue: str, prefix: str, n_sets: int, jobs_per_set: int) -> list[Seeded]:
        """Publish *n_sets* new job sets of jobs drawn from the bench's mix."""
        result: list[Seeded] = self._call(SeedMix(queue, prefix, n_sets, jobs_per_set))
        return result

    def trickle(self, queue: str, job_set_ids: list[str], rate_per_s: float) -> None:
        """Start publishing mixed jobs' events over *job_set_ids*, *rate_per_s* a second."""
        self._call(StartTrickle(queue, job_set_ids, rate_per_s))

    def trickle_stop(self) -> int:
        """Stop the trickle; return how many events it published."""
        n: int = self._call(StopTrickle())
        return n

    def stream_requests(self) -> list[StreamOpened]:
        """Every stream opened since the last call, with the position it asked for."""
        found: list[StreamOpened] = self._call(TakeStreamRequests())
        return found

    def open_streams(self) -> int:
        """Event streams open now."""
        n: int = self._call(CountOpenStreams())
        return n

    def publish_paced(
        self, queue: str, events: list[tuple[str, str, str]], start: float, gap_s: float
    ) -> list[float]:
        """Publish *events* one by one from wall time *start*, *gap_s* apart; their wall times."""
        at: list[float] = self._call(PublishPaced(queue, events, start, gap_s))
        return at

    def hold(self) -> None:
        """Let streams open but send nothing until ``release()``."""
        self._call(HoldStreams())

    def release(self) -> float:
        """Let held streams send; return the wall-clock time of the release."""
        at: float = self._call(ReleaseStreams())
        return at
