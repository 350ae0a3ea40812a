"""Scenario 6: the same polls and events served by a write-through design."""

from __future__ import annotations

import time
from typing import NamedTuple

from armada_jobservice.bench.harness import Bench, last_polls, seed_for_polls
from armada_jobservice.bench.messages import Poll, Seeded
from armada_jobservice.bench.procs import CpuMeter
from armada_jobservice.bench.report import from_rounds
from armada_jobservice.bench.servers import ServerChild, WriteThrough

SCENARIO = "6 old way"
BASELINE = "write-through (a write per event, a read per poll)"


class _Round(NamedTuple):
    """One side's round: polls per server-CPU-second, events/s until visible, CPU per event."""

    polls_per_cpu_s: float
    events_per_s: float
    cpu_us: float


def run(bench: Bench) -> None:
    """Scenario 6: the same polls served by a write-through design (a write per event).

    Write-through and service take turns, ``rounds`` times, each on a fresh
    database reading the same job sets (seeded from the bench mix) from their
    first event; medians and ranges are reported.
    """
    sz, rep = bench.sizes, bench.report
    queue = "old"
    seeded, polls = seed_for_polls(bench, queue)
    events = sum(s.events for s in seeded)
    base_runs: list[_Round] = []
    service_runs: list[_Round] = []
    for n in range(sz.rounds):
        db = str(bench.workdir / f"write-through-{n}.db")
        wt = ServerChild(WriteThrough(bench.sim.address, db))
        try:
            base_runs.append(_measure(bench, wt.address, wt.pid, seeded, polls, queue))
        finally:
            wt.stop()
        with bench.service() as svc:
            service_runs.append(_measure(bench, svc.address, svc.pid, seeded, polls, queue))
    note = f"median (range) of {sz.rounds} alternating rounds"
    for name, i, unit, higher in (
        ("polls per server-CPU-second, saturated", 0, "calls/cpu-s", True),
        ("events/s until visible to polls", 1, "events/s", True),
        ("server CPU per event", 2, "us", False),
    ):
        rep.add(
            from_rounds(
                SCENARIO,
                name,
                (r[i] for r in service_runs),
                unit,
                (r[i] for r in base_runs),
                BASELINE,
                higher_is_better=higher,
                note=f"{events:,} events of the bench mix over {len(seeded)} job sets; {note}",
            )
        )


def _measure(
    bench: Bench, address: str, pid: int, seeded: list[Seeded], polls: list[Poll], queue: str
) -> _Round:
    """Time until every job set is visible, then saturate the server with polls."""
    events = sum(s.events for s in seeded)
    meter = CpuMeter(pid).start()
    t0 = time.perf_counter()
    bench.await_visible(address, last_polls(seeded, queue), interval_s=0.05)
    ingest_s = time.perf_counter() - t0
    meter.stop()
    result, m = bench.polls(address, pid, polls, "closed", bench.sizes.concurrency)
    return _Round(result.calls / m.cpu_s, events / ingest_s, meter.cpu_s / events * 1e6)
