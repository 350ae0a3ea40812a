"""The bench's workload: Armada's whole lifecycle in seeded, realistic proportions.

Each job's plan (outcome, lease returns, failure reason and exit code) is
drawn by the simulator's own ``plan_job`` from :data:`BENCH_MIX`, and a share
of jobs is still in flight when the polls begin, stopped in the queue, leased,
pending or running (:data:`IN_FLIGHT`). :func:`job_events` turns a plan into
the events Armada sends for it, in the order the simulator's engine emits
them, and :func:`expected_state` is what the service must answer once they
are in. Everything here is pure; ``simhost`` publishes the events.
The mix is documented in ``docs/benchmarks.md``; a test pins the proportions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from armada_jobservice._wire import WireState
from armada_jobservice.sim.events import CLUSTER_ID, failure_fields, run_fields
from armada_jobservice.sim.lifecycle import JobPhase, JobPlan, Mix, Outcome, plan_job

#: Outcomes of the jobs that finish: 78% succeed, 12% fail (a reason and an
#: exit code drawn from the simulator's samples), 6% are cancelled by a
#: requestor, 4% preempted; 8% of jobs have their first lease returned.
BENCH_MIX = Mix(fail_ratio=0.12, cancel_ratio=0.06, preempt_ratio=0.04, lease_return_ratio=0.08)

#: Share of jobs still in flight, by the phase they stopped in (20% in all).
IN_FLIGHT: tuple[tuple[JobPhase, float], ...] = (
    (JobPhase.QUEUED, 0.06),
    (JobPhase.LEASED, 0.03),
    (JobPhase.PENDING, 0.03),
    (JobPhase.RUNNING, 0.08),
)

#: Who cancels the cancelled jobs, and why.
CANCEL_REQUESTOR = "airflow-scheduler"

#: The state the service answers after each event kind; kinds not listed leave it.
_ANSWER_AFTER = {
    "submitted": WireState.SUBMITTED,
    "lease_returned": WireState.SUBMITTED,
    "running": WireState.RUNNING,
    "succeeded": WireState.SUCCEEDED,
    "failed": WireState.FAILED,
    "preempted": WireState.FAILED,
    "cancelled": WireState.CANCELLED,
}

#: One event of a job: its kind (the ``EventMessage`` member) and member fields.
Event = tuple[str, dict[str, Any]]


def draw_stop(rng: random.Random) -> JobPhase | None:
    """The phase a job stops in (None: it runs to its outcome), drawn from :data:`IN_FLIGHT`."""
    draw = rng.random()
    for phase, share in IN_FLIGHT:
        if draw < share:
            return phase
        draw -= share
    return None


def job_events(plan: JobPlan, job_id: str, stop: JobPhase | None = None) -> list[Event]:
    """The events Armada sends for one job following *plan*, cut after phase *stop*.

    The order is the simulator engine's: submitted, queued, then per lease
    returned leased, lease_returned and queued again, then leased, pending,
    running and the outcome (a cancellation is cancelling then cancelled).
    """
    out: list[Event] = [("submitted", {}), ("queued", {})]
    attempt = 0
    for _ in range(plan.lease_returns):
        attempt += 1
        out.append(("leased", run_fields("leased", job_id, attempt)))
        out.append(
            (
                "lease_returned",
                {
                    "cluster_id": CLUSTER_ID,
                    "reason": "pod could not be scheduled on the leased node",
                    "run_attempted": False,
                    "kubernetes_id": f"armada-{job_id}-{attempt}",
                },
            )
        )
        out.append(("queued", {}))
    if stop is JobPhase.QUEUED:
        return out
    attempt += 1
    for kind in ("leased", "pending", "running"):
        out.append((kind, run_fields(kind, job_id, attempt)))
        if stop is JobPhase(kind):
            return out
    out.extend(_outcome(plan, job_id, attempt))
    return out


def _outcome(plan: JobPlan, job_id: str, attempt: int) -> list[Event]:
    if plan.outcome is Outcome.SUCCEEDED:
        return [("succeeded", run_fields("succeeded", job_id, attempt))]
    if plan.outcome is Outcome.FAILED:
        fields = failure_fields(plan.failure_reason, plan.exit_code, plan.failure_cause)
        fields["pod_name"] = f"armada-{job_id}-{attempt}"
        return [("failed", fields)]
    if plan.outcome is Outcome.PREEMPTED:
        return [("preempted", {"cluster_id": CLUSTER_ID, "reason": plan.preemption_reason})]
    who = {"requestor": CANCEL_REQUESTOR, "reason": "task cleared by its DAG's owner"}
    return [("cancelling", dict(who)), ("cancelled", dict(who))]


def expected_state(events: Sequence[Event]) -> WireState:
    """What the service answers for a job once all of *events* are in."""
    state = WireState.SUBMITTED
    for kind, _ in events:
        after = _ANSWER_AFTER.get(kind)
        if after is not None and not state.is_terminal:
            state = after
    return state


def draw_job(job_id: str, rng: random.Random) -> list[Event]:
    """One job's events: its plan drawn from :data:`BENCH_MIX`, its stop from :data:`IN_FLIGHT`."""
    plan = plan_job({}, BENCH_MIX, rng)
    return job_events(plan, job_id, draw_stop(rng))


def interleave(per_job: Sequence[Sequence[Event]]) -> list[tuple[int, Event]]:
    """(job index, event) in the order a job set's stream carries them.

    Step by step over the jobs (every job's first event, then every job's
    second...), so a stream interleaves its jobs as Armada's does when a job
    set is submitted at once.
    """
    out: list[tuple[int, Event]] = []
    longest = max((len(e) for e in per_job), default=0)
    for step in range(longest):
        for index, events in enumerate(per_job):
            if step < len(events):
                out.append((index, events[step]))
    return out
