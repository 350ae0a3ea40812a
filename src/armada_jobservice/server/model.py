"""The service's value types, shared by the cache, the store and the API.

They are plain tuples on purpose: the cache and the store build many of them
per flush, and a tuple is the cheapest record Python has.
"""

from __future__ import annotations

from typing import NamedTuple

#: The most UTF-8 bytes a job id, and a queue and job set id together, may
#: take: PostgreSQL's btree index refuses a row of (queue, job set id, job id)
#: beyond 2,704 bytes, and one such row would fail every flush after it.
MAX_JOB_ID_BYTES = 512
MAX_JOB_SET_KEY_BYTES = 1536


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
