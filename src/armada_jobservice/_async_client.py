"""The asyncio job-service client."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

import grpc
import grpc.aio
from google.protobuf import empty_pb2

from armada_jobservice._channel import DEFAULT_TARGET, ChannelOptions, aio_channel, translate
from armada_jobservice._client import DEFAULT_CALL_TIMEOUT_S, StatusCallback, status_from_response
from armada_jobservice._exceptions import CallTimeout, ServiceUnavailable
from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice._types import JobStatus, ServingStatus
from armada_jobservice._wait import (
    DEFAULT_CONNECTION_ERROR_TIMEOUT_S,
    DEFAULT_NOT_FOUND_TIMEOUT_S,
    DEFAULT_POLL_INTERVAL_S,
    Waiter,
    WaitPolicy,
)


class AsyncJobServiceClient:
    """An asyncio client of the job service; use it with ``async with`` or ``await close()``."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        tls: bool | grpc.ChannelCredentials = False,
        call_credentials: grpc.CallCredentials | None = None,
        call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        options: ChannelOptions = (),
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        # As in the blocking client: a channel handed in stays the caller's.
        self._owns_channel = channel is None
        self._channel = (
            channel
            if channel is not None
            else aio_channel(target, tls=tls, call_credentials=call_credentials, options=options)
        )
        # The generated stub module has no type stubs (see scripts/gen_protos.py).
        self._stub = jobservice_pb2_grpc.JobServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.call_timeout_s = call_timeout_s

    @classmethod
    def from_channel(
        cls, channel: grpc.aio.Channel, *, call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    ) -> AsyncJobServiceClient:
        """Wrap an existing asyncio channel, which the caller keeps and closes."""
        return cls(channel=channel, call_timeout_s=call_timeout_s)

    async def get_job_status(
        self, queue: str, job_set_id: str, job_id: str, *, timeout_s: float | None = None
    ) -> JobStatus:
        """Ask for one job's state; raises a ``TransportError`` when no answer comes."""
        request = jobservice_pb2.JobServiceRequest(
            queue=queue, job_set_id=job_set_id, job_id=job_id
        )
        try:
            response = await self._stub.GetJobStatus(
                request, timeout=timeout_s or self.call_timeout_s
            )
        except grpc.RpcError as exc:
            raise translate(exc, f"GetJobStatus {queue}/{job_set_id}/{job_id}") from exc
        return status_from_response(response)

    async def health(self, *, timeout_s: float | None = None) -> ServingStatus:
        """Ask whether the service is serving; raises a ``TransportError`` when no answer comes."""
        try:
            response = await self._stub.Health(
                empty_pb2.Empty(), timeout=timeout_s or self.call_timeout_s
            )
        except grpc.RpcError as exc:
            raise translate(exc, "Health") from exc
        return ServingStatus.from_proto(response.status)

    async def wait_for_job(
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
                status = await self.get_job_status(queue, job_set_id, job_id)
            except (ServiceUnavailable, CallTimeout) as exc:
                delay = waiter.on_error(exc, time.monotonic())
            else:
                if on_status is not None:
                    on_status(status)
                if status.state.is_terminal:
                    return status
                delay = waiter.on_status(status, time.monotonic())
            await asyncio.sleep(delay)

    async def close(self) -> None:
        """Close the channel if this client opened it; safe to call twice."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> AsyncJobServiceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
