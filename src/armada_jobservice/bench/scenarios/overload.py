"""Scenario 9: floods of first polls and of polls, and a steady poller through them.

One service, with ``max_subscriptions`` and ``max_concurrent_calls`` from the
sizes. A steady poller asks about cached jobs (every state) at a fixed rate
throughout; its p99 when nothing else runs is the baseline. Then, in turn:

1. a flood of first polls: ten times ``max_subscriptions`` new job sets, each
   polled once;
2. a flood of polls of cached jobs by closed-loop callers, together more
   calls in flight than ``max_queued_calls`` (at the defaults), each with
   the client's default deadline;
3. the steady poller alone again (recovery).

What is measured: the steady poller's p99 and the share of its polls that
were answered in each phase, what the floods got (answers, RESOURCE_EXHAUSTED,
timeouts), the job sets subscribed, and the service's resident memory.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from typing import Any

from armada_jobservice._client import DEFAULT_CALL_TIMEOUT_S
from armada_jobservice._wire import WireState
from armada_jobservice.bench.harness import Bench, last_polls, sleep_until
from armada_jobservice.bench.load import LoadGroup, split
from armada_jobservice.bench.messages import Poll, PollCounts, PollLoad
from armada_jobservice.bench.procfs import rss_bytes
from armada_jobservice.bench.procs import CpuMeter
from armada_jobservice.bench.report import Figure
from armada_jobservice.bench.targets import target
from armada_jobservice.server.config import default_of

SCENARIO = "9 overload"
#: The steady poller's rate, polls a second (one load process).
STEADY_PER_S = 200.0
#: What gRPC answers a call beyond ``max_concurrent_calls`` / ``max_queued_calls``.
SHED = ("RESOURCE_EXHAUSTED", "CANCELLED")
TIMED_OUT = "DEADLINE_EXCEEDED"


class _PeakRss:
    """The highest resident memory of a process, sampled every 50 ms on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(OSError, LookupError):
                self.peak = max(self.peak, rss_bytes(self.pid))

    @contextlib.contextmanager
    def running(self) -> Iterator[_PeakRss]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def _phase(
    address: str, steady: list[Poll], floods: list[PollLoad], window_s: float
) -> tuple[PollCounts, list[PollCounts]]:
    """The steady poller for *window_s*, with *floods* started at the same instant."""
    steady_load = PollLoad(address, steady, "open", STEADY_PER_S, window_s, DEFAULT_CALL_TIMEOUT_S)
    group = LoadGroup([steady_load, *floods])
    start = group.go()
    sleep_until(start + window_s)
    results: list[PollCounts] = group.results()
    return results[0], results[1:]


