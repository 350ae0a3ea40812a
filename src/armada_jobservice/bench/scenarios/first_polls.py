"""Scenario 2: first polls of new job sets (the subscribe path), on a running service.

Run by scenario 1 on its service process, with scenario 1's job sets still
subscribed; its figures are compared with scenario 1's.
"""

from __future__ import annotations

from armada_jobservice.bench.harness import Bench
from armada_jobservice.bench.load import LoadGroup
from armada_jobservice.bench.messages import FirstEvents, JobSetRef, Poll, percentile
from armada_jobservice.bench.procs import CpuMeter, ServiceProcess
from armada_jobservice.bench.report import Figure

SCENARIO = "2 first polls"


def run(bench: Bench, svc: ServiceProcess) -> None:
    """Scenario 2: first polls of new job sets (the subscribe path), on a running service."""
    sz, rep = bench.sizes, bench.report
    queue = "first"
    seeded = bench.sim.seed_mix(queue, "first", sz.first_poll_sets, 3)
    polls = [Poll(queue, s.job_set_id, s.job_ids[0], None) for s in seeded]
    meter = CpuMeter(svc.pid).start()
    got = bench.await_visible(svc.address, polls, concurrency=8, interval_s=0.01)
    meter.stop()
    n = len(got.first)
    rate = n / got.first_done if got.first_done else float("nan")
    rep.add(Figure(SCENARIO, "first polls per second", rate, "calls/s", note=f"{n} new job sets"))
    per_cpu = n / meter.cpu_s if meter.cpu_s else float("nan")
    rep.add(
        Figure(
            SCENARIO,
            "job sets subscribed per server-CPU-second",
            per_cpu,
            "sets/cpu-s",
            bench.known.get("hits_per_cpu_s"),
            "cache-hit polls/cpu-s (1)",
            note="includes the repeat polls until visible (every 10 ms)",
        )
    )
    rep.add(
        Figure(
            SCENARIO,
            "first poll answer p50",
            percentile(got.first, 50) * 1000,
            "ms",
            bench.known.get("hits_p50_ms"),
            "cache-hit p50 (1)",
            higher_is_better=False,
        )
    )
    # The baseline: opening the same streams straight from the simulator.
    job_sets = [JobSetRef(queue, s.job_set_id) for s in seeded]
    group = LoadGroup([FirstEvents(bench.sim.address, job_sets, 16)])
    group.go(0.1)
    direct: list[float] = group.results()[0]
    for p in (50, 99):
        rep.add(
            Figure(
                SCENARIO,
                f"time until first event visible p{p}",
                percentile(got.visible, p) * 1000,
                "ms",
                percentile(direct, p) * 1000,
                "first event on a direct stream",
                higher_is_better=False,
                note="polled every 10 ms by 16 callers",
            )
        )
