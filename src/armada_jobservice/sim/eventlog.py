"""Per-job-set event logs, shared by every stream that reads them.

Each job set has one append-only log. A stream keeps only its position in the
log and waits on the log's notification when it has caught up, so an open
stream costs the same whether the log holds ten events or a million, and no
subscriber has a queue that can grow without bound.

Message ids are opaque to clients but, here, fixed-width decimal positions in
the log, so they increase as strings and as numbers and resuming after one is
a constant-time lookup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

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

    __slots__ = ("_changed", "job_set_id", "messages", "queue")

    def __init__(self, queue: str, job_set_id: str) -> None:
        """Create an empty log for ``job_set_id`` in ``queue``."""
        self.queue = queue
        self.job_set_id = job_set_id
        self.messages: list[event_pb2.EventStreamMessage] = []
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        """Return the number of events in the log."""
        return len(self.messages)

    def append(self, message: event_pb2.EventMessage) -> str:
        """Append ``message``, wake the log's waiters and return its message id."""
        message_id = format_message_id(len(self.messages) + 1)
        self.messages.append(event_pb2.EventStreamMessage(id=message_id, message=message))
        self.notify()
        return message_id

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

    def __init__(self) -> None:
        """Create an empty event log."""
        self._logs: dict[tuple[str, str], JobSetLog] = {}

    def get(self, queue: str, job_set_id: str) -> JobSetLog | None:
        """Return the job set's log, or None when it has never been touched."""
        return self._logs.get((queue, job_set_id))

    def log(self, queue: str, job_set_id: str) -> JobSetLog:
        """Return the job set's log, creating an empty one if needed."""
        key = (queue, job_set_id)
        found = self._logs.get(key)
        if found is None:
            found = self._logs[key] = JobSetLog(queue, job_set_id)
        return found

    def exists(self, queue: str, job_set_id: str) -> bool:
        """Whether the job set has at least one event (Armada's notion of existing)."""
        found = self._logs.get((queue, job_set_id))
        return found is not None and len(found) > 0

    def append(self, queue: str, job_set_id: str, message: event_pb2.EventMessage) -> str:
        """Append ``message`` to the job set's log and return its message id."""
        return self.log(queue, job_set_id).append(message)

    def __iter__(self) -> Iterator[JobSetLog]:
        """Iterate over every log."""
        return iter(list(self._logs.values()))

    def total_events(self) -> int:
        """Return the number of events held across all job sets."""
        return sum(len(log) for log in self._logs.values())
