"""Scenario 1: polls of cached jobs against a bare gRPC server answering a constant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from armada_jobservice.bench.harness import (
    Bench,
    Run,
    last_polls,
    median,
    per_cpu,
    rate,
    seed_for_polls,
)
from armada_jobservice.bench.report import from_rounds
from armada_jobservice.bench.scenarios import first_polls
from armada_jobservice.bench.servers import Constant, ServerChild
from armada_jobservice.bench.targets import target

SCENARIO = "1 cache-hit polls"
BASELINE = "bare grpc.aio+uvloop constant"


def run(bench: Bench) -> None:
    """Scenario 1: polls of cached jobs vs a bare grpc.aio server answering a constant.

    Every job of the bench mix is polled, in every state, failures and
    cancellations (answered with their error text) included.
    """
    sz = bench.sizes
    queue = "hits"
    seeded, polls = seed_for_polls(bench, queue)
    # The bare handler answers one constant whatever the job: nothing to check.
    base_polls = [p._replace(want=None) for p in polls]
    conc = sz.concurrency

    base = ServerChild(Constant())
    base_cpu = 0.0
    try:
        with bench.service() as svc:
            bench.await_visible(svc.address, last_polls(seeded, queue))
            b_sat: list[Run] = []
            s_sat: list[Run] = []
            b_fix: list[Run] = []
            s_fix: list[Run] = []
            for _ in range(sz.rounds):
                b_sat.append(bench.polls(base.address, base.pid, base_polls, "closed", conc))
                s_sat.append(bench.polls(svc.address, svc.pid, polls, "closed", conc))
            offered = max(50.0, round(0.5 * median(rate(r, m) for r, m in b_sat), -1))
            for _ in range(sz.rounds):
                b_fix.append(bench.polls(base.address, base.pid, base_polls, "open", offered))
                s_fix.append(bench.polls(svc.address, svc.pid, polls, "open", offered))
            base_cpu = sum(m.cpu_s for _, m in b_sat + b_fix)
            bench.known["hits_per_cpu_s"] = median(per_cpu(r, m) for r, m in s_sat)
            bench.known["hits_rate"] = offered
            bench.known["hits_p50_ms"] = median(r.percentile_ms(50) for r, _ in s_fix)
            bench.known["hits_p99_ms"] = median(r.percentile_ms(99) for r, _ in s_fix)
            # Scenario 2 runs on the same process, with these job sets still subscribed.
            first_polls.run(bench, svc)
    finally:
        bench.cpu("baseline (constant)", base_cpu)
        base.stop()
    _report(bench, offered, (s_sat, b_sat), (s_fix, b_fix))


def _report(
    bench: Bench,
    offered: float,
    sat: tuple[list[Run], list[Run]],
    fix: tuple[list[Run], list[Run]],
) -> None:
    sz = bench.sizes
    rounds_note = f"median (range) of {sz.rounds} alternating rounds"

    def add(
        name: str,
        fn: Callable[..., float],
        unit: str,
        runs: tuple[list[Run], list[Run]],
        *,
        higher_is_better: bool = True,
        note: str = "",
        **targets: Any,
    ) -> None:
        service_runs, base_runs = runs
        bench.report.add(
            from_rounds(
                SCENARIO,
                name,
                (fn(r, m) for r, m in service_runs),
                unit,
                (fn(r, m) for r, m in base_runs),
                BASELINE,
                higher_is_better=higher_is_better,
                note=note,
                **targets,
            )
        )

    add(
        "polls per server-CPU-second, saturated",
        per_cpu,
        "calls/cpu-s",
        sat,
        **target("polls_per_cpu_s"),
        note=f"jobs of the bench mix in every state; {sz.load_processes} load processes x "
        f"{sz.concurrency} callers; {rounds_note}",
    )
    add("polls per second, saturated", rate, "calls/s", sat)
    add(
        "server CPU use, saturated",
        lambda r, m: m.cpu_s / m.wall_s,
        "cores",
        sat,
        higher_is_better=False,
    )
    for label, runs in ((", saturated", sat), (f" at {offered:.0f} polls/s offered", fix)):
        for p in (50, 99):
            add(
                f"p{p} latency{label}",
                lambda r, m, p=p: r.percentile_ms(p),
                "ms",
                runs,
                higher_is_better=False,
            )
    add(f"polls per server-CPU-second at {offered:.0f}/s", per_cpu, "calls/cpu-s", fix)
