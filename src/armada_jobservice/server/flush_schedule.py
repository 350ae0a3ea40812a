"""When the writer works: a pure schedule stepped with the clock, like ``_wait.Waiter``.

The writer wakes every ``tick_s`` and asks ``FlushSchedule.step`` what is due.
A flush runs every ``flush_interval_s``, and sooner once the streams are quiet
(no event for one tick) with changes waiting, though not within
``QUIET_MIN_GAP_S`` of the last flush: a burst of events is written in large
batches while it lasts and is durable soon after it ends, and a trickle of
events never becomes a transaction per event. With a flush come, each on its
own period, a full pass over every job set (expiry, activity times,
eviction), a database ping and a retention sweep. After a flush the database
refused, the next one waits ``RETRY_MIN_S``, doubling with each further
refusal up to ``RETRY_MAX_S``: a full disk or a database that is away is
tried a few times a minute, not ten times a second.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Longest gap between full passes over every job set.
HOUSEKEEPING_S = 1.0
#: The streams count as quiet when no event arrived for this long...
QUIET_S = 0.02
#: ...and then a flush runs early, if the last one is at least this old.
QUIET_MIN_GAP_S = 0.1
#: How often the database is asked whether it answers (feeds health).
PING_S = 5.0
#: Longest gap between retention sweeps.
SWEEP_S = 60.0
#: After a refused flush the next waits this long, doubling per refusal...
RETRY_MIN_S = 0.1
#: ...up to this.
RETRY_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class Due:
    """What the writer does now: always a flush, and whichever of the rest is due."""

    #: A full pass over every job set (expire idle subscriptions, refresh
    #: activity times, evict what the database holds) rather than only the changed ones.
    full: bool
    #: Ask the database whether it answers.
    ping: bool
    #: Delete the job sets idle beyond retention.
    sweep: bool


class FlushSchedule:
    """Decides, at each tick, whether to flush and what else is due."""

    def __init__(
        self,
        *,
        flush_interval_s: float,
        subscription_expiry_s: float,
        job_set_retention_s: float,
        now: float,
        events_seen: int = 0,
    ) -> None:
        self.flush_interval_s = flush_interval_s
        #: How often the writer should call ``step``.
        self.tick_s = min(flush_interval_s, QUIET_S)
        self.min_gap_s = min(flush_interval_s, QUIET_MIN_GAP_S)
        # Expiry is checked at least four times per expiry period.
        self.housekeeping_s = max(flush_interval_s, min(HOUSEKEEPING_S, subscription_expiry_s / 4))
        self.sweep_s = min(SWEEP_S, job_set_retention_s / 10)
        self._last_flush = now
        self._next_full = now
        self._next_ping = now
        self._next_sweep = now
        self._seen = events_seen
        #: No flush before this (set after a refused one).
        self._retry_at = now

    def flush_refused(self, now: float, in_a_row: int) -> float:
        """The flush at *now* was the *in_a_row*-th refused in a row: hold the next back.

        Returns the delay. The count is the writer's; once a flush is taken,
        nothing is held back and the next refusal counts from 1 again.
        """
        delay: float = min(RETRY_MAX_S, RETRY_MIN_S * 2.0 ** min(in_a_row - 1, 32))
        self._retry_at = now + delay
        return delay

    def step(self, now: float, events_seen: int, pending: bool) -> Due | None:
        """What is due at *now*, given the events seen so far and whether changes wait.

        Call it every ``tick_s``: quiet means no new event since the previous step.
        """
        quiet, self._seen = events_seen == self._seen, events_seen
        if now < self._retry_at:
            return None
        since = now - self._last_flush
        if since < self.flush_interval_s and not (quiet and pending and since >= self.min_gap_s):
            return None
        self._last_flush = now
        full = now >= self._next_full
        if full:
            self._next_full = now + self.housekeeping_s
        ping = now >= self._next_ping
        if ping:
            self._next_ping = now + PING_S
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + self.sweep_s
        return Due(full=full, ping=ping, sweep=sweep)
