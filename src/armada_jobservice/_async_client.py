"""The asyncio job-service client.

Many concurrent waits in one process share calls: polls made within
``coalesce_window_s`` of each other go out as one ``GetJobStatuses`` call
(``_batching.py``), and waits on one job set share one ``WatchJobs`` stream
(``_watching.WatchHub``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from types import TracebackType

import grpc
import grpc.aio
from google.protobuf import empty_pb2

from armada_jobservice._batching import PollBatcher
from armada_jobservice._channel import DEFAULT_TARGET, ChannelOptions, aio_channel, translate
from armada_jobservice._client import (
    DEFAULT_CALL_TIMEOUT_S,
    StatusCallback,
    chunks,
    status_from_response,
    statuses_from_response,
    statuses_request,
    update_from_wire,
    watch_request,
)
from armada_jobservice._exceptions import CallTimeout, TransportError, is_transient
from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice._types import JobRef, JobStatus, JobUpdate, ServingStatus
from armada_jobservice._wait import (
    DEFAULT_CONNECTION_ERROR_TIMEOUT_S,
    DEFAULT_NOT_FOUND_TIMEOUT_S,
    DEFAULT_POLL_INTERVAL_S,
    JobsWaiter,
    WaitPolicy,
)
from armada_jobservice._watching import (
    UpdateCallback,
    WatchHub,
    WatchUnsupported,
    is_unimplemented,
    take,
)

DEFAULT_COALESCE_WINDOW_S = 0.002
"""How long a poll waits for others to share its call, unless told otherwise."""


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
        coalesce_window_s: float | None = DEFAULT_COALESCE_WINDOW_S,
    ) -> None:
        """*coalesce_window_s*: how long a poll waits for concurrent ones to share its call
        (``None``: each poll is its own call)."""
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
        # Cleared when the service answers UNIMPLEMENTED: it is older than these rpcs.
        self._batches = True
        self._watches = True
        self._batcher = (
            None
            if coalesce_window_s is None
            else PollBatcher(self._get_one, self.get_job_statuses, window_s=coalesce_window_s)
        )
        self._hub = WatchHub(self.watch_jobs, gather_s=coalesce_window_s or 0.0)

    @classmethod
    def from_channel(
        cls,
        channel: grpc.aio.Channel,
        *,
        call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        coalesce_window_s: float | None = DEFAULT_COALESCE_WINDOW_S,
    ) -> AsyncJobServiceClient:
        """Wrap an existing asyncio channel, which the caller keeps and closes."""
        return cls(
            channel=channel, call_timeout_s=call_timeout_s, coalesce_window_s=coalesce_window_s
        )

    @property
    def calls_shared(self) -> tuple[int, int]:
        """(calls sent, polls answered by them) of the coalesced polls so far."""
        if self._batcher is None:
            return 0, 0
        return self._batcher.calls_sent, self._batcher.polls_sent

    @property
    def watches_opened(self) -> int:
        """``WatchJobs`` streams the shared waits opened so far."""
        return self._hub.streams_opened

    async def get_job_status(
        self, queue: str, job_set_id: str, job_id: str, *, timeout_s: float | None = None
    ) -> JobStatus:
        """Ask for one job's state; raises a ``TransportError`` when no answer comes.

        Concurrent calls within ``coalesce_window_s`` share one ``GetJobStatuses`` call.
        """
        ref = JobRef(queue, job_set_id, job_id)
        if self._batcher is None:
            return await self._get_one(ref, timeout_s)
        if timeout_s is None:
            return await self._batcher.status(ref)
        try:
            return await asyncio.wait_for(self._batcher.status(ref), timeout_s)
        except TimeoutError as exc:
            what = f"GetJobStatus {queue}/{job_set_id}/{job_id}"
            raise CallTimeout(f"{what}: DEADLINE_EXCEEDED", code="DEADLINE_EXCEEDED") from exc

    async def _get_one(self, ref: JobRef, timeout_s: float | None = None) -> JobStatus:
        queue, job_set_id, job_id = ref
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

    async def get_job_statuses(
        self, jobs: Iterable[tuple[str, str, str]], *, timeout_s: float | None = None
    ) -> list[JobStatus]:
        """Ask for many jobs' states, each a (queue, job set id, job id), in as few calls as may be.

        As ``JobServiceClient.get_job_statuses``: in the order asked, across
        job sets, one job at a time from a service older than the batch.
        """
        refs = [JobRef(*job) for job in jobs]
        if len(refs) == 1:
            return [await self._get_one(refs[0], timeout_s)]
        statuses: list[JobStatus] = []
        for chunk in chunks(refs):
            if self._batches:
                try:
                    response = await self._stub.GetJobStatuses(
                        statuses_request(chunk), timeout=timeout_s or self.call_timeout_s
                    )
                except grpc.RpcError as exc:
                    error = translate(exc, f"GetJobStatuses of {len(chunk)} jobs")
                    if not is_unimplemented(error):
                        raise error from exc
                    self._batches = False
                else:
                    statuses.extend(statuses_from_response(response, len(chunk)))
                    continue
            statuses.extend(await asyncio.gather(*(self._get_one(r, timeout_s) for r in chunk)))
        return statuses

    async def watch_jobs(
        self,
        queue: str,
        job_set_id: str,
        job_ids: Iterable[str] = (),
        *,
        timeout_s: float | None = None,
    ) -> AsyncIterator[JobUpdate]:
        """Iterate over the jobs' states now, then over each change, as the service applies it.

        As ``JobServiceClient.watch_jobs``, asynchronously.
        """
        what = f"WatchJobs {queue}/{job_set_id}"
        call = self._stub.WatchJobs(watch_request(queue, job_set_id, job_ids), timeout=timeout_s)
        try:
            async for message in call:
                yield update_from_wire(message)
        except grpc.RpcError as exc:
            raise translate(exc, what) from exc
        finally:
            call.cancel()

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
        """Wait until the job ends and return its terminal status, or raise a ``WaitTimeout``.

        As ``JobServiceClient.wait_for_job``; concurrent waits on one job set
        share one watch, and fallback polls share calls.
        """
        results = await self.wait_for_jobs(
            queue,
            job_set_id,
            [job_id],
            poll_interval_s=poll_interval_s,
            not_found_timeout_s=not_found_timeout_s,
            connection_error_timeout_s=connection_error_timeout_s,
            timeout_s=timeout_s,
            on_update=None if on_status is None else lambda u: on_status(u.status),
        )
        return results[job_id]

    async def wait_for_jobs(
        self,
        queue: str,
        job_set_id: str,
        job_ids: Iterable[str],
        *,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        not_found_timeout_s: float = DEFAULT_NOT_FOUND_TIMEOUT_S,
        connection_error_timeout_s: float = DEFAULT_CONNECTION_ERROR_TIMEOUT_S,
        timeout_s: float | None = None,
        on_update: UpdateCallback | None = None,
    ) -> dict[str, JobStatus]:
        """Wait until every listed job of a job set ends; return their terminal statuses by id.

        As ``JobServiceClient.wait_for_jobs``, asynchronously.
        """
        policy = WaitPolicy(
            poll_interval_s, not_found_timeout_s, connection_error_timeout_s, timeout_s
        )
        jobs = JobsWaiter(policy, queue, job_set_id, job_ids, time.monotonic())
        if self._watches:
            try:
                await self._watch_until_done(jobs, queue, job_set_id, on_update)
            except WatchUnsupported:
                self._watches = False
        while not jobs.finished:
            remaining = jobs.remaining
            # Each through get_job_status: other waits' polls share the call.
            answers = await asyncio.gather(
                *(self.get_job_status(queue, job_set_id, j) for j in remaining),
                return_exceptions=True,
            )
            now = time.monotonic()
            delay = None
            for job_id, answer in zip(remaining, answers, strict=True):
                if isinstance(answer, TransportError) and is_transient(answer):
                    delay = jobs.on_error(answer, now)
                elif isinstance(answer, BaseException):
                    raise answer
                else:
                    if on_update is not None:
                        on_update(JobUpdate(job_id, answer))
                    delay = jobs.on_status(job_id, answer, now)
            if jobs.finished:
                break
            await asyncio.sleep(jobs.check(now) if delay is None else delay)
        return jobs.results()

    async def _watch_until_done(
        self, jobs: JobsWaiter, queue: str, job_set_id: str, on_update: UpdateCallback | None
    ) -> None:
        member, items = self._hub.join(
            queue, job_set_id, jobs.remaining, retry_s=jobs.policy.poll_interval_s
        )
        try:
            while not jobs.finished:
                wait_s = jobs.deadline_in(time.monotonic())
                try:
                    item = await asyncio.wait_for(items.get(), wait_s)
                except TimeoutError:
                    continue  # a deadline: the next deadline_in raises its timeout
                # The hub opens the watch again after an error by itself.
                take(jobs, item, time.monotonic(), on_update)
        finally:
            self._hub.leave(member)

    async def close(self) -> None:
        """End shared watches and polls, and close the channel if this client opened it.

        Safe to call twice.
        """
        await self._hub.close()
        if self._batcher is not None:
            await self._batcher.close()
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