def run(bench: Bench) -> None:
    """Scenario 9: a steady poller through floods of first polls and of polls (overload)."""
    sz = bench.sizes
    limit = sz.overload_subscriptions
    queue = "overload"
    seeded = bench.sim.seed_mix(queue, queue, max(1, sz.poll_sets // 4), sz.poll_jobs_per_set)
    steady = [
        Poll(queue, s.job_set_id, job, want)
        for s in seeded
        for job, want in zip(s.job_ids, s.wants, strict=True)
    ]
    random.Random(9).shuffle(steady)
    # Ten times the limit of job sets nobody asked about before (the simulator
    # has no events for them: each answers as soon as it is subscribed).
    first = [Poll(queue, f"flood-{k}", "j", None) for k in range(10 * limit)]
    window = max(3.0, sz.poll_s)
    max_calls = sz.overload_max_calls or default_of("max_concurrent_calls")
    max_queued = sz.overload_max_queued or default_of("max_queued_calls")
    extra = [
        "--max-subscriptions",
        str(limit),
        "--max-concurrent-calls",
        str(max_calls),
        "--max-queued-calls",
        str(max_queued),
    ]
    with bench.service(*extra) as svc:
        bench.await_visible(svc.address, last_polls(seeded, queue))
        rss_idle = rss_bytes(svc.pid)
        meter = CpuMeter(svc.pid).start()
        with _PeakRss(svc.pid).running() as peak:
            calm, _ = _phase(svc.address, steady, [], window)
            n = sz.load_processes
            during_first, first_runs = _phase(
                svc.address,
                steady,
                [
                    PollLoad(svc.address, part, "once", 64, 0.0, DEFAULT_CALL_TIMEOUT_S)
                    for part in split(first, n)
                ],
                window,
            )
            during_polls, poll_runs = _phase(
                svc.address,
                steady,
                [
                    PollLoad(
                        svc.address,
                        part,
                        "closed",
                        sz.overload_callers,
                        window,
                        DEFAULT_CALL_TIMEOUT_S,
                    )
                    for part in split(steady, n)
                ],
                window,
            )
            after, _ = _phase(svc.address, steady, [], window)
        meter.stop()
        rss_after = rss_bytes(svc.pid)
    _report(
        bench,
        {"calm": calm, "first": during_first, "polls": during_polls, "after": after},
        PollCounts.merged(first_runs),
        PollCounts.merged(poll_runs),
        memory=(rss_idle, peak.peak, rss_after),
        seeded_sets=len(seeded),
        window_s=window,
        cpu_s=meter.cpu_s,
        limits=(max_calls, max_queued),
    )


def _answered_share(c: PollCounts) -> float:
    sent = c.calls + c.errors
    return 100.0 * c.calls / sent if sent else float("nan")


def _report(
    bench: Bench,
    steady: dict[str, PollCounts],
    first: PollCounts,
    polls: PollCounts,
    *,
    memory: tuple[int, int, int],
    seeded_sets: int,
    window_s: float,
    cpu_s: float,
    limits: tuple[int, int],
) -> None:
    sz = bench.sizes
    limit = sz.overload_subscriptions
    add = bench.report.add
    calm = steady["calm"]
    calm_p99 = calm.percentile_ms(99)
    baseline = f"steady poller alone ({STEADY_PER_S:g}/s)"
    for phase, label in (("first", "a first-poll flood"), ("polls", "a poll flood")):
        c = steady[phase]
        add(
            Figure(
                SCENARIO,
                f"steady poller p99 during {label}",
                c.percentile_ms(99),
                "ms",
                calm_p99,
                baseline,
                higher_is_better=False,
                note=f"p50 {c.percentile_ms(50):.1f} ms; {_answered_share(c):.1f}% answered, "
                f"errors {dict(sorted(c.error_codes.items())) or 'none'}",
                **target("overload_steady_p99", phase),
            )
        )
        add(
            Figure(
                SCENARIO,
                f"steady poller answered during {label}",
                _answered_share(c),
                "%",
                _answered_share(calm),
                baseline,
                note="the rest shed (RESOURCE_EXHAUSTED or CANCELLED)",
            )
        )
    # The first-poll flood: what each new job set got.
    refused = first.states.get(WireState.CONNECTION_ERR, 0)
    subscribed = first.calls - refused
    add(
        Figure(
            SCENARIO,
            f"job sets subscribed after {10 * limit:,} first polls of new job sets",
            float(subscribed + seeded_sets),
            "sets",
            max_value=float(limit),
            note=f"max_subscriptions={limit}; {refused:,} answered CONNECTION_ERR naming it, "
            f"{first.errors:,} call errors {dict(sorted(first.error_codes.items())) or ''}",
        )
    )
    add(
        Figure(
            SCENARIO,
            "first-poll flood answer p99",
            first.percentile_ms(99),
            "ms",
            calm_p99,
            baseline,
            higher_is_better=False,
            note=f"p50 {first.percentile_ms(50):.1f} ms; 64 callers per load process",
        )
    )
    # The poll flood: how much was shed, and that nothing waited into a timeout.
    shed = sum(polls.error_codes.get(code, 0) for code in SHED)
    add(
        Figure(
            SCENARIO,
            "poll flood: calls answered per second",
            polls.calls / window_s,
            "calls/s",
            note=f"{sz.load_processes} processes x {sz.overload_callers} callers, "
            f"max_concurrent_calls={limits[0]}, "
            f"max_queued_calls={limits[1]}; p99 of answered "
            f"{polls.percentile_ms(99):.0f} ms",
        )
    )
    add(
        Figure(
            SCENARIO,
            "poll flood: calls shed per second",
            shed / window_s,
            "calls/s",
            note=f"{100.0 * shed / max(1, polls.calls + polls.errors):.1f}% of the flood's calls; "
            f"by status {dict(sorted(polls.error_codes.items())) or 'none'}",
        )
    )
    timed_out = sum(c.error_codes.get(TIMED_OUT, 0) for c in (*steady.values(), first, polls))
    add(
        Figure(
            SCENARIO,
            "calls that timed out, all phases",
            float(timed_out),
            "calls",
            note=f"each call's deadline {DEFAULT_CALL_TIMEOUT_S:g} s (the client's default)",
            **target("overload_timeouts"),
        )
    )
    rss_idle, rss_peak, rss_after = memory
    add(
        Figure(
            SCENARIO,
            "service RSS peak through the floods",
            rss_peak / 2**20,
            "MiB",
            rss_idle / 2**20,
            "RSS before the floods",
            higher_is_better=False,
            note=f"{rss_after / 2**20:.0f} MiB after; server CPU {cpu_s:.1f} s over the phases",
        )
    )
    after = steady["after"]
    add(
        Figure(
            SCENARIO,
            "steady poller p99 after the floods",
            after.percentile_ms(99),
            "ms",
            calm_p99,
            baseline,
            higher_is_better=False,
            note=f"{_answered_share(after):.1f}% answered",
        )
    )
    errors: dict[str, Any] = {
        phase: c.error_codes for phase, c in steady.items() if phase in ("calm", "after")
    }
    if any(errors.values()) or calm.wrong or after.wrong:
        bench.report.errors.append(
            f"overload: the steady poller alone got errors {errors} or wrong answers "
            f"({calm.wrong}, {after.wrong})"
        )
