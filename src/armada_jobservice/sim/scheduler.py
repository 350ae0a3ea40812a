"""One timer for all simulated jobs: a heap of due callbacks and a single timer.

Tens of thousands of jobs each waiting for their next transition would cost a
task apiece; here they cost a heap entry apiece, and the event loop holds one
timer, armed for the earliest entry.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

Callback = Callable[[], None]


class Scheduler:
    """Run callbacks after delays in simulated seconds, scaled to real time.

    ``time_scale`` is real seconds per simulated second: 1.0 is real time,
    0.01 runs a 2-second job in 20 ms, and 0 makes every delay zero (events
    still come out in scheduled order).
    """

    def __init__(self, time_scale: float = 1.0) -> None:
        """Create an idle scheduler; it binds to the running loop on first use."""
        if time_scale < 0:
            raise ValueError("time_scale must not be negative")
        self.time_scale = time_scale
        self._heap: list[tuple[float, int, Callback]] = []
        self._counter = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = float("inf")
        self._closed = False
        self._firing = False

    def __len__(self) -> int:
        """Return the number of callbacks waiting."""
        return len(self._heap)

    def call_later(self, delay_s: float, callback: Callback) -> None:
        """Run ``callback`` after ``delay_s`` simulated seconds."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + max(delay_s, 0.0) * self.time_scale
        # The counter keeps equal due times in submission order, so a job's
        # transitions never overtake each other.
        heapq.heappush(self._heap, (due, next(self._counter), callback))
        if due < self._timer_due and not self._firing:
            self._arm(loop)

    def run_due(self) -> int:
        """Run every callback that is due now and return how many ran."""
        loop = asyncio.get_running_loop()
        ran = 0
        # A callback that schedules at delay 0 lands in this same batch, which
        # is what a time scale of 0 means; the cap keeps the loop responsive.
        while self._heap and self._heap[0][0] <= loop.time() and ran < 10_000:
            _, _, callback = heapq.heappop(self._heap)
            callback()
            ran += 1
        return ran

    def close(self) -> None:
        """Drop every pending callback and the timer; later calls do nothing."""
        self._closed = True
        self._heap.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_due = float("inf")

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._heap:
            self._timer_due = float("inf")
            return
        self._timer_due = self._heap[0][0]
        self._timer = loop.call_at(self._timer_due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_due = float("inf")
        # Callbacks schedule follow-ups; arm once for all of them afterwards.
        self._firing = True
        try:
            self.run_due()
        finally:
            self._firing = False
        if not self._closed:
            self._arm(asyncio.get_running_loop())
