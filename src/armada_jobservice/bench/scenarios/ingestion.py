"""Scenario 3: events applied and flushed to SQLite against a receive-and-parse client."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from armada_jobservice.bench.harness import Bench, median, sleep_until
from armada_jobservice.bench.load import LoadGroup
from armada_jobservice.bench.messages import JobSetRef, Poll, Seeded, StreamCounts, StreamRead
from armada_jobservice.bench.procfs import cpu_s
from armada_jobservice.bench.procs import BenchError, CpuMeter
from armada_jobservice.bench.report import from_rounds
from armada_jobservice.bench.targets import target

SCENARIO = "3 ingestion"
BASELINE = "receive-and-parse client"


def run(bench: Bench) -> None:
    """Scenario 3: events applied and flushed to SQLite vs a receive-and-parse-only client.

    The target figures are timed from the first call: the service's first
    poll of each job set (which opens its stream, as in production) and the
    client's first stream call. The same is also timed from open streams:
    both sides open every stream while the simulator holds them, and the
    clock starts when it lets them send. Baseline and service take turns,
    ``rounds`` times; a failed round is an error, never a value.
    """
    sz = bench.sizes
    for label, n_sets, jobs_per_set in (
        ("1 job set", 1, sz.ingest_one_jobs),
        (f"{sz.ingest_many_sets:,} job sets", sz.ingest_many_sets, sz.ingest_many_jobs_per_set),
    ):
        queue = f"ingest-{n_sets}"
        seeded = bench.sim.seed_mix(queue, queue, n_sets, jobs_per_set)
        events = sum(s.events for s in seeded)
        job_sets = [JobSetRef(queue, s.job_set_id) for s in seeded]
        for held in (False, True):
            base_runs: list[_Base] = []
            service_runs: list[_Service] = []
            for n in range(sz.rounds):
                where = f"ingestion over {label} ({'open streams' if held else 'first poll'})"
                b = _baseline(bench, job_sets, events, held)
                if b is None:
                    bench.report.errors.append(f"{where}, round {n + 1}: the client missed events")
                else:
                    base_runs.append(b)
                s = _service(bench, queue, seeded, events, held)
                if s is None:
                    bench.report.errors.append(f"{where}, round {n + 1}: not durable after 600 s")
                else:
                    service_runs.append(s)
            _report(bench, label, events, held, base_runs, service_runs)


def _report(
    bench: Bench,
    label: str,
    events: int,
    held: bool,
    base_runs: Sequence[_Base],
    service_runs: Sequence[_Service],
) -> None:
    rounds_note = f"median (range) of {bench.sizes.rounds} alternating rounds"
    variant = "1 job set" if label == "1 job set" else "many job sets"
    how = ", from open streams" if held else ", timed from the first poll"
    sim_cpu = median(r.sim_cpu_us for r in base_runs) if base_runs else float("nan")
    bench.report.add(
        from_rounds(
            SCENARIO,
            f"server CPU per event, {label}{how}",
            (r.cpu_us for r in service_runs),
            "us",
            (r.cpu_us for r in base_runs),
            f"{BASELINE} CPU per event",
            higher_is_better=False,
            **({} if held else target("ingest_cpu_per_event", variant)),
            note=f"{events:,} events of the bench mix; simulator {sim_cpu:.0f} us per event "
            f"sent; {rounds_note}",
        )
    )
    bench.report.add(
        from_rounds(
            SCENARIO,
            f"events/s applied and flushed, {label}{how}",
            (r.rate for r in service_runs),
            "events/s",
            (r.rate for r in base_runs),
            BASELINE + (" from open streams" if held else " timed from its first call"),
            **({} if held else target("ingest_events_per_s", variant)),
            note=("streams open before the first event; " if held else "")
            + f"default flushes (1 s while busy, ~0.1 s once quiet); {rounds_note}",
        )
    )


class _Base(NamedTuple):
    """One receive-and-parse round."""

    rate: float
    cpu_us: float
    sim_cpu_us: float


class _Service(NamedTuple):
    """One service round."""

    rate: float
    cpu_us: float


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


def _baseline(bench: Bench, job_sets: list[JobSetRef], events: int, held: bool) -> _Base | None:
    """One receive-and-parse run, or None when it did not receive every event.

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
        return None
    if held:
        elapsed, cpu = base.done_at - released[0], base.cpu_done_s - cpu_at_release
    else:
        elapsed, cpu = base.elapsed_s, base.cpu_s
    return _Base(events / elapsed, cpu / events * 1e6, sim_meter.cpu_s / events * 1e6)


def _service(
    bench: Bench, queue: str, seeded: Sequence[Seeded], events: int, held: bool
) -> _Service | None:
    """One service run on a fresh database, or None when it was not durable in time.

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
                return None
            time.sleep(0.02)
        elapsed = time.time() - start
        meter.stop()
    return _Service(events / elapsed, meter.cpu_s / events * 1e6)
