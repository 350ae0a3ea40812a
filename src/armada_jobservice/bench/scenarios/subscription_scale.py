"""Scenario 4: many job sets subscribed at once: memory per stream, polls while streaming.

Its figure of memory per cached job is measured in scenario 5's restart,
which holds a million jobs.
"""

from __future__ import annotations

import os
import random
import signal
import time

from armada_jobservice._wire import WireState
from armada_jobservice.bench.harness import Bench, median
from armada_jobservice.bench.load import LoadGroup
from armada_jobservice.bench.messages import JobSetRef, Poll, StreamCounts, StreamRead
from armada_jobservice.bench.procfs import rss_bytes
from armada_jobservice.bench.report import Figure, from_rounds
from armada_jobservice.bench.targets import target

SCENARIO = "4 subscription scale"


def run(bench: Bench) -> None:
    """Scenario 4: many job sets subscribed at once: memory per stream, polls while streaming."""
    sz, rep = bench.sizes, bench.report
    queue = "scale"
    seeded = bench.sim.seed(queue, "scale", sz.scale_sets, 1, ("submitted",))
    job_sets = [JobSetRef(queue, s.job_set_id) for s in seeded]
    group = LoadGroup([StreamRead(bench.sim.address, job_sets, len(job_sets), 300.0, 100)])
    group.go()
    bare: StreamCounts = group.results()[0]
    bare_per_stream = (bare.rss_open - bare.rss_before) / len(job_sets)

    with bench.service() as svc:
        time.sleep(0.5)
        rss0 = rss_bytes(svc.pid)
        t0 = time.perf_counter()
        bench.touch(svc.address, [Poll(queue, s.job_set_id, s.job_ids[0], None) for s in seeded])
        bench.await_visible(
            svc.address,
            [Poll(queue, s.job_set_id, s.job_ids[0], WireState.SUBMITTED) for s in seeded],
        )
        opened_s = time.perf_counter() - t0
        rss1 = rss_bytes(svc.pid)
        streams = bench.sim.open_streams()
        per_sub = (rss1 - rss0) / len(seeded)
        rep.add(
            Figure(
                SCENARIO,
                "RSS per subscription",
                per_sub,
                "bytes",
                bare_per_stream,
                "bare client per open stream",
                higher_is_better=False,
                note=f"{len(seeded):,} job sets; simulator saw {streams:,} open streams",
            )
        )
        rep.add(
            Figure(
                SCENARIO,
                "job sets subscribed and visible per second",
                len(seeded) / opened_s,
                "sets/s",
            )
        )
        # Polls at scenario 1's offered load while every stream receives events.
        rate = bench.known.get("hits_rate", 500.0)
        bench.sim.trickle(queue, [s.job_set_id for s in seeded], sz.scale_trickle_per_s)
        polls = [Poll(queue, s.job_set_id, s.job_ids[0], None) for s in seeded]
        random.Random(2).shuffle(polls)
        # Windows one after another, as many as scenario 1 has rounds.
        windows = [
            bench.polls(svc.address, svc.pid, polls, "open", rate)[0] for _ in range(sz.rounds)
        ]
        # The same again, with the collector's full collection (due every
        # quarter hour in production) forced half way through.
        forced, _ = bench.polls(
            svc.address, svc.pid, polls, "open", rate, lambda: os.kill(svc.pid, signal.SIGUSR1)
        )
        published = bench.sim.trickle_stop()
    note = f"{sz.scale_trickle_per_s:,.0f} events/s of the bench mix over {len(seeded):,} streams"
    rep.info["scale_events_published"] = published
    for p in (50, 99):
        known = bench.known.get(f"hits_p{p}_ms")
        rep.add(
            from_rounds(
                SCENARIO,
                f"p{p} latency at {rate:.0f} polls/s while streaming",
                (w.percentile_ms(p) for w in windows),
                "ms",
                None if known is None else [known],
                "same load, no streams (1)",
                higher_is_better=False,
                note=f"{note}; median (range) of {sz.rounds} windows of {sz.poll_s:g} s",
                **(target("streaming_p99") if p == 99 else {}),
            )
        )
    for label, value in (
        ("p99 latency", forced.percentile_ms(99)),
        ("longest poll", forced.percentile_ms(100)),
    ):
        rep.add(
            Figure(
                SCENARIO,
                f"{label} while streaming, a full garbage collection forced in the window",
                value,
                "ms",
                median(w.percentile_ms(99) for w in windows),
                "p99 while streaming, no full collection",
                higher_is_better=False,
                note=f"{note}; SIGUSR1 to serve half way through the {sz.poll_s:g} s window",
            )
        )
