"""Scenario 3: events applied and flushed to SQLite against a receive-and-parse client."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from armada_jobservice.bench.harness import LIFECYCLE, Bench, median, sleep_until
from armada_jobservice.bench.load import LoadGroup
from armada_jobservice.bench.messages import JobSetRef, Poll, Seeded, StreamCounts, StreamRead
from armada_jobservice.bench.procfs import cpu_s
from armada_jobservice.bench.procs import BenchError, CpuMeter
from armada_jobservice.bench.report import Figure

SCENARIO = "3 ingestion"
BASELINE = "receive-and-parse client"


def run(bench: Bench) -> None:
    """Scenario 3: events applied and flushed to SQLite vs a receive-and-parse-only client.

    The target figure is timed from open streams: both sides open every
    stream first (the service through one first poll per job set) while the
    simulator holds them, and the clock starts when it lets them send. Over
    many job sets the same is also measured from the first call, so that
    opening the streams (the subscribe path) is included, as after a restart.
    Baseline and service take turns, ``rounds`` times; medians are reported.
    """
    sz, rep = bench.sizes, bench.report
    rounds_note = f"median of {sz.rounds} alternating rounds"
    for label, n_sets, jobs_per_set in (
        ("1 job set", 1, sz.ingest_one_jobs),
        (f"{sz.ingest_many_sets:,} job sets", sz.ingest_many_sets, sz.ingest_many_jobs_per_set),
    ):
        queue = f"ingest-{n_sets}"
        seeded = bench.sim.seed(queue, queue, n_sets, jobs_per_set, LIFECYCLE)
        events = n_sets * jobs_per_set * len(LIFECYCLE)
        job_sets = [JobSetRef(queue, s.job_set_id) for s in seeded]
        modes = (True, False) if n_sets > 1 else (True,)
        base_runs: dict[bool, list[tuple[float, float, float]]] = {m: [] for m in modes}
        service_runs: dict[bool, list[tuple[float, float]]] = {m: [] for m in modes}
        for _ in range(sz.rounds):
            for held in modes:
                base_runs[held].append(_baseline(bench, job_sets, events, held))
                service_runs[held].append(_service(bench, queue, seeded, events, label, held))
        for held in modes:
            base_rate, base_cpu_us, sim_cpu_us = (
                median(r[i] for r in base_runs[held]) for i in range(3)
            )
            rate, cpu_us = (median(r[i] for r in service_runs[held]) for i in range(2))
            how = "" if held else ", timed from the first poll (streams opened by the polls)"
            rep.add(
                Figure(
                    SCENARIO,
                    f"events/s applied and flushed, {label}{how}",
                    rate,
                    "events/s",
                    base_rate,
                    BASELINE + ("" if held else " timed from its first call"),
                    min_ratio=0.8 if held else None,
                    note=(
                        f"{events:,} events; "
                        + ("streams open before the first event; " if held else "")
                        + f"default flushes (1 s while busy, ~0.1 s once quiet); {rounds_note}"
                    ),
                )
            )
            rep.add(
                Figure(
                    SCENARIO,
                    f"server CPU per event, {label}{how}",
                    cpu_us,
                    "us",
                    base_cpu_us,
                    f"{BASELINE} CPU per event",
                    higher_is_better=False,
                    note=f"simulator: {sim_cpu_us:.0f} us per event sent; {rounds_note}",
                )
            )


def _durable(db: Path, expected: dict[tuple[str, str], str]) -> bool:
    """Whether the database holds every job set at its expected last position."""
    if not db.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return False
    try:
        rows = conn.execute("SELECT queue, job_set_id, last_message_id FROM job_sets").fetchall()
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    stored = {(q, s): m for q, s, m in rows}
    return all(stored.get(k) == m for k, m in expected.items())


@contextlib.contextmanager
def _held_streams(bench: Bench, want: int) -> Iterator[list[float]]:
    """Hold the simulator's streams; the body opens *want* more; then release them.

    The body runs with streams held; on its normal exit this waits until the
    streams are open and releases them, appending the release's wall-clock
    time to the yielded list. Streams are released however the body ends.
    """
    sim = bench.sim
    before = sim.open_streams()
    sim.hold()
    released: list[float] = []
    try:
        yield released
        deadline = time.time() + 120
        while sim.open_streams() < before + want:
            if time.time() > deadline:
                raise BenchError(f"{want} streams did not open within 120 s")
            time.sleep(0.01)
        released.append(sim.release())
    finally:
        sim.release()


def _baseline(
    bench: Bench, job_sets: list[JobSetRef], events: int, held: bool
) -> tuple[float, float, float]:
    """One receive-and-parse run: (events/s, its CPU us per event, simulator CPU us per event).

    *held*: the streams are all open before the simulator sends, and the run
    is timed from that release; otherwise from the client's first call.
    """
    group = LoadGroup([StreamRead(bench.sim.address, job_sets, events, 300.0, 1 << 30)])
    sim_meter = CpuMeter(bench.sim.pid)
    cpu_at_release = 0.0
    with contextlib.ExitStack() as stack:
        released = stack.enter_context(_held_streams(bench, len(job_sets))) if held else []
        start = group.go()
        sleep_until(start)
        if held:
            stack.close()  # waits for the streams to open, then releases them
            cpu_at_release = cpu_s(group.pids[0])
        sim_meter.start()
    base: StreamCounts = group.results()[0]
    sim_meter.stop()
    if base.received < events:
        return 0.0, float("nan"), float("nan")
    if held:
        elapsed, cpu = base.done_at - released[0], base.cpu_done_s - cpu_at_release
    else:
        elapsed, cpu = base.elapsed_s, base.cpu_s
    return events / elapsed, cpu / events * 1e6, sim_meter.cpu_s / events * 1e6


def _service(
    bench: Bench, queue: str, seeded: Sequence[Seeded], events: int, label: str, held: bool
) -> tuple[float, float]:
    """One service run on a fresh database: (events/s applied and flushed, CPU us per event).

    The first poll of each job set subscribes it. *held*: the streams are all
    open before the simulator sends, and the run is timed from that release;
    otherwise from the first poll.
    """
    db = bench.new_database()
    expected = {(queue, s.job_set_id): s.last_message_id for s in seeded}
    polls = [Poll(queue, s.job_set_id, s.job_ids[0], None) for s in seeded]
    with bench.service(db=db) as svc:
        meter = CpuMeter(svc.pid)
        if held:
            with _held_streams(bench, len(seeded)) as released:
                bench.touch(svc.address, polls)
                meter.start()
            start = released[0]
        else:
            meter.start()
            start = bench.touch(svc.address, polls)
        while not _durable(db, expected):
            if time.time() - start > 600:
                bench.report.errors.append(f"ingestion over {label}: not durable after 600 s")
                break
            time.sleep(0.02)
        elapsed = time.time() - start
        meter.stop()
    return events / elapsed, meter.cpu_s / events * 1e6
