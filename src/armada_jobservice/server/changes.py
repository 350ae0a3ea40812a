"""Change tracking: which job sets received events since the writer last looked.

The stream loop reports every event here; the writer takes the changed job
sets for its next flush (so a flush costs what the events cost, not what the
number of cached job sets costs) and reads ``events_seen`` to tell when the
streams have fallen quiet. The Prometheus counter of received events reads
the same count, so nothing reads a metric to make a decision.
"""

from __future__ import annotations

from collections.abc import Iterable

from armada_jobservice.server.cache import JobSet


class ChangeTracker:
    """The job sets with events since the last ``take()``, and a count of every event."""

    __slots__ = ("_changed", "_events_seen")

    def __init__(self) -> None:
        self._changed: set[JobSet] = set()
        self._events_seen = 0

    def event(self, js: JobSet) -> None:
        """Record that an event of *js* arrived (applied or not: its position moved)."""
        self._events_seen += 1
        self._changed.add(js)

    def mark(self, js: JobSet) -> None:
        """Record that jobs of *js* changed without an event (backfill), for the next flush."""
        self._changed.add(js)

    def take(self) -> list[JobSet]:
        """The job sets changed since the last call, forgetting them."""
        taken = list(self._changed)
        self._changed = set()
        return taken

    def restore(self, job_sets: Iterable[JobSet]) -> None:
        """Put job sets back after a write of their changes failed."""
        self._changed.update(job_sets)

    @property
    def events_seen(self) -> int:
        """Events received since the service started."""
        return self._events_seen

    @property
    def pending(self) -> int:
        """How many job sets have changes the writer has not taken."""
        return len(self._changed)

    def __contains__(self, js: object) -> bool:
        return js in self._changed
