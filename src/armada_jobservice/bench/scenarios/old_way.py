"""Scenario 6: the same polls and events served by a write-through design."""

from __future__ import annotations

import time

from armada_jobservice._wire import WireState
from armada_jobservice.bench.harness import LIFECYCLE, Bench, last_polls, seed_for_polls
from armada_jobservice.bench.procs import CpuMeter
from armada_jobservice.bench.report import Figure
from armada_jobservice.bench.servers import ServerChild, WriteThrough

SCENARIO = "6 old way"
BASELINE = "write-through (a write per event, a read per poll)"


def run(bench: Bench) -> None:
    """Scenario 6: the same polls served by a write-through design (a write per event)."""
    sz, rep = bench.sizes, bench.report
    queue = "old"
    seeded, polls = seed_for_polls(bench, queue)
    events = len(polls) * len(LIFECYCLE)

    def measure(address: str, pid: int) -> tuple[float, float, float]:
        """(polls per server-CPU-second, events/s until visible, CPU us per event)."""
        meter = CpuMeter(pid).start()
        t0 = time.perf_counter()
        bench.await_visible(
            address, last_polls(seeded, queue, WireState.SUCCEEDED), interval_s=0.05
        )
        ingest_s = time.perf_counter() - t0
        meter.stop()
        result, m = bench.polls(address, pid, polls, "closed", sz.concurrency)
        return result.calls / m.cpu_s, events / ingest_s, meter.cpu_s / events * 1e6

    wt = ServerChild(WriteThrough(bench.sim.address, str(bench.workdir / "write-through.db")))
    try:
        w_poll, w_ingest, w_cpu = measure(wt.address, wt.pid)
    finally:
        wt.stop()
    with bench.service() as svc:
        s_poll, s_ingest, s_cpu = measure(svc.address, svc.pid)
    rep.add(
        Figure(
            SCENARIO,
            "polls per server-CPU-second, saturated",
            s_poll,
            "calls/cpu-s",
            w_poll,
            BASELINE,
        )
    )
    rep.add(
        Figure(
            SCENARIO,
            "events/s until visible to polls",
            s_ingest,
            "events/s",
            w_ingest,
            BASELINE,
            note=f"{events:,} events over {len(seeded)} job sets",
        )
    )
    rep.add(
        Figure(
            SCENARIO, "server CPU per event", s_cpu, "us", w_cpu, BASELINE, higher_is_better=False
        )
    )
