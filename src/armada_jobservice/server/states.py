"""Job states and the pure rules that turn Armada events into them.

``next_state`` is the whole event-to-state mapping; it does no I/O so that it
can be tested with tables. ``WireState`` and ``TERMINAL_STATES`` are defined
once, in ``armada_jobservice._wire``, and re-exported here for the service.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from armada_client.armada import event_pb2

from armada_jobservice._wire import WireState
from armada_jobservice.server.model import MAX_JOB_ID_BYTES


class Transition(NamedTuple):
    """The state (and error text) one event moves a job to."""

    job_id: str
    #: None for an event that makes the job known without changing its state.
    state: WireState | None
    error: str | None


# Events that say where a job is. Those not listed (queued, leased, pending,
# reprioritised, cancelling, utilisation, ingress info, preempting) leave the
# state as it was, as the original service did; they still make the job known.
#: Event kinds that move a job to a fixed state with no error text.
STATE_OF_KIND = {
    "submitted": WireState.SUBMITTED,
    "running": WireState.RUNNING,
    "succeeded": WireState.SUCCEEDED,
    # The run was given back and the job waits in the queue again.
    "lease_returned": WireState.SUBMITTED,
    "lease_expired": WireState.SUBMITTED,
}


#: The longest error text kept and answered (characters); Armada may send MBs.
MAX_ERROR_LENGTH = 16_384


def bounded(text: str) -> str:
    """*text* as it is kept: NUL (which PostgreSQL cannot store) replaced, cut to the limit."""
    text = text.replace("\0", "\ufffd")
    if len(text) > MAX_ERROR_LENGTH:
        text = f"{text[:MAX_ERROR_LENGTH]}... ({len(text) - MAX_ERROR_LENGTH} characters cut)"
    return text


def failure_text(event: Any) -> str:
    """Describe a ``JobFailedEvent``: its reason, cause and non-zero exit codes."""
    parts = [event.reason or "job failed"]
    details = []
    if event.cause:
        # A newer Armada may send a cause this client's enum does not name.
        cause = event_pb2.Cause.DESCRIPTOR.values_by_number.get(event.cause)
        details.append(f"cause: {cause.name if cause else event.cause}")
    codes = {name: code for name, code in event.exit_codes.items() if code != 0}
    for status in event.container_statuses:
        if status.exitCode != 0:
            codes.setdefault(status.name, status.exitCode)
    if codes:
        details.append(
            "exit codes: " + ", ".join(f"{name}={code}" for name, code in sorted(codes.items()))
        )
    if details:
        parts.append("(" + "; ".join(details) + ")")
    return " ".join(parts)


def cancellation_text(event: Any) -> str:
    """Describe a ``JobCancelledEvent``: its reason and who asked for it."""
    text = event.reason or "job cancelled"
    if event.requestor:
        text += f" (by {event.requestor})"
    return text


def preemption_text(event: Any) -> str:
    """Describe a ``JobPreemptedEvent`` as the failure it is for the job's owner."""
    text = "preempted"
    if event.reason:
        text += f": {event.reason}"
    extras = []
    if event.preempting_job_id:
        extras.append(f"by job {event.preempting_job_id}")
    if event.requestor:
        extras.append(f"requested by {event.requestor}")
    if extras:
        text += " (" + ", ".join(extras) + ")"
    return text


def map_event(message: Any) -> Transition | None:
    """What one ``EventMessage`` says about its job, or None when it names no job."""
    kind = message.WhichOneof("events")
    if kind is None:
        return None
    event = getattr(message, kind)
    job_id = getattr(event, "job_id", "")
    # No poll can name a job id with NUL or beyond the byte limit, and
    # PostgreSQL can store neither.
    if not job_id or "\0" in job_id:
        return None
    if len(job_id) > MAX_JOB_ID_BYTES // 4 and len(job_id.encode()) > MAX_JOB_ID_BYTES:
        return None
    simple = STATE_OF_KIND.get(kind)
    if simple is not None:
        return Transition(job_id, simple, None)
    if kind == "failed":
        return Transition(job_id, WireState.FAILED, bounded(failure_text(event)))
    if kind == "cancelled":
        return Transition(job_id, WireState.CANCELLED, bounded(cancellation_text(event)))
    if kind == "preempted":
        return Transition(job_id, WireState.FAILED, bounded(preemption_text(event)))
    return Transition(job_id, None, None)


def next_state(
    current: WireState | None, transition: Transition
) -> tuple[WireState, str | None] | None:
    """The state a job moves to, or None when the event leaves it as it was.

    A terminal state never moves back; an event about a job not seen before
    makes it at least SUBMITTED.
    """
    if current is not None and current.is_terminal:
        return None
    if transition.state is None:
        return (WireState.SUBMITTED, None) if current is None else None
    if current is transition.state and transition.error is None:
        return None
    return transition.state, transition.error
