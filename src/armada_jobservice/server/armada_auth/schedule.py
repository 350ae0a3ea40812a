"""When to fetch the next Armada token: a clock-free schedule stepped with ``now``.

``Refresher`` reports each fetched token and each failure, and asks
``step(now)`` how long to wait before the next fetch (0: now). Keeping the
rules free of I/O lets tests state them as tables of (time, event) rows.

- A token is replaced before it expires: when a fifth of its lifetime, and
  at least ``min_early_s``, is left (but never in the first half of its life,
  so short-lived tokens do not make a busy loop).
- A token of unknown lifetime is replaced after ``unknown_lifetime_s``.
- A failed fetch is retried with exponential backoff up to ``retry_cap_s``;
  the last good token stays in use until it expires.
- Armada refusing the token (UNAUTHENTICATED) makes a fetch due at once, but
  no sooner than ``min_interval_s`` after the last fetch: a thousand streams
  refused together cause one fetch, and a token Armada keeps refusing does
  not run a command in a tight loop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    """The numbers of the schedule; seconds throughout."""

    early_fraction: float = 0.2
    min_early_s: float = 10.0
    unknown_lifetime_s: float = 300.0
    retry_base_s: float = 1.0
    retry_cap_s: float = 60.0
    min_interval_s: float = 1.0


class RefreshSchedule:
    """The refresh rules as a state machine over monotonic time."""

    def __init__(self, policy: RefreshPolicy | None = None) -> None:
        """Start with a fetch due at once (there is no token yet)."""
        self.policy = policy or RefreshPolicy()
        #: Monotonic time the current token expires (None: no token, or never known).
        self.expires_at: float | None = None
        #: Monotonic time the next fetch is due.
        self.refresh_at = float("-inf")
        #: Failed fetches since the last good one.
        self.failures = 0
        self.last_fetch_at: float | None = None

    def on_token(self, now: float, lifetime_s: float | None) -> None:
        """A token was fetched at *now*, living *lifetime_s* (None: unknown)."""
        p = self.policy
        self.failures = 0
        self.last_fetch_at = now
        if lifetime_s is None:
            self.expires_at = None
            self.refresh_at = now + p.unknown_lifetime_s
            return
        life = max(0.0, lifetime_s)
        early = min(max(p.min_early_s, p.early_fraction * life), life / 2)
        self.expires_at = now + life
        self.refresh_at = now + life - early

    def on_failure(self, now: float) -> float:
        """A fetch failed at *now*; return the seconds until the retry."""
        p = self.policy
        self.last_fetch_at = now
        delay = min(p.retry_cap_s, p.retry_base_s * 2.0 ** min(self.failures, 30))
        self.failures += 1
        self.refresh_at = now + delay
        return delay

    def invalidate(self, now: float) -> None:
        """Armada refused the current token at *now*: fetch again soon."""
        due = now
        if self.last_fetch_at is not None:
            due = max(due, self.last_fetch_at + self.policy.min_interval_s)
        self.refresh_at = min(self.refresh_at, due)

    def expired(self, now: float) -> bool:
        """Whether the current token's known lifetime has run out at *now*."""
        return self.expires_at is not None and now >= self.expires_at

    def step(self, now: float) -> float:
        """Seconds to wait from *now* before the next fetch; 0 when one is due."""
        return max(0.0, self.refresh_at - now)
