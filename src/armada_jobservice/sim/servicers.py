"""The gRPC face of the simulator: Armada's generated servicers, implemented.

Status codes follow Armada's server: SubmitJobs on a queue that does not
exist (or that the caller may not use) is PERMISSION_DENIED, a malformed
request is INVALID_ARGUMENT, GetJobSetEvents on an unknown queue, or on an
unknown job set with ``errorIfMissing``, is NOT_FOUND. Every rpc first passes
the fault gate (outage: UNAVAILABLE; denied queue: PERMISSION_DENIED) and,
with per-caller permissions, Armada's authentication (an unknown or missing
bearer token: UNAUTHENTICATED) and, on the calls Armada authorises per queue,
its queue check (a queue outside the token's patterns: PERMISSION_DENIED).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

import grpc
from armada_client.armada import (
    event_pb2,
    event_pb2_grpc,
    health_pb2,
    job_pb2,
    job_pb2_grpc,
    submit_pb2,
    submit_pb2_grpc,
)
from google.protobuf import empty_pb2

from armada_jobservice._scopes import bearer_token
from armada_jobservice.sim.eventlog import MessageIdError, parse_message_id
from armada_jobservice.sim.lifecycle import JobPhase, PlanError

if TYPE_CHECKING:
    from armada_jobservice.sim.simulator import ArmadaSimulator

# grpc ships no type information, so its context is Any to mypy anyway.
Context: TypeAlias = Any

_MAX_JOB_SET_ID = 1024
_MAX_CLIENT_ID = 100

# api.JobState values of a CancelJobSet filter, mapped to the simulator's states.
_FILTER_STATES = {
    submit_pb2.QUEUED: (JobPhase.SUBMITTED, JobPhase.QUEUED),
    submit_pb2.PENDING: (JobPhase.LEASED, JobPhase.PENDING),
    submit_pb2.RUNNING: (JobPhase.RUNNING,),
}


async def _abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


class _Base:
    def __init__(self, sim: ArmadaSimulator) -> None:
        self._sim = sim

    async def _gate(self, context: Context, queue: str | None = None) -> None:
        faults = self._sim.faults
        if faults.unavailable:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, "armada-sim: injected outage")
        permissions = self._sim.permissions
        if permissions is not None:
            token = bearer_token(context.invocation_metadata())
            scope = None if token is None else permissions.lookup(token)
            if scope is None:
                await _abort(
                    context, grpc.StatusCode.UNAUTHENTICATED, "armada-sim: unknown bearer token"
                )
            if queue is not None and not scope.allows(queue):
                await _abort(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"user {scope.identity!r} lacks permission on queue {queue!r}",
                )
        if queue is not None and queue in faults.denied_queues:
            await _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"user {self._sim.engine.requestor!r} lacks permission on queue "
                f"{queue!r} (armada-sim: injected)",
            )

    async def _authorize_queue(self, context: Context, queue: str, code: grpc.StatusCode) -> None:
        await self._gate(context, queue)
        if queue not in self._sim.engine.queues:
            await _abort(context, code, f"queue {queue!r} does not exist")

    async def _validate_queue_and_job_set(
        self, context: Context, queue: str, job_set_id: str
    ) -> None:
        if not queue:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "queue cannot be empty")
        if not job_set_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "jobset cannot be empty")


class _QueueMethods(_Base):
    """Queue CRUD, shared by ``api.Submit`` (deprecated there) and ``api.QueueService``."""

    async def CreateQueue(self, request: submit_pb2.Queue, context: Context) -> empty_pb2.Empty:
        """Create a queue; ALREADY_EXISTS if it does, INVALID_ARGUMENT without a name."""
        await self._gate(context)
        await self._create(request, context)
        return empty_pb2.Empty()

    async def _create(self, request: submit_pb2.Queue, context: Context) -> None:
        if not request.name:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "error validating queue: queue name must not be empty",
            )
        if request.name in self._sim.engine.queues:
            await _abort(
                context,
                grpc.StatusCode.ALREADY_EXISTS,
                f"error creating queue: queue {request.name!r} already exists",
            )
        self._sim.engine.create_queue(request)

    async def CreateQueues(
        self, request: submit_pb2.QueueList, context: Context
    ) -> submit_pb2.BatchQueueCreateResponse:
        """Create several queues, reporting the ones that failed."""
        await self._gate(context)
        failed = []
        for queue in request.queues:
            if not queue.name or queue.name in self._sim.engine.queues:
                failed.append(
                    submit_pb2.QueueCreateResponse(
                        queue=queue, error=f"queue {queue.name!r} is invalid or already exists"
                    )
                )
            else:
                self._sim.engine.create_queue(queue)
        return submit_pb2.BatchQueueCreateResponse(failed_queues=failed)

    async def UpdateQueue(self, request: submit_pb2.Queue, context: Context) -> empty_pb2.Empty:
        """Replace a queue's settings; NOT_FOUND if it does not exist."""
        await self._gate(context)
        if request.name not in self._sim.engine.queues:
            await _abort(
                context, grpc.StatusCode.NOT_FOUND, f"error: queue {request.name!r} does not exist"
            )
        self._sim.engine.create_queue(request)
        return empty_pb2.Empty()

    async def UpdateQueues(
        self, request: submit_pb2.QueueList, context: Context
    ) -> submit_pb2.BatchQueueUpdateResponse:
        """Update several queues, reporting the ones that failed."""
        await self._gate(context)
        failed = []
        for queue in request.queues:
            if queue.name not in self._sim.engine.queues:
                failed.append(
                    submit_pb2.QueueUpdateResponse(
                        queue=queue, error=f"queue {queue.name!r} does not exist"
                    )
                )
            else:
                self._sim.engine.create_queue(queue)
        return submit_pb2.BatchQueueUpdateResponse(failed_queues=failed)

    async def DeleteQueue(
        self, request: submit_pb2.QueueDeleteRequest, context: Context
    ) -> empty_pb2.Empty:
        """Delete a queue; deleting a missing queue succeeds, as in Armada."""
        await self._gate(context)
        self._sim.engine.delete_queue(request.name)
        return empty_pb2.Empty()

    async def GetQueue(
        self, request: submit_pb2.QueueGetRequest, context: Context
    ) -> submit_pb2.Queue:
        """Return a queue; NOT_FOUND if it does not exist."""
        await self._gate(context)
        queue = self._sim.engine.queues.get(request.name)
        if queue is None:
            await _abort(
                context, grpc.StatusCode.NOT_FOUND, f"error: queue {request.name!r} does not exist"
            )
        return queue

    async def GetQueues(
        self, request: submit_pb2.StreamingQueueGetRequest, context: Context
    ) -> AsyncIterator[submit_pb2.StreamingQueueMessage]:
        """Stream the queues (at most ``num`` if set), then an end marker."""
        await self._gate(context)
        limit = request.num or len(self._sim.engine.queues)
        for queue in list(self._sim.engine.queues.values())[:limit]:
            yield submit_pb2.StreamingQueueMessage(queue=queue)
        yield submit_pb2.StreamingQueueMessage(end=submit_pb2.EndMarker())


