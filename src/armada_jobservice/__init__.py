"""armada-jobservice: answer job-status polls for Armada jobs from a cache fed by event streams.

The public client API lives here; everything in an underscored module is private.
"""

from __future__ import annotations

from armada_jobservice._async_client import AsyncJobServiceClient
from armada_jobservice._channel import DEFAULT_TARGET, RETRY_POLICY
from armada_jobservice._client import JobServiceClient
from armada_jobservice._exceptions import (
    CallTimeout,
    ConnectionErrorTimeout,
    JobNotFoundTimeout,
    JobServiceError,
    ProtocolError,
    RPCError,
    ServiceOverloaded,
    ServiceUnavailable,
    TransportError,
    WaitTimeout,
)
from armada_jobservice._types import JobRef, JobState, JobStatus, JobUpdate, ServingStatus

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TARGET",
    "RETRY_POLICY",
    "AsyncJobServiceClient",
    "CallTimeout",
    "ConnectionErrorTimeout",
    "JobNotFoundTimeout",
    "JobRef",
    "JobServiceClient",
    "JobServiceError",
    "JobState",
    "JobStatus",
    "JobUpdate",
    "ProtocolError",
    "RPCError",
    "ServiceOverloaded",
    "ServiceUnavailable",
    "ServingStatus",
    "TransportError",
    "WaitTimeout",
    "__version__",
]
