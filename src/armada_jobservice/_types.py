"""The client's value types: job states, serving states and a job's status."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from armada_jobservice._gen import jobservice_pb2
from armada_jobservice._wire import TERMINAL_STATES


class JobState(enum.StrEnum):
    """The state of one job as the job service reports it (``JobServiceResponse.State``)."""

    SUBMITTED = "SUBMITTED"
    DUPLICATE_FOUND = "DUPLICATE_FOUND"
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    SUCCEEDED = "SUCCEEDED"
    CANCELLED = "CANCELLED"
    JOB_ID_NOT_FOUND = "JOB_ID_NOT_FOUND"
    CONNECTION_ERR = "CONNECTION_ERR"

    @property
    def is_terminal(self) -> bool:
        """Whether the job has ended and its state will not change again."""
        return self.value in _TERMINAL_NAMES

    @property
    def is_success(self) -> bool:
        """Whether the job ended successfully."""
        return self is JobState.SUCCEEDED

    @classmethod
    def from_proto(cls, value: int) -> JobState:
        """Map a wire enum number to a state; raises ``ValueError`` for an unknown number."""
        # The wire names are fixed by the contract, so the enum's names double as the lookup key.
        return cls(jobservice_pb2.JobServiceResponse.State.Name(value))


class ServingStatus(enum.StrEnum):
    """What the job service's ``Health`` rpc says about itself."""

    UNKNOWN = "UNKNOWN"
    SERVING = "SERVING"
    NOT_SERVING = "NOT_SERVING"

    @classmethod
    def from_proto(cls, value: int) -> ServingStatus:
        """Map a wire enum number to a status; an unknown number reads as ``UNKNOWN``."""
        try:
            name = jobservice_pb2.HealthCheckResponse.ServingStatus.Name(value)
        except ValueError:
            return cls.UNKNOWN
        return cls(name)


_TERMINAL_NAMES = frozenset(s.name for s in TERMINAL_STATES)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One answer of ``GetJobStatus``: the job's state and the service's error text."""

    state: JobState
    """The job's state."""
    error: str = ""
    """Why the job failed or was cancelled, or the upstream error for ``CONNECTION_ERR``."""

    @classmethod
    def from_proto(cls, response: jobservice_pb2.JobServiceResponse) -> JobStatus:
        """Build a status from the wire response."""
        return cls(state=JobState.from_proto(response.state), error=response.error)


class JobRef(NamedTuple):
    """One job as ``get_job_statuses`` takes it: (queue, job set id, job id)."""

    queue: str
    """The Armada queue."""
    job_set_id: str
    """The job set the job was submitted in."""
    job_id: str
    """The job's id."""


@dataclass(frozen=True, slots=True)
class JobUpdate:
    """One message of ``watch_jobs``: which job, and its status now."""

    job_id: str
    """The job the status is of."""
    status: JobStatus
    """Its state and error text, as ``get_job_status`` would answer now."""

    @classmethod
    def from_proto(cls, update: jobservice_pb2.JobStatusUpdate) -> JobUpdate:
        """Build an update from the wire message; raises ``ValueError`` on an unknown state."""
        return cls(update.job_id, JobStatus(JobState.from_proto(update.state), update.error))
