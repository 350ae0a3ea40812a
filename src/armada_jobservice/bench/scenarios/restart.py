"""Scenario 5: start with many jobs in the database; and the memory per cached job (of 4)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from armada_jobservice._wire import WireState
from armada_jobservice.bench.harness import Bench
from armada_jobservice.bench.messages import Done, Poll, Seeded
from armada_jobservice.bench.procfs import rss_bytes
from armada_jobservice.bench.procs import BenchError, Child
from armada_jobservice.bench.report import Figure
from armada_jobservice.bench.scenarios import subscription_scale
from armada_jobservice.bench.targets import target
from armada_jobservice.server.model import JobRow, JobSetKey
from armada_jobservice.server.store.base import JobSetWrite
from armada_jobservice.server.store.sqlite import SQLiteStore
from armada_jobservice.sim.engine import new_job_id

SCENARIO = "5 restart"


@dataclass(frozen=True, slots=True)
class _Started:
    """Timings and memory of one start of the service until every job set answered."""

    listening_s: float
    first_s: float
    all_s: float
    #: RSS once the first job set answered, and once all of them did.
    rss0: int
    rss1: int


def run(bench: Bench) -> None:
    """Scenario 5: start with many jobs in the database; and the memory per cached job."""
    sz, rep = bench.sizes, bench.report
    queue = "restart"
    jobs_per_set = sz.restart_jobs // sz.restart_sets
    total = jobs_per_set * sz.restart_sets
    seeded = bench.sim.seed(queue, "restart", sz.restart_sets, 2, ("submitted", "running"))
    db = bench.workdir / "restart.db"
    polls = _seed_db(db, queue, seeded, jobs_per_set)
    positions = {s.job_set_id: s.last_message_id for s in seeded}
    empty_db = bench.workdir / "restart-empty.db"
    empty_polls = [Poll(queue, s.job_set_id, s.job_ids[0], WireState.RUNNING) for s in seeded]

    bench.sim.stream_requests()
    empty = _start_and_serve(bench, empty_db, empty_polls)
    bench.sim.stream_requests()
    full = _start_and_serve(bench, db, polls)
    requests = [r for r in bench.sim.stream_requests() if r.queue == queue]
    replays = sum(1 for r in requests if r.from_message_id != positions[r.job_set_id])
    rep.add(
        Figure(
            SCENARIO,
            f"start to first correct answer, {total:,} jobs stored",
            full.first_s * 1000,
            "ms",
            empty.first_s * 1000,
            "same with an empty database",
            higher_is_better=False,
            note=f"listening after {full.listening_s * 1000:.0f} ms",
        )
    )
    rep.add(
        Figure(
            SCENARIO,
            f"start to every job set answering correctly, {total:,} jobs",
            full.all_s,
            "s",
            empty.all_s,
            "same with an empty database",
            higher_is_better=False,
            note=f"{sz.restart_sets} job sets of {jobs_per_set:,} jobs",
        )
    )
    rep.add(
        Figure(
            SCENARIO,
            "streams not resumed from the stored position",
            replays,
            "streams",
            note=f"of {len(requests)} stream requests recorded by the simulator",
        )
    )
    rep.info["restart_stream_requests"] = len(requests)

    child = Child(_dict_memory, total)
    try:
        answer = child.recv(600)
    finally:
        child.stop()
    if not isinstance(answer, Done):
        raise BenchError(f"the dict memory child answered {answer!r}")
    rep.add(
        Figure(
            subscription_scale.SCENARIO,
            f"RSS per cached job at {total:,} jobs",
            (full.rss1 - full.rss0) / (total - jobs_per_set),
            "bytes",
            answer.value,
            "plain dict id -> small int (the cache's own layout)",
            higher_is_better=False,
            **target("bytes_per_job"),
            note=f"everything included: {sz.restart_sets} subscriptions, SQLite cache",
        )
    )


def _start_and_serve(bench: Bench, db: Path, todo: list[Poll]) -> _Started:
    """Start the service on *db* and poll until every poll of *todo* answers as expected."""
    t0 = time.perf_counter()
    with bench.service(db=db) as svc:
        listening = time.perf_counter() - t0
        bench.await_visible(svc.address, todo[:1], concurrency=1, interval_s=0.005)
        first_s = time.perf_counter() - t0
        # Memory is counted from here: the first job set paid the one-off
        # costs (store thread, channel to Armada, first calls).
        rss0 = rss_bytes(svc.pid)
        bench.await_visible(svc.address, todo[1:], concurrency=8, interval_s=0.01)
        all_s = time.perf_counter() - t0
        rss1 = rss_bytes(svc.pid)
    return _Started(listening, first_s, all_s, rss0, rss1)


def _dict_memory(conn: Any, n: int) -> None:
    """Child: RSS growth of a plain dict of *n* 26-character ids to a small int.

    The cache keeps a job as its id mapped to its state's int (and, apart,
    the error text of the 5% of the restart's jobs that failed), so that is
    the baseline: no tuple per entry.
    """
    rng = random.Random(3)
    before = rss_bytes(os.getpid())
    table = {new_job_id(rng): WireState.SUCCEEDED.value for _ in range(n)}
    conn.send(Done((rss_bytes(os.getpid()) - before) / len(table)))


def _seed_db(db: Path, queue: str, seeded: Sequence[Seeded], jobs_per_set: int) -> list[Poll]:
    """Write *jobs_per_set* jobs for each seeded job set, positioned at its last event.

    Returns a poll of each job set's last job, expecting its stored state.
    """
    store = SQLiteStore(str(db))
    store.open()
    rng = random.Random(4)
    polls: list[Poll] = []
    batch = []
    for s in seeded:
        rows = []
        for i in range(jobs_per_set):
            if i % 20 == 0:
                row = JobRow(
                    new_job_id(rng),
                    WireState.FAILED.value,
                    "OOMKilled (cause: OOM; exit codes: main=137)",
                )
            elif i % 3 == 0:
                row = JobRow(new_job_id(rng), WireState.RUNNING.value, None)
            else:
                row = JobRow(new_job_id(rng), WireState.SUCCEEDED.value, None)
            rows.append(row)
        polls.append(Poll(queue, s.job_set_id, rows[-1].job_id, WireState(rows[-1].state)))
        batch.append(
            JobSetWrite(JobSetKey(queue, s.job_set_id), s.last_message_id, time.time(), rows)
        )
        if len(batch) >= 10:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)
    store.close()
    return polls
