"""The Armada simulator in a child process, seeded and inspected over a pipe.

The simulator's Python API (``publish``, ``stream_requests``) lives in the
process that runs it; this module runs it in a spawned child on uvloop and
turns a few requests from the parent into calls of that API.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from armada_jobservice.bench.procs import ServingChild
from armada_jobservice.sim import ArmadaSimulator, build_event, failure_fields
from armada_jobservice.sim.engine import new_job_id

#: What a seeded job set holds: (job set id, its job ids, id of its last event).
Seeded = tuple[str, list[str], str]


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
        seeded.append((job_set_id, job_ids, last))
    return seeded


async def _trickle(
    sim: ArmadaSimulator,
    queue: str,
    job_set_ids: list[str],
    rate_per_s: float,
    counter: list[int],
    rng: random.Random,
    /,
) -> None:
    """Publish new jobs' ``submitted`` events round-robin over job sets at a steady rate."""
    start = time.perf_counter()
    sent = 0
    n_sets = len(job_set_ids)
    while True:
        due = int((time.perf_counter() - start) * rate_per_s)
        while sent < due:
            job_set_id = job_set_ids[sent % n_sets]
            sim.publish(
                queue,
                job_set_id,
                build_event("submitted", queue, job_set_id, new_job_id(rng)),
            )
            sent += 1
        counter[0] = sent
        await asyncio.sleep(0.005)


async def _serve(conn: Any) -> None:
    loop = asyncio.get_running_loop()
    rng = random.Random(5)
    async with ArmadaSimulator("127.0.0.1", 0, time_scale=0.0, seed=5) as sim:
        conn.send(("ready", sim.port))
        trickle: asyncio.Task[None] | None = None
        counter = [0]
        while True:
            request = await loop.run_in_executor(None, conn.recv)
            op, args = request[0], request[1:]
            try:
                if op == "stop":
                    conn.send(("ok",))
                    return
                if op == "seed":
                    queue, prefix, n_sets, per_set, kinds = args
                    conn.send(("ok", _seed(sim, queue, prefix, n_sets, per_set, kinds, rng)))
                elif op == "trickle":
                    if trickle is not None:
                        trickle.cancel()
                    counter[0] = 0
                    queue, job_set_ids, rate = args
                    trickle = loop.create_task(
                        _trickle(sim, queue, job_set_ids, rate, counter, rng)
                    )
                    conn.send(("ok",))
                elif op == "trickle_stop":
                    if trickle is not None:
                        trickle.cancel()
                        trickle = None
                    conn.send(("ok", counter[0]))
                elif op == "requests":
                    found = [
                        (r.queue, r.job_set_id, r.from_message_id) for r in sim.stream_requests
                    ]
                    sim.stream_requests.clear()
                    conn.send(("ok", found))
                elif op == "open_streams":
                    conn.send(("ok", sim.open_streams))
                elif op == "hold":
                    sim.faults.hold_streams()
                    conn.send(("ok",))
                elif op == "release":
                    sim.faults.release_streams()
                    conn.send(("ok", time.time()))
                else:
                    conn.send(("error", f"unknown request {op!r}"))
            except Exception as exc:
                conn.send(("error", repr(exc)))


def _main(conn: Any) -> None:
    import uvloop

    try:
        uvloop.run(_serve(conn))
    except Exception as exc:
        conn.send(("error", repr(exc)))


class SimHost(ServingChild):
    """Parent-side handle of the simulator child."""

    def __init__(self) -> None:
        super().__init__(_main)

    def _ok(self, *request: Any, timeout_s: float = 300.0) -> Any:
        answer = self.child.call(*request, timeout_s=timeout_s)
        return answer[1] if len(answer) > 1 else None

    def seed(
        self, queue: str, prefix: str, n_sets: int, jobs_per_set: int, kinds: tuple[str, ...]
    ) -> list[Seeded]:
        """Publish each kind of event for every job of *n_sets* new job sets."""
        result: list[Seeded] = self._ok("seed", queue, prefix, n_sets, jobs_per_set, kinds)
        return result

    def trickle(self, queue: str, job_set_ids: list[str], rate_per_s: float) -> None:
        """Start publishing new jobs over *job_set_ids* at *rate_per_s* events a second."""
        self._ok("trickle", queue, job_set_ids, rate_per_s)

    def trickle_stop(self) -> int:
        """Stop the trickle; return how many events it published."""
        n: int = self._ok("trickle_stop")
        return n

    def stream_requests(self) -> list[tuple[str, str, str]]:
        """(queue, job set, from_message_id) of every stream opened since the last call."""
        found: list[tuple[str, str, str]] = self._ok("requests")
        return found

    def open_streams(self) -> int:
        """Event streams open now."""
        n: int = self._ok("open_streams")
        return n

    def hold(self) -> None:
        """Let streams open but send nothing until ``release()``."""
        self._ok("hold")

    def release(self) -> float:
        """Let held streams send; return the wall-clock time of the release."""
        at: float = self._ok("release")
        return at
