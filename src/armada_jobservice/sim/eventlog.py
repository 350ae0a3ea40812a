"""Per-job-set event logs, shared by every stream that reads them.

Each job set has one append-only log. A stream keeps only its position in the
log and waits on the log's notification when it has caught up, so an open
stream costs the same whether the log holds ten events or a million, and no
subscriber has a queue that can grow without bound.

Message ids are opaque to clients but, here, fixed-width decimal positions in
the log, so they increase as strings and as numbers and resuming after one is
a constant-time lookup.

Event expiry (``retention_s``) follows Armada's event store: Armada keeps a
job set's events in one Redis stream and renews the stream's expiry on every
write (the event ingester's ``eventRetentionPolicy.retentionDuration``), so a
job set's events are dropped together once it has had no new event for that
long. Positions keep counting (Redis stream ids are times, and only grow): an
event appended after expiry gets the next position, a stream from the start,
or resuming after a dropped event, starts at the oldest event kept, and with
``errorIfMissing`` an expired job set is missing until its next event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

from armada_client.armada import event_pb2

_ID_WIDTH = 20


class MessageIdError(ValueError):
    """A ``from_message_id`` that this simulator never handed out."""


def format_message_id(position: int) -> str:
    """Return the message id of the event at 1-based ``position`` in a log."""
    return f"{position:0{_ID_WIDTH}d}"


def parse_message_id(message_id: str) -> int:
    """Return the log position after which a stream resuming from ``message_id`` reads.

    An empty id means "from the start" (position 0).
    """
    if message_id == "":
        return 0
    if len(message_id) != _ID_WIDTH or not message_id.isdigit():
        raise MessageIdError(f"malformed message id {message_id!r}")
    return int(message_id)


class JobSetLog:
    """The ordered events of one job set and the notification of new ones."""

    __slots__ = ("_changed", "base", "job_set_id", "last_append", "messages", "queue")

    def __init__(self, queue: str, job_set_id: str) -> None:
        """Create an empty log for ``job_set_id`` in ``queue``."""
        self.queue = queue
        self.job_set_id = job_set_id
        #: The events kept; ``messages[i]`` is at position ``base + i + 1``.
        self.messages: list[event_pb2.EventStreamMessage] = []
        #: How many events were dropped by expiry, all before the kept ones.
        self.base = 0
        #: Monotonic time of the last append (expiry counts from it).
        self.last_append = 0.0
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        """Return the number of events kept in the log."""
        return len(self.messages)

    @property
    def end(self) -> int:
        """The position of the last event ever appended (0 for none)."""
        return self.base + len(self.messages)

    def append(self, message: event_pb2.EventMessage, now: float | None = None) -> str:
        """Append ``message``, wake the log's waiters and return its message id."""
        message_id = format_message_id(self.end + 1)
        self.messages.append(event_pb2.EventStreamMessage(id=message_id, message=message))
        self.last_append = time.monotonic() if now is None else now
        self.notify()
        return message_id

    def expire(self) -> int:
        """Drop every kept event (positions carry on after them); return how many."""
        dropped = len(self.messages)
        self.base += dropped
        self.messages = []
        return dropped

    def notify(self) -> None:
        """Wake every stream waiting on this log, e.g. to see a fault."""
        # Replacing the event rather than clearing it means a waiter that has
        # not run yet still sees the set event it captured.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self) -> None:
        """Wait until the next ``append`` or ``notify``."""
        await self._changed.wait()


class EventLog:
    """The simulator's event log: every job set's log, keyed by (queue, job set id)."""

    def __init__(
        self,
        retention_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create an empty event log; ``retention_s`` (None: for ever) expires idle job sets."""
        self._logs: dict[tuple[str, str], JobSetLog] = {}
        self.retention_s = retention_s
        self._clock = clock

    def _checked(self, found: JobSetLog | None) -> JobSetLog | None:
        # Expiry is applied when a log is looked at, so that what a reader
        # sees never depends on when a sweep last ran.
        retention = self.retention_s
        if (
            found is not None
            and retention is not None
            and found.messages
            and self._clock() - found.last_append >= retention
        ):
            found.expire()
        return found

    def get(self, queue: str, job_set_id: str) -> JobSetLog | None:
        """Return the job set's log, or None when it has never been touched."""
        return self._checked(self._logs.get((queue, job_set_id)))

    def log(self, queue: str, job_set_id: str) -> JobSetLog:
        """Return the job set's log, creating an empty one if needed."""
        key = (queue, job_set_id)
        found = self._checked(self._logs.get(key))
        if found is None:
            found = self._logs[key] = JobSetLog(queue, job_set_id)
        return found

    def exists(self, queue: str, job_set_id: str) -> bool:
        """Whether the job set has at least one event kept (Armada's notion of existing)."""
        found = self.get(queue, job_set_id)
        return found is not None and len(found) > 0

    def expire_idle(self) -> int:
        """Drop the events of every job set idle for the retention time; return how many."""
        dropped = 0
        if self.retention_s is not None:
            for found in self._logs.values():
                before = len(found)
                self._checked(found)
                dropped += before - len(found)
        return dropped

    def expire(self, queue: str, job_set_id: str) -> int:
        """Drop a job set's events now, as if they had expired; return how many."""
        found = self._logs.get((queue, job_set_id))
        return found.expire() if found is not None else 0

    def append(self, queue: str, job_set_id: str, message: event_pb2.EventMessage) -> str:
        """Append ``message`` to the job set's log and return its message id."""
        return self.log(queue, job_set_id).append(message, self._clock())

    def __iter__(self) -> Iterator[JobSetLog]:
        """Iterate over every log."""
        return iter(list(self._logs.values()))

    def total_events(self) -> int:
        """Return the number of events kept across all job sets."""
        return sum(len(log) for log in self._logs.values())
