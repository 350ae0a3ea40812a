"""What happens to a simulated job: its states, its plan, and the seeded mix.

A job's plan (outcome and durations) is decided once, at submission, from its
annotations; whatever an annotation leaves open is drawn from the simulator's
``Mix`` with a seeded ``random.Random``. Everything here is pure: the engine
turns a plan into timed events.

Annotation keys (all optional, values are strings as Kubernetes requires):

=================================  ==========================================
``armada-sim/outcome``             succeeded, failed, cancelled or preempted
``armada-sim/queue-seconds``       time queued before the lease
``armada-sim/pending-seconds``     time from lease to running
``armada-sim/run-seconds``         time running before the outcome
``armada-sim/lease-returns``       leases returned (job re-queued) first
``armada-sim/failure-reason``      ``JobFailedEvent.reason``
``armada-sim/exit-code``           the container's exit code on failure
``armada-sim/failure-cause``       Error, Evicted, OOM, DeadlineExceeded,
                                   Rejected
``armada-sim/preemption-reason``   ``JobPreemptedEvent.reason``
``armada-sim/cancel-reason``       reason of a cancellation by outcome
``armada-sim/hold-at``             stop in this state (queued, leased,
                                   pending, running) until released
``armada-sim/unacknowledged``      ``true``: accepted, but no event and an
                                   UNKNOWN query state until released
=================================  ==========================================
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from armada_client.armada import event_pb2, submit_pb2

ANNOTATION_PREFIX = "armada-sim/"
OUTCOME = "armada-sim/outcome"
QUEUE_SECONDS = "armada-sim/queue-seconds"
PENDING_SECONDS = "armada-sim/pending-seconds"
RUN_SECONDS = "armada-sim/run-seconds"
LEASE_RETURNS = "armada-sim/lease-returns"
FAILURE_REASON = "armada-sim/failure-reason"
EXIT_CODE = "armada-sim/exit-code"
FAILURE_CAUSE = "armada-sim/failure-cause"
PREEMPTION_REASON = "armada-sim/preemption-reason"
CANCEL_REASON = "armada-sim/cancel-reason"
HOLD_AT = "armada-sim/hold-at"
UNACKNOWLEDGED = "armada-sim/unacknowledged"

KNOWN_ANNOTATIONS = frozenset(
    {
        OUTCOME,
        QUEUE_SECONDS,
        PENDING_SECONDS,
        RUN_SECONDS,
        LEASE_RETURNS,
        FAILURE_REASON,
        EXIT_CODE,
        FAILURE_CAUSE,
        PREEMPTION_REASON,
        CANCEL_REASON,
        HOLD_AT,
        UNACKNOWLEDGED,
    }
)


class PlanError(ValueError):
    """An ``armada-sim/*`` annotation has a value the simulator cannot use."""


class JobPhase(enum.StrEnum):
    """The phase of a simulated job, named after the Armada event that set it.

    Not called ``JobState``: that name is the public ``armada_jobservice.JobState``,
    the job service's answer, which has other members and other meanings.
    """

    SUBMITTED = "submitted"
    QUEUED = "queued"
    LEASED = "leased"
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"

    @property
    def terminal(self) -> bool:
        """Whether no further lifecycle event follows this state."""
        return self in _TERMINAL

    def to_api(self) -> submit_pb2.JobState.ValueType:
        """The ``api.JobState`` value the query API reports for this state."""
        return _TO_API[self]


_TERMINAL = frozenset({JobPhase.SUCCEEDED, JobPhase.FAILED, JobPhase.CANCELLED, JobPhase.PREEMPTED})
_TO_API = {
    JobPhase.SUBMITTED: submit_pb2.SUBMITTED,
    JobPhase.QUEUED: submit_pb2.QUEUED,
    JobPhase.LEASED: submit_pb2.LEASED,
    JobPhase.PENDING: submit_pb2.PENDING,
    JobPhase.RUNNING: submit_pb2.RUNNING,
    JobPhase.SUCCEEDED: submit_pb2.SUCCEEDED,
    JobPhase.FAILED: submit_pb2.FAILED,
    JobPhase.CANCELLED: submit_pb2.CANCELLED,
    JobPhase.PREEMPTED: submit_pb2.PREEMPTED,
}

# Events that move a job; the others (cancelling, utilisation, ...) leave it.
_EVENT_STATE = {
    "submitted": JobPhase.SUBMITTED,
    "queued": JobPhase.QUEUED,
    "lease_returned": JobPhase.QUEUED,
    "lease_expired": JobPhase.QUEUED,
    "leased": JobPhase.LEASED,
    "pending": JobPhase.PENDING,
    "running": JobPhase.RUNNING,
    "succeeded": JobPhase.SUCCEEDED,
    "failed": JobPhase.FAILED,
    "cancelled": JobPhase.CANCELLED,
    "preempted": JobPhase.PREEMPTED,
}


def state_after(current: JobPhase | None, event_kind: str) -> JobPhase | None:
    """Return the job's state after an event of ``event_kind`` (a oneof name).

    A terminal state is final: later events do not move it, as in Armada's
    lookout, so a stray ``running`` after ``succeeded`` changes nothing.
    """
    if current is not None and current.terminal:
        return current
    return _EVENT_STATE.get(event_kind, current)


class Outcome(enum.StrEnum):
    """How a simulated job ends when nobody intervenes."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"


_CAUSES = {name.lower(): event_pb2.Cause.Value(name) for name, _ in event_pb2.Cause.items()}

# Failures drawn by the random mix: (reason, exit code, cause).
FAILURE_SAMPLES: tuple[tuple[str, int, str], ...] = (
    ("Error: container 'main' exited with code 1", 1, "Error"),
    ("OOMKilled: container 'main' exceeded its memory limit", 137, "OOM"),
    ("DeadlineExceeded: job ran longer than activeDeadlineSeconds", 143, "DeadlineExceeded"),
    ("Evicted: the node was low on ephemeral-storage", 0, "Evicted"),
    ("Error: container 'main' exited with code 2 (misuse of shell builtins)", 2, "Error"),
)

HOLDABLE = (JobPhase.QUEUED, JobPhase.LEASED, JobPhase.PENDING, JobPhase.RUNNING)


@dataclass(frozen=True, slots=True)
class Mix:
    """The seeded random mix that decides what annotations leave open.

    Ratios are probabilities in [0, 1]; the outcome ratios must sum to at most
    1, the rest succeeds. Durations are ``(low, high)`` ranges in simulated
    seconds, drawn uniformly.
    """

    fail_ratio: float = 0.0
    """Share of jobs that fail with a reason drawn from ``FAILURE_SAMPLES``."""
    cancel_ratio: float = 0.0
    """Share of jobs cancelled (by the simulator) while running."""
    preempt_ratio: float = 0.0
    """Share of jobs preempted while running."""
    lease_return_ratio: float = 0.0
    """Share of jobs whose first lease is returned and that queue again."""
    queue_s: tuple[float, float] = (0.1, 0.5)
    """Time from queued to leased."""
    pending_s: tuple[float, float] = (0.1, 0.5)
    """Time from leased to running (pending is emitted half way)."""
    run_s: tuple[float, float] = (0.5, 2.0)
    """Time from running to the outcome."""

    def __post_init__(self) -> None:
        """Reject ratios and ranges that cannot be drawn from."""
        ratios = (self.fail_ratio, self.cancel_ratio, self.preempt_ratio, self.lease_return_ratio)
        if any(not 0.0 <= r <= 1.0 for r in ratios):
            raise ValueError("mix ratios must lie in [0, 1]")
        if self.fail_ratio + self.cancel_ratio + self.preempt_ratio > 1.0 + 1e-9:
            raise ValueError("fail, cancel and preempt ratios must sum to at most 1")
        for name in ("queue_s", "pending_s", "run_s"):
            low, high = getattr(self, name)
            if low < 0 or high < low:
                raise ValueError(f"{name} must be a range (low, high) with 0 <= low <= high")


@dataclass(frozen=True, slots=True)
class JobPlan:
    """What will happen to one job: its outcome, durations and details."""

    outcome: Outcome = Outcome.SUCCEEDED
    queue_s: float = 0.0
    pending_s: float = 0.0
    run_s: float = 0.0
    lease_returns: int = 0
    failure_reason: str = "Error: container 'main' exited with code 1"
    exit_code: int = 1
    failure_cause: str = "Error"
    preemption_reason: str = "preempted by a job of a higher priority class"
    cancel_reason: str = "cancelled by the simulator's mix"
    hold_at: JobPhase | None = field(default=None)
    unacknowledged: bool = False
    """Accepted by SubmitJobs but not yet seen by Armada's event and query APIs."""


def _seconds(
    annotations: Mapping[str, str], key: str, low_high: tuple[float, float], rng: random.Random
) -> float:
    drawn = rng.uniform(*low_high)
    raw = annotations.get(key)
    if raw is None:
        return drawn
    try:
        value = float(raw)
    except ValueError:
        raise PlanError(f"annotation {key}={raw!r} is not a number of seconds") from None
    if value < 0 or value != value:
        raise PlanError(f"annotation {key}={raw!r} must be a non-negative number")
    return value


def _integer(annotations: Mapping[str, str], key: str) -> int | None:
    raw = annotations.get(key)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise PlanError(f"annotation {key}={raw!r} is not an integer") from None


def plan_job(annotations: Mapping[str, str], mix: Mix, rng: random.Random) -> JobPlan:
    """Decide a job's plan from its annotations, drawing the rest from ``mix``.

    The rng is consumed the same way whatever the annotations say, so one
    job's annotations do not change what the mix draws for the next job.
    """
    unknown = sorted(
        k for k in annotations if k.startswith(ANNOTATION_PREFIX) and k not in KNOWN_ANNOTATIONS
    )
    if unknown:
        raise PlanError(f"unknown simulator annotation(s): {', '.join(unknown)}")

    draw_outcome = rng.random()
    draw_lease_return = rng.random()
    sample = FAILURE_SAMPLES[rng.randrange(len(FAILURE_SAMPLES))]
    if FAILURE_REASON in annotations:
        # A scripted reason should not come with a random sample's exit code.
        sample = (annotations[FAILURE_REASON], 1, "Error")
    queue_s = _seconds(annotations, QUEUE_SECONDS, mix.queue_s, rng)
    pending_s = _seconds(annotations, PENDING_SECONDS, mix.pending_s, rng)
    run_s = _seconds(annotations, RUN_SECONDS, mix.run_s, rng)

    raw_outcome = annotations.get(OUTCOME)
    if raw_outcome is not None:
        try:
            outcome = Outcome(raw_outcome.strip().lower())
        except ValueError:
            choices = ", ".join(o.value for o in Outcome)
            message = f"annotation {OUTCOME}={raw_outcome!r} is not one of {choices}"
            raise PlanError(message) from None
    elif draw_outcome < mix.fail_ratio:
        outcome = Outcome.FAILED
    elif draw_outcome < mix.fail_ratio + mix.cancel_ratio:
        outcome = Outcome.CANCELLED
    elif draw_outcome < mix.fail_ratio + mix.cancel_ratio + mix.preempt_ratio:
        outcome = Outcome.PREEMPTED
    else:
        outcome = Outcome.SUCCEEDED

    lease_returns = _integer(annotations, LEASE_RETURNS)
    if lease_returns is None:
        lease_returns = 1 if draw_lease_return < mix.lease_return_ratio else 0
    if lease_returns < 0:
        raise PlanError(f"annotation {LEASE_RETURNS} must not be negative")

    cause = annotations.get(FAILURE_CAUSE, sample[2])
    if cause.lower() not in _CAUSES:
        choices = ", ".join(name for name, _ in event_pb2.Cause.items())
        raise PlanError(f"annotation {FAILURE_CAUSE}={cause!r} is not one of {choices}")
    exit_code = _integer(annotations, EXIT_CODE)

    raw_hold = annotations.get(HOLD_AT)
    hold_at: JobPhase | None = None
    if raw_hold is not None:
        try:
            hold_at = JobPhase(raw_hold.strip().lower())
        except ValueError:
            hold_at = None
        if hold_at not in HOLDABLE:
            choices = ", ".join(s.value for s in HOLDABLE)
            raise PlanError(f"annotation {HOLD_AT}={raw_hold!r} is not one of {choices}")

    raw_unacknowledged = annotations.get(UNACKNOWLEDGED, "false").strip().lower()
    if raw_unacknowledged not in ("true", "false"):
        raise PlanError(f"annotation {UNACKNOWLEDGED}={raw_unacknowledged!r} is not true or false")

    defaults = JobPlan()
    return JobPlan(
        outcome=outcome,
        queue_s=queue_s,
        pending_s=pending_s,
        run_s=run_s,
        lease_returns=lease_returns,
        failure_reason=sample[0],
        exit_code=sample[1] if exit_code is None else exit_code,
        failure_cause=cause,
        preemption_reason=annotations.get(PREEMPTION_REASON, defaults.preemption_reason),
        cancel_reason=annotations.get(CANCEL_REASON, defaults.cancel_reason),
        hold_at=hold_at,
        unacknowledged=raw_unacknowledged == "true",
    )


def cause_value(name: str) -> event_pb2.Cause.ValueType:
    """Return the ``api.Cause`` enum value for a cause name (case-insensitive)."""
    return _CAUSES[name.lower()]