class QueueServicer(_QueueMethods, submit_pb2_grpc.QueueServiceServicer):
    """``api.QueueService``: the queue API the armada-client uses."""


class SubmitServicer(_QueueMethods, submit_pb2_grpc.SubmitServicer):
    """``api.Submit``: submission, cancellation, preemption and (deprecated) queues."""

    async def SubmitJobs(
        self, request: submit_pb2.JobSubmitRequest, context: Context
    ) -> submit_pb2.JobSubmitResponse:
        """Validate like Armada, create the jobs and start their lifecycle."""
        # Armada authorises against the queue before validating the request,
        # and reports a missing queue as a permission failure.
        await self._authorize_queue(context, request.queue, grpc.StatusCode.PERMISSION_DENIED)
        message = self._invalid(request)
        if message:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, message)
        engine = self._sim.engine
        try:
            plans = [engine.plan(item.annotations) for item in request.job_request_items]
        except PlanError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        items = []
        for item, plan in zip(request.job_request_items, plans, strict=True):
            key = (request.queue, item.client_id)
            original = self._sim.client_ids.get(key) if item.client_id else None
            if original is not None:
                items.append(submit_pb2.JobSubmitResponseItem(job_id=original))
                continue
            job = engine.submit(request.queue, request.job_set_id, plan, item)
            if item.client_id:
                self._sim.client_ids[key] = job.job_id
            items.append(submit_pb2.JobSubmitResponseItem(job_id=job.job_id))
        return submit_pb2.JobSubmitResponse(job_response_items=items)

    def _in_job_set(self, job_id: str, queue: str, job_set_id: str) -> bool:
        job = self._sim.engine.jobs.get(job_id)
        return job is not None and job.queue == queue and job.job_set_id == job_set_id

    @staticmethod
    def _invalid(request: submit_pb2.JobSubmitRequest) -> str:
        if not request.job_set_id:
            return "job set id is a required field"
        if len(request.job_set_id) >= _MAX_JOB_SET_ID:
            return (
                f"job set id of length {len(request.job_set_id)} must be less than max "
                f"character length {_MAX_JOB_SET_ID}"
            )
        for item in request.job_request_items:
            has_spec = item.HasField("pod_spec")
            if not has_spec and len(item.pod_specs) == 0:
                return "Job must contain at least one PodSpec"
            if has_spec and len(item.pod_specs) > 0:
                return "PodSpec must be nil if PodSpecs is provided (i.e., these are exclusive)"
            if len(item.pod_specs) > 1:
                return "Jobs with multiple pods are not supported"
            if len(item.client_id) > _MAX_CLIENT_ID:
                return (
                    f"client id of length {len(item.client_id)} is greater than max "
                    f"allowed length of {_MAX_CLIENT_ID}"
                )
        return ""

    async def CancelJobs(
        self, request: submit_pb2.JobCancelRequest, context: Context
    ) -> submit_pb2.CancellationResult:
        """Cancel the given jobs; with no job id, the whole job set (as Armada does)."""
        single = [request.job_id] if request.job_id else []
        job_ids = list(dict.fromkeys([*request.job_ids, *single]))
        if not job_ids:
            await self.CancelJobSet(
                submit_pb2.JobSetCancelRequest(
                    queue=request.queue, job_set_id=request.job_set_id, reason=request.reason
                ),
                context,
            )
            return submit_pb2.CancellationResult(cancelled_ids=[request.job_id])
        await self._validate_queue_and_job_set(context, request.queue, request.job_set_id)
        await self._authorize_queue(context, request.queue, grpc.StatusCode.NOT_FOUND)
        for job_id in job_ids:
            if self._in_job_set(job_id, request.queue, request.job_set_id):
                self._sim.engine.cancel(job_id, reason=request.reason)
        # Armada answers with every id it was asked to cancel, known or not.
        return submit_pb2.CancellationResult(cancelled_ids=job_ids)

    async def CancelJobSet(
        self, request: submit_pb2.JobSetCancelRequest, context: Context
    ) -> empty_pb2.Empty:
        """Cancel a job set's live jobs, optionally only those in the filter's states."""
        await self._validate_queue_and_job_set(context, request.queue, request.job_set_id)
        wanted = set(request.filter.states)
        if (submit_pb2.PENDING in wanted) != (submit_pb2.RUNNING in wanted):
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "unsupported state combination - state PENDING and RUNNING must always "
                "be used together",
            )
        await self._authorize_queue(context, request.queue, grpc.StatusCode.NOT_FOUND)
        states = [s for api_state in wanted for s in _FILTER_STATES.get(api_state, ())]
        if wanted and not states:
            return empty_pb2.Empty()
        self._sim.engine.cancel_job_set(
            request.queue, request.job_set_id, states, reason=request.reason
        )
        return empty_pb2.Empty()

    async def PreemptJobs(
        self, request: submit_pb2.JobPreemptRequest, context: Context
    ) -> submit_pb2.PreemptionResult:
        """Preempt the given live jobs of a job set."""
        await self._validate_queue_and_job_set(context, request.queue, request.job_set_id)
        await self._authorize_queue(context, request.queue, grpc.StatusCode.NOT_FOUND)
        for job_id in request.job_ids:
            if self._in_job_set(job_id, request.queue, request.job_set_id):
                self._sim.engine.preempt(job_id, reason=request.reason)
        return submit_pb2.PreemptionResult(preemption_results={j: "" for j in request.job_ids})

    async def ReprioritizeJobs(
        self, request: submit_pb2.JobReprioritizeRequest, context: Context
    ) -> submit_pb2.JobReprioritizeResponse:
        """Record a new priority (reprioritizing, reprioritized events); scheduling ignores it."""
        await self._validate_queue_and_job_set(context, request.queue, request.job_set_id)
        await self._authorize_queue(context, request.queue, grpc.StatusCode.NOT_FOUND)
        engine = self._sim.engine
        jobs = (
            [engine.jobs[j] for j in request.job_ids if j in engine.jobs]
            if request.job_ids
            else engine.jobs_in(request.queue, request.job_set_id)
        )
        for job in jobs:
            if job.state is not None and not job.state.terminal:
                for kind in ("reprioritizing", "reprioritized"):
                    engine.emit(
                        job, kind, new_priority=request.new_priority, requestor=engine.requestor
                    )
        keys = list(request.job_ids) or [f"all jobs in job set {request.job_set_id}"]
        return submit_pb2.JobReprioritizeResponse(reprioritization_results={k: "" for k in keys})

    async def Health(
        self, request: empty_pb2.Empty, context: Context
    ) -> health_pb2.HealthCheckResponse:
        """Answer SERVING (or UNAVAILABLE during an injected outage)."""
        await self._gate(context)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


