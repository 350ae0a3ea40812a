"""The blocking job-service client."""

from __future__ import annotations

import queue as queues
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import empty_pb2

from armada_jobservice._channel import DEFAULT_TARGET, ChannelOptions, sync_channel, translate
from armada_jobservice._exceptions import ProtocolError, TransportError, is_transient
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
    END,
    UpdateCallback,
    WatchItem,
    WatchUnsupported,
    is_unimplemented,
    take,
)
from armada_jobservice._wire import MAX_JOBS_PER_CALL

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


def update_from_wire(message: jobservice_pb2.JobStatusUpdate) -> JobUpdate:
    """Turn a ``WatchJobs`` message into a ``JobUpdate`` (``ProtocolError`` on a bad state)."""
    try:
        return JobUpdate.from_proto(message)
    except ValueError as exc:
        raise ProtocolError(f"the job service sent an unknown state {message.state}") from exc


def statuses_request(refs: list[JobRef]) -> jobservice_pb2.JobStatusesRequest:
    """The ``GetJobStatuses`` request for *refs*."""
    return jobservice_pb2.JobStatusesRequest(
        jobs=[jobservice_pb2.JobServiceRequest(queue=q, job_set_id=s, job_id=j) for q, s, j in refs]
    )


def statuses_from_response(
    response: jobservice_pb2.JobStatusesResponse, asked: int
) -> list[JobStatus]:
    """The statuses of a ``GetJobStatuses`` answer, which must hold one per job asked."""
    if len(response.statuses) != asked:
        raise ProtocolError(
            f"the job service answered {len(response.statuses)} statuses for {asked} jobs"
        )
    return [status_from_response(r) for r in response.statuses]


def chunks(refs: list[JobRef]) -> Iterator[list[JobRef]]:
    """*refs* in runs of at most ``MAX_JOBS_PER_CALL``, the most one call may name."""
    for start in range(0, len(refs), MAX_JOBS_PER_CALL):
        yield refs[start : start + MAX_JOBS_PER_CALL]


def watch_request(queue: str, job_set_id: str, job_ids: Iterable[str]) -> Any:
    """The ``WatchJobs`` request of a job set's listed jobs (none listed: every job)."""
    return jobservice_pb2.WatchJobsRequest(
        queue=queue, job_set_id=job_set_id, job_ids=list(job_ids)
    )


class _Pump:
    """Reads a watch on a thread, so that the waiting thread can wake at its deadlines."""

    def __init__(self, call: Any, what: str) -> None:
        self._call = call
        self._what = what
        self.items: queues.SimpleQueue[WatchItem] = queues.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="jobservice watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for message in self._call:
                self.items.put(update_from_wire(message))
        except grpc.RpcError as exc:
            self.items.put(translate(exc, self._what))
        except ProtocolError as exc:
            self.items.put(exc)
        else:
            self.items.put(END)

    def close(self) -> None:
        """Cancel the call and let the thread end."""
        self._call.cancel()
        self._thread.join(timeout=5)


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
        # Cleared when the service answers UNIMPLEMENTED: it is older than these rpcs.
        self._batches = True
        self._watches = True

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

    def get_job_statuses(
        self, jobs: Iterable[tuple[str, str, str]], *, timeout_s: float | None = None
    ) -> list[JobStatus]:
        """Ask for many jobs' states, each a (queue, job set id, job id), in as few calls as may be.

        Answers come in the order asked. Jobs may belong to different job
        sets. A service older than ``GetJobStatuses`` is asked one job at a
        time instead. Raises a ``TransportError`` when no answer comes.
        """
        refs = [JobRef(*job) for job in jobs]
        if len(refs) == 1:
            return [self.get_job_status(*refs[0], timeout_s=timeout_s)]
        statuses: list[JobStatus] = []
        for chunk in chunks(refs):
            if self._batches:
                try:
                    response = self._stub.GetJobStatuses(
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
            statuses.extend(self.get_job_status(*ref, timeout_s=timeout_s) for ref in chunk)
        return statuses

    def watch_jobs(
        self,
        queue: str,
        job_set_id: str,
        job_ids: Iterable[str] = (),
        *,
        timeout_s: float | None = None,
    ) -> Iterator[JobUpdate]:
        """Iterate over the jobs' states now, then over each change, as the service applies it.

        With *job_ids* the iteration ends once each has ended; without, it
        follows every job of the job set until the caller stops (or
        *timeout_s* passes: ``CallTimeout``). Closing the iterator ends the
        call. Raises a ``TransportError`` (``RPCError`` with code
        ``UNIMPLEMENTED`` from a service older than the watch).
        """
        what = f"WatchJobs {queue}/{job_set_id}"
        call = self._stub.WatchJobs(watch_request(queue, job_set_id, job_ids), timeout=timeout_s)
        try:
            for message in call:
                yield update_from_wire(message)
        except grpc.RpcError as exc:
            raise translate(exc, what) from exc
        finally:
            call.cancel()

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
        """Wait until the job ends and return its terminal status, or raise a ``WaitTimeout``.

        Watches the job, or polls every *poll_interval_s* when the service is
        older than the watch; *on_status* sees every status received.
        """
        results = self.wait_for_jobs(
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

    def wait_for_jobs(
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

        Watches the jobs, or polls them every *poll_interval_s* (in batches)
        when the service is older than the watch. The timeouts are those of
        ``wait_for_job``, per job; the first to run out raises its
        ``WaitTimeout``. *on_update* sees every status received.
        """
        policy = WaitPolicy(
            poll_interval_s, not_found_timeout_s, connection_error_timeout_s, timeout_s
        )
        jobs = JobsWaiter(policy, queue, job_set_id, job_ids, time.monotonic())
        if self._watches:
            try:
                self._watch_until_done(jobs, queue, job_set_id, on_update)
            except WatchUnsupported:
                self._watches = False
        while not jobs.finished:
            remaining = jobs.remaining
            try:
                statuses = self.get_job_statuses([(queue, job_set_id, j) for j in remaining])
            except TransportError as exc:
                if not is_transient(exc):
                    raise
                delay = jobs.on_error(exc, time.monotonic())
            else:
                now = time.monotonic()
                for job_id, status in zip(remaining, statuses, strict=True):
                    if on_update is not None:
                        on_update(JobUpdate(job_id, status))
                    delay = jobs.on_status(job_id, status, now)
                if jobs.finished:
                    break
            time.sleep(delay)
        return jobs.results()

    def _watch_until_done(
        self, jobs: JobsWaiter, queue: str, job_set_id: str, on_update: UpdateCallback | None
    ) -> None:
        while not jobs.finished:
            request = watch_request(queue, job_set_id, jobs.remaining)
            pump = _Pump(self._stub.WatchJobs(request), f"WatchJobs {queue}/{job_set_id}")
            delay = None
            try:
                while not jobs.finished and delay is None:
                    try:
                        item = pump.items.get(timeout=jobs.deadline_in(time.monotonic()))
                    except queues.Empty:
                        continue  # a deadline: the next deadline_in raises its timeout
                    delay = take(jobs, item, time.monotonic(), on_update)
            finally:
                pump.close()
            if delay is not None:
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
