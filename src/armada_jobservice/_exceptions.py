"""The client's exceptions.

Every error the client raises derives from ``JobServiceError``; gRPC errors are
translated where they enter (``raise ... from exc``), so callers never need to
import ``grpc`` to handle them::

    JobServiceError
    ├── TransportError ......... a call got no usable answer from the service
    │   ├── ServiceUnavailable . UNAVAILABLE after the retry policy gave up
    │   ├── CallTimeout ........ the call's deadline passed (DEADLINE_EXCEEDED)
    │   └── RPCError ........... any other gRPC status (auth, bad request, internal)
    ├── ProtocolError .......... the service answered something the contract does not allow
    └── WaitTimeout ............ wait_for_job gave up: the overall timeout passed
        ├── JobNotFoundTimeout . the job stayed JOB_ID_NOT_FOUND too long
        └── ConnectionErrorTimeout  CONNECTION_ERR (or no service) for too long
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from armada_jobservice._types import JobStatus

__all__ = [
    "CallTimeout",
    "ConnectionErrorTimeout",
    "JobNotFoundTimeout",
    "JobServiceError",
    "ProtocolError",
    "RPCError",
    "ServiceUnavailable",
    "TransportError",
    "WaitTimeout",
]


class JobServiceError(Exception):
    """Base class of every error the job-service client raises."""


class TransportError(JobServiceError):
    """A call to the job service got no usable answer."""

    def __init__(self, message: str, *, code: str = "", details: str = "") -> None:
        super().__init__(message)
        self.code = code
        """The gRPC status code's name, e.g. ``"UNAVAILABLE"``."""
        self.details = details
        """The status details the server or gRPC gave."""


class ServiceUnavailable(TransportError):
    """The service could not be reached, even after the retry policy's attempts."""


class CallTimeout(TransportError):
    """The call's deadline passed before the service answered."""


class RPCError(TransportError):
    """The service answered with a gRPC error status other than UNAVAILABLE or a deadline."""


class ServiceOverloaded(RPCError):
    """The service shed the call (RESOURCE_EXHAUSTED): too many calls at once, or a limit of yours.

    Waits treat it as they treat UNAVAILABLE: they back off and try again
    until ``connection_error_timeout_s`` runs out.
    """


def is_transient(exc: BaseException) -> bool:
    """Whether a wait retries *exc* after its poll interval (until ``connection_error_timeout_s``).

    UNAVAILABLE, a deadline, RESOURCE_EXHAUSTED (shed), and CANCELLED from
    the service (a service refusing a call beyond its queue, or stopping
    with the call open); any other error ends the wait.
    """
    if isinstance(exc, ServiceUnavailable | CallTimeout | ServiceOverloaded):
        return True
    return isinstance(exc, RPCError) and exc.code == "CANCELLED"


class ProtocolError(JobServiceError):
    """The service answered with a value the wire contract does not define."""


class WaitTimeout(JobServiceError):
    """``wait_for_job`` gave up before the job reached a terminal state."""

    def __init__(self, message: str, *, last_status: JobStatus | None) -> None:
        super().__init__(message)
        self.last_status = last_status
        """The last status seen before giving up, or ``None`` when none arrived."""


class JobNotFoundTimeout(WaitTimeout):
    """The job stayed ``JOB_ID_NOT_FOUND`` for longer than the not-found timeout."""


class ConnectionErrorTimeout(WaitTimeout):
    """The service reported ``CONNECTION_ERR``, or could not be reached, for too long."""
