"""Fault injection: what the simulator gets wrong on purpose, and when.

Every fault is settable at construction (and so by CLI flags) and at run time
through ``ArmadaSimulator.faults``:

- ``end_streams_after(n)``: a stream ends cleanly (status OK) after n events.
- ``break_streams_after(n, code)``: a stream fails with ``code`` (UNAVAILABLE
  by default, or INTERNAL, ...) after n events.
- ``deny_queue(name)``: every call about that queue gets PERMISSION_DENIED.
- ``unavailable_for(seconds)``: every call gets UNAVAILABLE until then, and
  open streams break with UNAVAILABLE when it starts.
- ``slow_streams(delay_s)``: each event on a stream is delayed by delay_s.
- ``hold_streams()`` / ``release_streams()``: streams open (and count as
  open) but send nothing until released; a stream already sending pauses
  once it has caught up. Benchmarks use it to open many streams first and
  then time delivery alone.

Stream rules apply to streams opened after they are set; ``times`` limits how
many streams one rule affects (None: all of them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc


@dataclass(slots=True)
class StreamRule:
    """End or break a stream once it has sent ``after_events`` events."""

    after_events: int
    """Events to deliver before the stream ends or breaks (0: at once)."""
    code: grpc.StatusCode | None
    """None ends the stream cleanly; a code breaks it with that status."""
    times: int | None = None
    """Streams this rule still applies to; None for every stream."""
    queue: str | None = None
    """Only streams of this queue, or any queue when None."""
    job_set_id: str | None = None
    """Only streams of this job set, or any job set when None."""

    def matches(self, queue: str, job_set_id: str) -> bool:
        """Whether a stream of ``queue``/``job_set_id`` falls under this rule."""
        if self.times is not None and self.times <= 0:
            return False
        if self.queue is not None and self.queue != queue:
            return False
        return self.job_set_id is None or self.job_set_id == job_set_id


class Faults:
    """The simulator's current faults; the servicers consult it on every call."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Create a fault set with nothing wrong; ``clock`` measures outages."""
        self._clock = clock
        self.stream_rules: list[StreamRule] = []
        self.denied_queues: set[str] = set()
        self.unavailable_until = 0.0
        self.stream_delay_s = 0.0
        self._on_outage: Callable[[], None] | None = None
        #: Set while streams are held; set() releases them.
        self.released: asyncio.Event | None = None

    def bind_outage_hook(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` when an outage starts (the simulator breaks open streams)."""
        self._on_outage = hook

    def end_streams_after(
        self,
        events: int,
        *,
        times: int | None = None,
        queue: str | None = None,
        job_set_id: str | None = None,
    ) -> StreamRule:
        """End new streams cleanly after ``events`` events; return the rule."""
        return self._add(StreamRule(events, None, times, queue, job_set_id))

    def break_streams_after(
        self,
        events: int,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        *,
        times: int | None = None,
        queue: str | None = None,
        job_set_id: str | None = None,
    ) -> StreamRule:
        """Fail new streams with ``code`` after ``events`` events; return the rule."""
        return self._add(StreamRule(events, code, times, queue, job_set_id))

    def _add(self, rule: StreamRule) -> StreamRule:
        if rule.after_events < 0:
            raise ValueError("after_events must not be negative")
        self.stream_rules.append(rule)
        return rule

    def take_stream_rule(self, queue: str, job_set_id: str) -> StreamRule | None:
        """Return the first rule for a new stream, using up one of its ``times``."""
        for rule in self.stream_rules:
            if rule.matches(queue, job_set_id):
                if rule.times is not None:
                    rule.times -= 1
                return rule
        return None

    def deny_queue(self, queue: str) -> None:
        """Answer PERMISSION_DENIED to every call about ``queue``."""
        self.denied_queues.add(queue)

    def allow_queue(self, queue: str) -> None:
        """Stop denying ``queue``."""
        self.denied_queues.discard(queue)

    def unavailable_for(self, seconds: float, *, break_streams: bool = True) -> None:
        """Answer UNAVAILABLE to every call for ``seconds`` (real seconds)."""
        self.unavailable_until = self._clock() + seconds
        if break_streams and self._on_outage is not None:
            self._on_outage()

    def available(self) -> None:
        """End an outage now."""
        self.unavailable_until = 0.0

    @property
    def unavailable(self) -> bool:
        """Whether an outage is in progress."""
        return self._clock() < self.unavailable_until

    def slow_streams(self, delay_s: float) -> None:
        """Delay each event sent on any stream by ``delay_s`` real seconds (0: off)."""
        if delay_s < 0:
            raise ValueError("delay_s must not be negative")
        self.stream_delay_s = delay_s

    def hold_streams(self) -> None:
        """Let streams open but send nothing until ``release_streams()``."""
        if self.released is None:
            self.released = asyncio.Event()

    def release_streams(self) -> None:
        """Let held streams send again (no-op when none are held)."""
        released, self.released = self.released, None
        if released is not None:
            released.set()

    def clear(self) -> None:
        """Remove every fault."""
        self.stream_rules.clear()
        self.denied_queues.clear()
        self.unavailable_until = 0.0
        self.stream_delay_s = 0.0
        self.release_streams()