class EventServicer(_Base, event_pb2_grpc.EventServicer):
    """``api.Event``: job-set event streams from the shared logs."""

    async def Watch(
        self, request: event_pb2.WatchRequest, context: Context
    ) -> AsyncIterator[event_pb2.EventStreamMessage]:
        """The deprecated twin of GetJobSetEvents: always watching, errors if missing."""
        as_job_set = event_pb2.JobSetRequest(
            id=request.job_set_id,
            queue=request.queue,
            from_message_id=request.from_id,
            watch=True,
            errorIfMissing=True,
        )
        async for message in self.GetJobSetEvents(as_job_set, context, rpc="Watch"):
            yield message

    async def Health(
        self, request: empty_pb2.Empty, context: Context
    ) -> health_pb2.HealthCheckResponse:
        """Answer SERVING (or UNAVAILABLE during an injected outage)."""
        await self._gate(context)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def GetJobSetEvents(
        self,
        request: event_pb2.JobSetRequest,
        context: Context,
        rpc: str = "GetJobSetEvents",
    ) -> AsyncIterator[event_pb2.EventStreamMessage]:
        """Stream a job set's events after ``from_message_id``; keep going with ``watch``."""
        sim = self._sim
        sim.record_stream_request(request, rpc)
        await self._gate(context, request.queue)
        if request.queue not in sim.engine.queues:
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"[GetJobSetEvents] Queue {request.queue} does not exist",
            )
        if request.errorIfMissing and not sim.event_log.exists(request.queue, request.id):
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"[GetJobSetEvents] Jobset {request.id} for queue {request.queue} does not exist",
            )
        try:
            position = parse_message_id(request.from_message_id)
        except MessageIdError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"[GetJobSetEvents] {exc}")
        log = sim.event_log.log(request.queue, request.id)
        # Without watch, Armada stops after the last event that existed when
        # the call arrived.
        stop = None if request.watch else len(log)
        rule = sim.faults.take_stream_rule(request.queue, request.id)
        handle = sim.open_stream(request, log)
        try:
            if rule is not None and rule.after_events == 0:
                await self._apply_rule(rule.code, context)
                return
            while True:
                if handle.kill is not None:
                    await _abort(context, *handle.kill)
                released = sim.faults.released
                if released is not None:
                    await released.wait()
                    continue
                messages = log.messages
                # The bound is re-read after every send: events appended while
                # a send was suspended must not be left for a wake-up that
                # already happened.
                while position < (len(messages) if stop is None else min(stop, len(messages))):
                    message = messages[position]
                    position += 1
                    if sim.faults.stream_delay_s:
                        await asyncio.sleep(sim.faults.stream_delay_s)
                    yield message
                    handle.sent += 1
                    if handle.kill is not None:
                        await _abort(context, *handle.kill)
                    if rule is not None and handle.sent >= rule.after_events:
                        await self._apply_rule(rule.code, context)
                        return
                if stop is not None:
                    return
                await log.wait()
        finally:
            sim.close_stream(handle)

    @staticmethod
    async def _apply_rule(code: grpc.StatusCode | None, context: Context) -> None:
        if code is not None:
            await _abort(context, code, "armada-sim: injected stream failure")


