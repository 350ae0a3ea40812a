"""Per-identity limits on opening new subscriptions: a count and a rate.

``max_subscriptions`` protects the service; these protect the callers from
each other, so that one caller cannot take all of it. Only the opening of a
new event stream is limited: a poll of a job set that is already subscribed
(by anyone) never is. The rate is a token bucket per identity that refills at
``per_minute / 60`` a second up to ``burst``. Time is passed in (``now``), so
tests step it instead of sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from armada_jobservice.server.cache import JobSet


@dataclass(slots=True)
class _Caller:
    tokens: float
    stamp: float
    #: The job sets this identity opened, with the stream task it opened; an
    #: entry counts while that task is still the job set's stream.
    opened: list[tuple[JobSet, object]] = field(default_factory=list)


class IdentityLimits:
    """The per-identity count and rate of new subscriptions; None turns either off."""

    def __init__(
        self,
        *,
        max_subscriptions: int | None,
        per_minute: float | None,
        burst: int | None = None,
    ) -> None:
        self.max_subscriptions = max_subscriptions
        self.per_minute = per_minute
        self.burst = float(burst if burst is not None else max(1, int(per_minute or 1)))
        self._rate_per_s = (per_minute or 0.0) / 60.0
        self._callers: dict[str, _Caller] = {}

    @property
    def enabled(self) -> bool:
        """Whether any limit is set."""
        return self.max_subscriptions is not None or self.per_minute is not None

    def _caller(self, identity: str, now: float) -> _Caller:
        caller = self._callers.get(identity)
        if caller is None:
            caller = self._callers[identity] = _Caller(self.burst, now)
        elif self.per_minute is not None:
            caller.tokens = min(self.burst, caller.tokens + (now - caller.stamp) * self._rate_per_s)
            caller.stamp = now
        return caller

    def open_count(self, identity: str) -> int:
        """How many subscriptions *identity* opened that are still open."""
        caller = self._callers.get(identity)
        if caller is None:
            return 0
        caller.opened = [(js, task) for js, task in caller.opened if js.stream is task]
        return len(caller.opened)

    def refusal(self, identity: str, now: float) -> tuple[str, str] | None:
        """Why *identity* may not open a subscription now: (kind, text), or None.

        ``kind`` is ``"count"`` or ``"rate"``; the text names the setting.
        """
        caller = self._caller(identity, now)
        if self.max_subscriptions is not None:
            count = self.open_count(identity)
            if count >= self.max_subscriptions:
                return (
                    "count",
                    f"{identity} has {count} subscriptions open, the most one caller may "
                    f"have (max_subscriptions_per_identity={self.max_subscriptions}); "
                    "poll job sets you are subscribed to, or wait for some to expire",
                )
        if self.per_minute is not None and caller.tokens < 1.0:
            return (
                "rate",
                f"{identity} opens new subscriptions faster than "
                f"new_subscriptions_per_identity_per_minute={self.per_minute:g} "
                f"(burst {self.burst:g}); retry in {self.retry_after_s(identity):.1f} s",
            )
        return None

    def retry_after_s(self, identity: str) -> float:
        """Seconds until *identity*'s bucket holds one token again (0 when it does)."""
        caller = self._callers.get(identity)
        if caller is None or self.per_minute is None or caller.tokens >= 1.0:
            return 0.0
        return (1.0 - caller.tokens) / self._rate_per_s

    def opened(self, identity: str, js: JobSet, now: float) -> None:
        """Charge *identity* for the subscription of *js* it just opened."""
        caller = self._caller(identity, now)
        if self.per_minute is not None:
            caller.tokens -= 1.0
        if self.max_subscriptions is not None:
            caller.opened.append((js, js.stream))

    def forget_idle(self, now: float) -> int:
        """Drop the state of identities with nothing open and a full bucket."""
        idle = [
            identity
            for identity in list(self._callers)
            if not self.open_count(identity) and self._caller(identity, now).tokens >= self.burst
        ]
        for identity in idle:
            del self._callers[identity]
        return len(idle)
