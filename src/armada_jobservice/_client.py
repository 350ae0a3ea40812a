"""The blocking job-service client."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

import grpc
from google.protobuf import empty_pb2

from armada_jobservice._channel import DEFAULT_TARGET, ChannelOptions, sync_channel, translate
from armada_jobservice._exceptions import CallTimeout, ProtocolError, ServiceUnavailable
from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice._types import JobStatus, ServingStatus
from armada_jobservice._wait import (
    DEFAULT_CONNECTION_ERROR_TIMEOUT_S,
    DEFAULT_NOT_FOUND_TIMEOUT_S,
    DEFAULT_POLL_INTERVAL_S,
    Waiter,
    WaitPolicy,
)

DEFAULT_CALL_TIMEOUT_S = 10.0
"""Deadline of one call, retries included, unless the client is told otherwise."""

StatusCallback = Callable[[JobStatus], object]
"""Called with every status ``wait_for_job`` receives, terminal or not."""


def status_from_response(response: jobservice_pb2.JobServiceResponse) -> JobStatus:
    """Turn a wire response into a ``JobStatus``, raising ``ProtocolError`` on an unknown state."""
    try:
        return JobStatus.from_proto(response)
    except ValueError as exc:
        raise ProtocolError(f"the job service sent an unknown state {response.state}") from exc


class JobServiceClient:
    """A blocking client of the job service; use it as a context manager or ``close()`` it."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        tls: bool | grpc.ChannelCredentials = False,
        call_credentials: grpc.CallCredentials | None = None,
        call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        options: ChannelOptions = (),
        channel: grpc.Channel | None = None,
    ) -> None:
        # A channel handed in belongs to the caller: it keeps its own options
        # (so no retry policy unless it set one) and is not closed here.
        self._owns_channel = channel is None
        self._channel = (
            channel
            if channel is not None
            else sync_channel(target, tls=tls, call_credentials=call_credentials, options=options)
        )
        # The generated stub module has no type stubs (see scripts/gen_protos.py).
        self._stub = jobservice_pb2_grpc.JobServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.call_timeout_s = call_timeout_s

    @classmethod
    def from_channel(
        cls, channel: grpc.Channel, *, call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    ) -> JobServiceClient:
        """Wrap an existing channel, which the caller keeps and closes."""
        return cls(channel=channel, call_timeout_s=call_timeout_s)

    def get_job_status(
        self, queue: str, job_set_id: str, job_id: str, *, timeout_s: float | None = None
    ) -> JobStatus:
        """Ask for one job's state; raises a ``TransportError`` when no answer comes."""
        request = jobservice_pb2.JobServiceRequest(
            queue=queue, job_set_id=job_set_id, job_id=job_id
        )
        try:
            response = self._stub.GetJobStatus(request, timeout=timeout_s or self.call_timeout_s)
        except grpc.RpcError as exc:
            raise translate(exc, f"GetJobStatus {queue}/{job_set_id}/{job_id}") from exc
        return status_from_response(response)

    def health(self, *, timeout_s: float | None = None) -> ServingStatus:
        """Ask whether the service is serving; raises a ``TransportError`` when no answer comes."""
        try:
            response = self._stub.Health(
                empty_pb2.Empty(), timeout=timeout_s or self.call_timeout_s
            )
        except grpc.RpcError as exc:
            raise translate(exc, "Health") from exc
        return ServingStatus.from_proto(response.status)

    def wait_for_job(
        self,
        queue: str,
        job_set_id: str,
        job_id: str,
        *,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        not_found_timeout_s: float = DEFAULT_NOT_FOUND_TIMEOUT_S,
        connection_error_timeout_s: float = DEFAULT_CONNECTION_ERROR_TIMEOUT_S,
        timeout_s: float | None = None,
        on_status: StatusCallback | None = None,
    ) -> JobStatus:
        """Poll until the job ends and return its terminal status, or raise a ``WaitTimeout``."""
        policy = WaitPolicy(
            poll_interval_s, not_found_timeout_s, connection_error_timeout_s, timeout_s
        )
        waiter = Waiter(policy, f"{queue}/{job_set_id}/{job_id}", time.monotonic())
        while True:
            try:
                status = self.get_job_status(queue, job_set_id, job_id)
            except (ServiceUnavailable, CallTimeout) as exc:
                delay = waiter.on_error(exc, time.monotonic())
            else:
                if on_status is not None:
                    on_status(status)
                if status.state.is_terminal:
                    return status
                delay = waiter.on_status(status, time.monotonic())
            time.sleep(delay)

    def close(self) -> None:
        """Close the channel if this client opened it; safe to call twice."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> JobServiceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
