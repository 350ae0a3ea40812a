"""The bench's workload: Armada's whole lifecycle in the seeded proportions, and its answers."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from armada_jobservice._wire import WireState
from armada_jobservice.bench.workload import (
    BENCH_MIX,
    IN_FLIGHT,
    draw_job,
    expected_state,
    interleave,
    job_events,
)
from armada_jobservice.sim.lifecycle import JobPhase, JobPlan, Outcome

KINDS = ("submitted", "queued", "leased", "pending", "running")


@pytest.mark.parametrize(
    ("plan", "stop", "kinds", "want"),
    [
        (JobPlan(), None, (*KINDS, "succeeded"), WireState.SUCCEEDED),
        (JobPlan(outcome=Outcome.FAILED), None, (*KINDS, "failed"), WireState.FAILED),
        (JobPlan(outcome=Outcome.PREEMPTED), None, (*KINDS, "preempted"), WireState.FAILED),
        (
            JobPlan(outcome=Outcome.CANCELLED),
            None,
            (*KINDS, "cancelling", "cancelled"),
            WireState.CANCELLED,
        ),
        (
            JobPlan(lease_returns=1),
            None,
            ("submitted", "queued", "leased", "lease_returned", "queued", *KINDS[2:], "succeeded"),
            WireState.SUCCEEDED,
        ),
        (JobPlan(), JobPhase.QUEUED, ("submitted", "queued"), WireState.SUBMITTED),
        (
            JobPlan(lease_returns=1),
            JobPhase.QUEUED,
            ("submitted", "queued", "leased", "lease_returned", "queued"),
            WireState.SUBMITTED,
        ),
        (JobPlan(), JobPhase.LEASED, KINDS[:3], WireState.SUBMITTED),
        (JobPlan(), JobPhase.PENDING, KINDS[:4], WireState.SUBMITTED),
        (JobPlan(outcome=Outcome.FAILED), JobPhase.RUNNING, KINDS, WireState.RUNNING),
    ],
)
def test_a_plan_becomes_armadas_events_and_the_services_answer(
    plan: JobPlan, stop: JobPhase | None, kinds: tuple[str, ...], want: WireState
) -> None:
    """Events follow the simulator engine's order; the answer is the state they lead to."""
    events = job_events(plan, "job-1", stop)
    assert tuple(kind for kind, _ in events) == kinds
    assert expected_state(events) is want


def test_failures_carry_reasons_and_exit_codes_and_cancellations_a_requestor() -> None:
    """What the polls' error texts are made of is in the events."""
    (failed,) = [f for k, f in job_events(JobPlan(outcome=Outcome.FAILED), "j") if k == "failed"]
    assert failed["reason"]
    assert failed["exit_codes"]
    cancelled = job_events(JobPlan(outcome=Outcome.CANCELLED), "j")[-1]
    assert cancelled[0] == "cancelled"
    assert cancelled[1]["requestor"]


def test_the_seeded_mix_has_every_state_in_its_proportions() -> None:
    """Over many jobs the answers come in the documented shares (docs/benchmarks.md)."""
    rng = random.Random(7)
    n = 20_000
    jobs = [draw_job(f"job-{i}", rng) for i in range(n)]
    answers = Counter(expected_state(events) for events in jobs)
    in_flight = sum(share for _, share in IN_FLIGHT)
    done = 1 - in_flight
    expected = {
        WireState.SUCCEEDED: done * (1 - BENCH_MIX.fail_ratio - BENCH_MIX.cancel_ratio - 0.04),
        WireState.FAILED: done * (BENCH_MIX.fail_ratio + BENCH_MIX.preempt_ratio),
        WireState.CANCELLED: done * BENCH_MIX.cancel_ratio,
        WireState.RUNNING: dict(IN_FLIGHT)[JobPhase.RUNNING],
        WireState.SUBMITTED: in_flight - dict(IN_FLIGHT)[JobPhase.RUNNING],
    }
    for state, share in expected.items():
        assert answers[state] / n == pytest.approx(share, abs=0.012), state
    returned = sum(1 for events in jobs if any(k == "lease_returned" for k, _ in events))
    assert returned / n == pytest.approx(BENCH_MIX.lease_return_ratio, abs=0.01)


def test_the_same_seed_draws_the_same_jobs() -> None:
    """Every run of the bench sends the same workload."""
    first = [draw_job(f"j{i}", random.Random(3)) for i in range(50)]
    again = [draw_job(f"j{i}", random.Random(3)) for i in range(50)]
    assert first == again


def test_interleave_steps_over_jobs_and_keeps_each_jobs_order() -> None:
    """A job set's stream takes every job's first event, then every second one, ..."""
    a = [("submitted", {}), ("queued", {}), ("leased", {})]
    b = [("submitted", {}), ("queued", {})]
    order = [(i, kind) for i, (kind, _) in interleave([a, b])]
    assert order == [
        (0, "submitted"),
        (1, "submitted"),
        (0, "queued"),
        (1, "queued"),
        (0, "leased"),
    ]
