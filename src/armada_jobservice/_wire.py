"""The wire contract's facts both halves share: job state numbers, terminal states, the port.

The one definition both halves of the package use: the client's string-valued
``JobState`` takes its terminal states from here, the service keeps and
compares these small ints on its hot paths, and the bench builds its
expected answers from them. The numbers are those of
``jobservice.JobServiceResponse.State`` (a test checks them against the
generated code).
"""

from __future__ import annotations

import enum


class WireState(enum.IntEnum):
    """A job's state as the service keeps and sends it (``JobServiceResponse.State``)."""

    SUBMITTED = 0
    DUPLICATE_FOUND = 1
    RUNNING = 2
    FAILED = 3
    SUCCEEDED = 4
    CANCELLED = 5
    JOB_ID_NOT_FOUND = 6
    CONNECTION_ERR = 7

    @property
    def is_terminal(self) -> bool:
        """Whether no later event can change this state."""
        return self in TERMINAL_STATES


#: The states a job never leaves: the job has ended.
TERMINAL_STATES = frozenset({WireState.FAILED, WireState.SUCCEEDED, WireState.CANCELLED})


DEFAULT_PORT = 60003
"""The job service's gRPC port unless told otherwise (the Go job service's port)."""

MAX_JOBS_PER_CALL = 10_000
"""Most jobs one ``GetJobStatuses`` or ``WatchJobs`` call may name; clients split longer lists."""
