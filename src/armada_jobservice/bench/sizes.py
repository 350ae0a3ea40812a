"""How big and how long each scenario is; ``full``, ``quick`` and ``smoke`` differ only here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sizes:
    """The sizes of one run of every scenario."""

    load_processes: int
    concurrency: int
    poll_sets: int
    poll_jobs_per_set: int
    poll_s: float
    first_poll_sets: int
    ingest_one_jobs: int
    ingest_many_sets: int
    ingest_many_jobs_per_set: int
    scale_sets: int
    scale_trickle_per_s: float
    restart_jobs: int
    restart_sets: int
    #: Scenario 7: job sets and jobs polled through the fleet, and events timed.
    fleet_sets: int
    fleet_jobs_per_set: int
    fleet_samples: int
    fleet_trickle_per_s: float
    #: Scenario 9: ``max_subscriptions`` (ten times as many new job sets flood
    #: it), ``max_concurrent_calls``, ``max_queued_calls`` (None: the service's
    #: default), and the callers of each flooding process.
    overload_subscriptions: int
    overload_max_calls: int | None
    overload_max_queued: int | None
    overload_callers: int
    #: Scenarios 1 and 3 alternate baseline and service this many times and
    #: report medians, so that a noisy moment on a shared machine hits both alike.
    rounds: int = 3


SIZES = {
    "full": Sizes(
        load_processes=2,
        concurrency=32,
        poll_sets=200,
        poll_jobs_per_set=100,
        poll_s=6.0,
        first_poll_sets=2_000,
        # About 5.8 events a job (the bench mix): ~116,000 and ~87,000 events.
        ingest_one_jobs=20_000,
        ingest_many_sets=1_000,
        ingest_many_jobs_per_set=15,
        scale_sets=10_000,
        scale_trickle_per_s=2_000,
        restart_jobs=1_000_000,
        restart_sets=100,
        fleet_sets=100,
        fleet_jobs_per_set=50,
        fleet_samples=200,
        fleet_trickle_per_s=1_000,
        overload_subscriptions=1_000,
        overload_max_calls=None,
        overload_max_queued=None,
        overload_callers=8192,
    ),
    "quick": Sizes(
        load_processes=2,
        concurrency=32,
        poll_sets=100,
        poll_jobs_per_set=50,
        poll_s=2.0,
        first_poll_sets=300,
        ingest_one_jobs=3_000,
        ingest_many_sets=500,
        ingest_many_jobs_per_set=4,
        scale_sets=2_000,
        scale_trickle_per_s=1_000,
        restart_jobs=200_000,
        restart_sets=100,
        fleet_sets=50,
        fleet_jobs_per_set=20,
        fleet_samples=60,
        fleet_trickle_per_s=500,
        overload_subscriptions=500,
        overload_max_calls=None,
        overload_max_queued=None,
        overload_callers=8192,
        rounds=2,
    ),
    # For the smoke test: every figure through the same code, in seconds.
    "smoke": Sizes(
        load_processes=2,
        concurrency=4,
        poll_sets=4,
        poll_jobs_per_set=10,
        poll_s=0.5,
        first_poll_sets=20,
        ingest_one_jobs=200,
        ingest_many_sets=20,
        ingest_many_jobs_per_set=5,
        scale_sets=50,
        scale_trickle_per_s=200,
        restart_jobs=2_000,
        restart_sets=4,
        fleet_sets=4,
        fleet_jobs_per_set=5,
        fleet_samples=6,
        fleet_trickle_per_s=100,
        overload_subscriptions=20,
        overload_max_calls=32,
        overload_max_queued=16,
        overload_callers=64,
        rounds=1,
    ),
}