class JobsServicer(_Base, job_pb2_grpc.JobsServicer):
    """``api.Jobs``: the query API that the armada-airflow operator polls."""

    async def GetJobStatus(
        self, request: job_pb2.JobStatusRequest, context: Context
    ) -> job_pb2.JobStatusResponse:
        """Return each job's state; UNKNOWN for ids the simulator never saw."""
        await self._gate(context)
        jobs = self._sim.engine.jobs
        states: dict[str, Any] = {}
        for job_id in request.job_ids:
            job = jobs.get(job_id)
            states[job_id] = (
                job.state.to_api()
                if job is not None and job.state is not None
                else submit_pb2.UNKNOWN
            )
        return job_pb2.JobStatusResponse(job_states=states)

    async def GetJobErrors(
        self, request: job_pb2.JobErrorsRequest, context: Context
    ) -> job_pb2.JobErrorsResponse:
        """Return each job's failure reason (empty unless it failed)."""
        await self._gate(context)
        jobs = self._sim.engine.jobs
        errors = {}
        for job_id in request.job_ids:
            job = jobs.get(job_id)
            errors[job_id] = job.error if job is not None else ""
        return job_pb2.JobErrorsResponse(job_errors=errors)


def add_servicers(sim: ArmadaSimulator, server: grpc.aio.Server) -> None:
    """Register every simulated Armada service on ``server``."""
    # The generated registration helpers carry no annotations.
    submit_pb2_grpc.add_SubmitServicer_to_server(  # type: ignore[no-untyped-call]
        SubmitServicer(sim), server
    )
    submit_pb2_grpc.add_QueueServiceServicer_to_server(  # type: ignore[no-untyped-call]
        QueueServicer(sim), server
    )
    event_pb2_grpc.add_EventServicer_to_server(  # type: ignore[no-untyped-call]
        EventServicer(sim), server
    )
    job_pb2_grpc.add_JobsServicer_to_server(  # type: ignore[no-untyped-call]
        JobsServicer(sim), server
    )


__all__ = ["EventServicer", "JobsServicer", "QueueServicer", "SubmitServicer", "add_servicers"]
