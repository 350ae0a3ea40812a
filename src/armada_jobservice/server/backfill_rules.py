"""The pure rules of backfill: when a stream has caught up, what Armada's answer means, how fast.

``backfill`` asks Armada's query API about jobs that the event stream did not
name. These are its decisions, with no I/O, so that tests can table them:

- ``caught_up``: Armada's watch stream has no "you have everything" marker
  (its server reads the stored events in batches of 500 and then waits for
  new ones). A stream counts as caught up once it has been open for
  ``quiet_s`` and no event arrived for ``quiet_s``: a backlog is delivered as
  fast as Armada can read it, so a quiet gap that long means it has been
  delivered. A stream that is never quiet (a busy job set) counts as caught
  up once open for ``BUSY_STREAM_S``. Deciding too early costs one query,
  never a wrong answer: the query API's answer is Armada's own, a terminal
  one is final, and later events still apply by the usual rules.
- ``event_for``: an ``api.JobState`` turned into the ``EventMessage`` that
  would have said it, so that the cache applies it by the usual rules
  (terminal states never move back).
- ``QueryBudget``: a token bucket that spaces query-API calls.
"""

from __future__ import annotations

from armada_client.armada import event_pb2, submit_pb2

_JobState = submit_pb2.JobState

#: A stream open this long counts as caught up even if events never stop:
#: longer than Armada takes to send a large backlog (it reads 500 at a time).
BUSY_STREAM_S = 60.0

#: States whose text comes from ``GetJobErrors``.
NEEDS_ERRORS = frozenset({submit_pb2.FAILED, submit_pb2.PREEMPTED, submit_pb2.REJECTED})

# Armada's states before the job runs all answer SUBMITTED, as their events
# do (queued, leased and pending events leave a job SUBMITTED).
_KIND_OF_STATE = {
    submit_pb2.QUEUED: "submitted",
    submit_pb2.SUBMITTED: "submitted",
    submit_pb2.LEASED: "submitted",
    submit_pb2.PENDING: "submitted",
    submit_pb2.RUNNING: "running",
    submit_pb2.SUCCEEDED: "succeeded",
    submit_pb2.FAILED: "failed",
    # A rejected job failed Armada's checks after submission; its events
    # would have been a JobFailedEvent (cause Rejected).
    submit_pb2.REJECTED: "failed",
    submit_pb2.PREEMPTED: "preempted",
    submit_pb2.CANCELLED: "cancelled",
}

_EVENT_CLASS = {
    "submitted": event_pb2.JobSubmittedEvent,
    "running": event_pb2.JobRunningEvent,
    "succeeded": event_pb2.JobSucceededEvent,
    "failed": event_pb2.JobFailedEvent,
    "preempted": event_pb2.JobPreemptedEvent,
    "cancelled": event_pb2.JobCancelledEvent,
}


def caught_up(opened_at: float | None, last_event: float, now: float, quiet_s: float) -> bool:
    """Whether a stream opened at *opened_at* (None: not open) has delivered its backlog."""
    if opened_at is None:
        return False
    return now - max(opened_at, last_event) >= quiet_s or now - opened_at >= BUSY_STREAM_S


def is_known(state: _JobState.ValueType) -> bool:
    """Whether Armada's answer says where the job is (UNKNOWN, or a newer state, does not)."""
    return state in _KIND_OF_STATE


def is_terminal(state: _JobState.ValueType) -> bool:
    """Whether the job has ended by Armada's answer."""
    return _KIND_OF_STATE.get(state) in ("succeeded", "failed", "preempted", "cancelled")


def event_for(
    job_id: str,
    state: _JobState.ValueType,
    error: str = "",
    cancel_reason: str = "",
    cancel_user: str = "",
) -> event_pb2.EventMessage | None:
    """The event that would have told the cache *state*; None for a state not known here."""
    kind = _KIND_OF_STATE.get(state)
    if kind is None:
        return None
    event = _EVENT_CLASS[kind](job_id=job_id)
    if kind == "failed":
        default = "job rejected by Armada" if state == submit_pb2.REJECTED else "job failed"
        event.reason = error or default
    elif kind == "preempted":
        event.reason = error
    elif kind == "cancelled":
        event.reason = cancel_reason
        event.requestor = cancel_user
    message = event_pb2.EventMessage()
    getattr(message, kind).CopyFrom(event)
    return message


class QueryBudget:
    """A token bucket: at most ``per_s`` calls a second, ``burst`` at once."""

    __slots__ = ("_at", "_tokens", "burst", "per_s")

    def __init__(self, per_s: float, now: float, burst: float = 1.0) -> None:
        self.per_s = per_s
        self.burst = burst
        self._tokens = burst
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_s)
            self._at = now

    def delay_s(self, now: float) -> float:
        """How long to wait before the next call may be made (0: now)."""
        self._refill(now)
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) / self.per_s

    def spend(self, now: float) -> None:
        """Record one call made at *now* (after ``delay_s`` said 0)."""
        self._refill(now)
        self._tokens -= 1.0
