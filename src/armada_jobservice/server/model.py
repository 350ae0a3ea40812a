"""The service's value types, shared by the cache, the store and the API.

They are plain tuples on purpose: the cache and the store build many of them
per flush, and a tuple is the cheapest record Python has.
"""

from __future__ import annotations

from typing import NamedTuple


class JobSetKey(NamedTuple):
    """A job set is known by its queue and its id: the same id in two queues is two sets."""

    queue: str
    job_set_id: str

    def __str__(self) -> str:
        return f"{self.queue}/{self.job_set_id}"


class JobRow(NamedTuple):
    """One job as the database stores it."""

    job_id: str
    state: int
    error: str | None


#: A job to write, as a plain tuple: (job id, state, error text). Flushes build
#: one per changed job on the event loop, where a plain tuple costs less than a
#: NamedTuple.
RowToWrite = tuple[str, int, str | None]
