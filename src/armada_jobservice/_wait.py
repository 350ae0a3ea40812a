"""The rules of ``wait_for_job``, as a clock-free state machine both clients drive.

The clients poll, hand each answer (or transport error) to ``Waiter`` with the
current monotonic time, and sleep for the delay it returns; ``Waiter`` raises
when a timeout has run out. Keeping the rules free of I/O lets the tests state
them as tables of (time, observation) steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from armada_jobservice._exceptions import (
    ConnectionErrorTimeout,
    JobNotFoundTimeout,
    TransportError,
    WaitTimeout,
)
from armada_jobservice._types import JobState, JobStatus

# The one definition of the wait defaults: the clients, the CLI's ``wait``
# flags and the Airflow operator and trigger all import these.
DEFAULT_POLL_INTERVAL_S = 5.0
"""Seconds between two polls of a job that has not ended, unless told otherwise."""
DEFAULT_NOT_FOUND_TIMEOUT_S = 600.0
"""Seconds of unbroken ``JOB_ID_NOT_FOUND`` before a wait gives up, unless told otherwise."""
DEFAULT_CONNECTION_ERROR_TIMEOUT_S = 600.0
"""Seconds of ``CONNECTION_ERR`` or no service before a wait gives up, unless told otherwise."""


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How ``wait_for_job`` polls and when it gives up."""

    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    """Seconds between two polls of a job that has not ended."""
    not_found_timeout_s: float = DEFAULT_NOT_FOUND_TIMEOUT_S
    """Give up once the job has read ``JOB_ID_NOT_FOUND`` for this long without a break."""
    connection_error_timeout_s: float = DEFAULT_CONNECTION_ERROR_TIMEOUT_S
    """Give up once ``CONNECTION_ERR`` (or an unreachable service) has lasted this long."""
    timeout_s: float | None = None
    """Give up once the whole wait has lasted this long; ``None`` waits without a limit."""

    def __post_init__(self) -> None:
        for name in ("poll_interval_s", "not_found_timeout_s", "connection_error_timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.timeout_s is not None and self.timeout_s < 0:
            raise ValueError("timeout_s must not be negative")


class Waiter:
    """Decide, after each non-terminal poll, how long to sleep or which timeout to raise."""

    def __init__(self, policy: WaitPolicy, job: str, started_at: float) -> None:
        self.policy = policy
        self.job = job
        self.started_at = started_at
        self.last_status: JobStatus | None = None
        # Each "since" clock starts at the first poll of an unbroken run of that
        # condition, not at the start of the wait: a job that was found and
        # then lost again gets the full timeout anew.
        self.not_found_since: float | None = None
        self.trouble_since: float | None = None

    def on_status(self, status: JobStatus, now: float) -> float:
        """Record a non-terminal *status* seen at *now*; return the delay before the next poll."""
        if status.state.is_terminal:
            raise ValueError("a terminal status ends the wait; it is not to be recorded")
        self.last_status = status
        if status.state is JobState.JOB_ID_NOT_FOUND:
            self.not_found_since = self.not_found_since if self.not_found_since is not None else now
        else:
            self.not_found_since = None
        if status.state is JobState.CONNECTION_ERR:
            self.trouble_since = self.trouble_since if self.trouble_since is not None else now
        else:
            self.trouble_since = None
        return self._next_delay(now, cause=None)

    def on_error(self, exc: TransportError, now: float) -> float:
        """Record that a poll at *now* failed in a transient way; return the next delay."""
        self.trouble_since = self.trouble_since if self.trouble_since is not None else now
        return self._next_delay(now, cause=exc)

    def check(self, now: float) -> float:
        """Raise the timeout that has run out at *now*, if any; return the delay before a poll."""
        return self._next_delay(now, cause=None)

    def deadline_in(self, now: float) -> float | None:
        """Seconds until the nearest timeout of this wait, None when none runs; raises once passed.

        What a watching wait sleeps at most before it looks again: it has no
        polls to space out, only deadlines to notice on time.
        """
        limits = self._limits(now, cause=None)
        return min(limits) if limits else None

    def _next_delay(self, now: float, cause: TransportError | None) -> float:
        # Sleep no further than the nearest deadline, so a timeout is noticed
        # on time rather than one whole interval late.
        return min([self.policy.poll_interval_s, *self._limits(now, cause)])

    def _limits(self, now: float, cause: TransportError | None) -> list[float]:
        policy = self.policy
        limits: list[float] = []
        if self.not_found_since is not None:
            left = self.not_found_since + policy.not_found_timeout_s - now
            if left <= 0:
                raise JobNotFoundTimeout(
                    f"job {self.job} was not found for {policy.not_found_timeout_s:g} s",
                    last_status=self.last_status,
                )
            limits.append(left)
        if self.trouble_since is not None:
            left = self.trouble_since + policy.connection_error_timeout_s - now
            if left <= 0:
                reason = str(cause) if cause is not None else self._last_error()
                raise ConnectionErrorTimeout(
                    f"job {self.job}: no connection for {policy.connection_error_timeout_s:g} s"
                    + (f" ({reason})" if reason else ""),
                    last_status=self.last_status,
                ) from cause
            limits.append(left)
        if policy.timeout_s is not None:
            left = self.started_at + policy.timeout_s - now
            if left <= 0:
                state = self.last_status.state if self.last_status else "no answer"
                raise WaitTimeout(
                    f"job {self.job} did not end within {policy.timeout_s:g} s (last: {state})",
                    last_status=self.last_status,
                ) from cause
            limits.append(left)
        return limits

    def _last_error(self) -> str:
        if self.last_status is not None and self.last_status.error:
            return self.last_status.error
        return ""


class JobsWaiter:
    """The rules of waiting for several jobs of one job set: one ``Waiter`` per unfinished job.

    Both clients feed it what they learn (watch updates, poll answers,
    transport errors) with the time; it keeps each job's terminal status and
    raises the first timeout that runs out.
    """

    def __init__(
        self,
        policy: WaitPolicy,
        queue: str,
        job_set_id: str,
        job_ids: Iterable[str],
        started_at: float,
    ) -> None:
        self.policy = policy
        self.waiters = {
            job_id: Waiter(policy, f"{queue}/{job_set_id}/{job_id}", started_at)
            for job_id in job_ids
        }
        self.order = list(self.waiters)
        self.done: dict[str, JobStatus] = {}

    @property
    def finished(self) -> bool:
        """Whether every job has reached a terminal state."""
        return not self.waiters

    @property
    def remaining(self) -> list[str]:
        """The jobs not yet ended, in the order given."""
        return [job_id for job_id in self.order if job_id in self.waiters]

    def results(self) -> dict[str, JobStatus]:
        """Each job's terminal status, in the order given."""
        return {job_id: self.done[job_id] for job_id in self.order if job_id in self.done}

    def on_status(self, job_id: str, status: JobStatus, now: float) -> float:
        """Record *status* of *job_id* at *now*; return the delay before the next poll."""
        waiter = self.waiters.get(job_id)
        if waiter is not None:
            if status.state.is_terminal:
                self.done[job_id] = status
                del self.waiters[job_id]
            else:
                waiter.on_status(status, now)
        return self.check(now)

    def on_error(self, exc: TransportError, now: float) -> float:
        """Record a transient failure to learn anything at *now*; return the next delay."""
        delays = [w.on_error(exc, now) for w in self.waiters.values()]
        return min(delays, default=self.policy.poll_interval_s)

    def check(self, now: float) -> float:
        """Raise the timeout that has run out, if any; return the delay before the next poll."""
        return min(
            (w.check(now) for w in self.waiters.values()),
            default=self.policy.poll_interval_s,
        )

    def deadline_in(self, now: float) -> float | None:
        """Seconds until the nearest timeout, None when none runs; raises once one passed."""
        limits = [d for w in self.waiters.values() if (d := w.deadline_in(now)) is not None]
        return min(limits) if limits else None
