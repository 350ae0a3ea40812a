"""What the service needs from a database, as one small Protocol.

A store is used from one thread at a time (the service's store thread), so
its methods are plain blocking calls. Every backend passes the same contract
tests in ``tests/test_store_contract.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

from armada_jobservice.server.model import JobRow, JobSetKey, RowToWrite


class JobSetWrite(NamedTuple):
    """What one flush writes for one job set, atomically with the others of its batch."""

    key: JobSetKey
    #: The resume position that the rows below bring the stored job set up to.
    last_message_id: str | None
    #: Wall-clock time (seconds since the epoch) of the last poll or event.
    last_activity: float
    rows: Sequence[RowToWrite]
    #: In a fleet, the epoch of this replica's lease on the job set: rows and a
    #: position are written only while that lease still holds (fencing). None
    #: outside a fleet, and for an entry that carries only an activity time.
    epoch: int | None = None


class StoredJobSet(NamedTuple):
    """A job set as read back from the database."""

    last_message_id: str | None
    last_activity: float
    rows: list[JobRow]


class Store(Protocol):
    """A database that keeps job sets, their jobs and their resume positions."""

    def open(self) -> None:
        """Connect and apply the migrations the database lacks (``migrations.py``).

        Raises ``StoreError`` (``SchemaTooNew`` for a schema newer than this
        release's) when the database cannot be used.
        """

    def close(self) -> None:
        """Release the connection; idempotent."""

    def ping(self) -> None:
        """Raise ``StoreError`` unless the database answers."""

    def write(self, batch: Iterable[JobSetWrite]) -> list[JobSetKey]:
        """Upsert the jobs and positions of a batch in one transaction.

        A stored terminal state is never overwritten, so that replicas sharing
        one database (or a replay) cannot move a finished job back. Returns
        the job sets left unwritten because this replica's lease on them no
        longer holds (only in a fleet; otherwise always empty).
        """

    def load_job_set(self, key: JobSetKey) -> StoredJobSet | None:
        """Read one job set and all its jobs, or None when it is not stored."""

    def load_job_sets(self, keys: Sequence[JobSetKey]) -> dict[JobSetKey, StoredJobSet]:
        """Read several job sets at once; those not stored are missing from the answer."""

    def idle_job_sets(self, cutoff: float, limit: int) -> list[JobSetKey]:
        """Job sets whose last activity is older than *cutoff* (wall-clock seconds)."""

    def delete_job_sets(self, keys: Iterable[JobSetKey], cutoff: float) -> int:
        """Delete those job sets that are still idle since *cutoff*, with their jobs."""

    def counts(self) -> tuple[int, int]:
        """How many job sets and jobs are stored."""
