"""Keeps garbage-collector pauses short when the heap holds many long-lived objects.

Each open event stream keeps dozens of gRPC and asyncio objects alive; with
thousands of subscriptions, one full collection of CPython's cyclic collector
walks all of them and stops the event loop for as long, which polls feel as
their tail latency (measured with bench scenario 4; the figures are in
``docs/operations.md`` and ``docs/benchmarks.md``). ``gc.freeze()`` moves every
object alive now to a generation the collector no longer scans, so automatic
collections only look at what was created since. Frozen objects that later die
in reference cycles are not reclaimed until they are unfrozen, so once in a
while the policy unfreezes and collects everything: one deliberate full pause
per ``unfreeze_every_s`` instead of many unplanned ones.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

FREEZE_EVERY_S = 1.0
UNFREEZE_EVERY_S = 900.0


class GcPolicy:
    """Freezes survivors every second; unfreezes and collects every quarter hour."""

    def __init__(
        self,
        freeze_every_s: float = FREEZE_EVERY_S,
        unfreeze_every_s: float = UNFREEZE_EVERY_S,
        now: float = 0.0,
    ) -> None:
        self.freeze_every_s = freeze_every_s
        self.unfreeze_every_s = unfreeze_every_s
        self._next_freeze = now + freeze_every_s
        self._next_unfreeze = now + unfreeze_every_s
        #: How long the last full collection held the process, in seconds.
        self.last_full_pause_s: float | None = None

    def step(self, now: float) -> None:
        """Do what is due at monotonic time *now*."""
        if now >= self._next_unfreeze:
            self._next_unfreeze = now + self.unfreeze_every_s
            self.full_collection()
        if now >= self._next_freeze:
            self._next_freeze = now + self.freeze_every_s
            gc.freeze()

    def full_collection(self) -> float:
        """Unfreeze and collect everything now; return the pause in seconds.

        The quarter-hourly step calls it; ``serve`` also runs it on SIGUSR1,
        which is how bench scenario 4 puts one inside a measured window.
        """
        frozen = gc.get_freeze_count()
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        pause = time.perf_counter() - started
        self.last_full_pause_s = pause
        log.info(
            "full garbage collection of %d frozen objects took %.0f ms (%d unreachable)",
            frozen,
            pause * 1000,
            found,
        )
        return pause
