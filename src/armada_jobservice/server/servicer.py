"""The ``jobservice.JobService`` gRPC API, answered from the cache.

A poll of a subscribed job set is a dictionary lookup with no ``await`` and no
database access. Bad input is INVALID_ARGUMENT naming the field; every other
problem is a CONNECTION_ERR answer with its reason, never a gRPC error, since
existing clients keep polling on CONNECTION_ERR and give up on errors. The
exceptions are the caller's own: unknown credentials (UNAUTHENTICATED), a
queue outside its scope (PERMISSION_DENIED, decided before the job set is
looked at) and its per-identity limits (RESOURCE_EXHAUSTED), see ``auth``.

``GetJobStatuses`` (``server/batch.py``) and ``WatchJobs`` (``server/watch.py``)
go through the same ``identify``, ``open`` and ``answer`` as ``GetJobStatus``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError

from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice._wire import WireState
from armada_jobservice.server.auth import ANONYMOUS, GET_JOB_STATUS, Access
from armada_jobservice.server.backfill import Backfill
from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.limits import IdentityLimits
from armada_jobservice.server.loader import JobSetLoader
from armada_jobservice.server.metrics import Metrics
from armada_jobservice.server.model import MAX_JOB_ID_BYTES, MAX_JOB_SET_KEY_BYTES, JobSetKey
from armada_jobservice.server.refusals import Reason, Refusals
from armada_jobservice.server.subscriptions import SubscriptionLimitReached, SubscriptionManager

if TYPE_CHECKING:
    from armada_jobservice.server.watch import JobWatches

MAX_ID_LENGTH = 1024

_Request = jobservice_pb2.JobServiceRequest
_Response = jobservice_pb2.JobServiceResponse
_SERVICE = jobservice_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
_CONNECTION_ERR = int(WireState.CONNECTION_ERR)
_NOT_FOUND = int(WireState.JOB_ID_NOT_FOUND)
_PLAIN = tuple(_Response(state=int(s)) for s in WireState)  # type: ignore[arg-type]


def _invalid_id(name: str, value: str) -> str | None:
    if not value:
        return f"{name} must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"{name} is longer than {MAX_ID_LENGTH} characters ({len(value)})"
    if "\0" in value:
        # No Armada name holds one, and PostgreSQL cannot store one.
        return f"{name} must not contain NUL characters"
    return None


def invalid_job_id(job_id: str, name: str = "job_id") -> str | None:
    """Why *job_id* cannot be asked about, naming it as *name*, or None when it is fine."""
    problem = _invalid_id(name, job_id)
    if problem is None and len(job_id) > MAX_JOB_ID_BYTES // 4:
        size = len(job_id.encode())
        if size > MAX_JOB_ID_BYTES:
            return f"{name} is longer than {MAX_JOB_ID_BYTES} bytes in UTF-8 ({size})"
    return problem


def invalid_field(queue: str, job_set_id: str, job_id: str) -> str | None:
    """Why a request cannot be answered, naming the field, or None when it is fine."""
    for name, value in (("queue", queue), ("job_set_id", job_set_id), ("job_id", job_id)):
        problem = _invalid_id(name, value)
        if problem is not None:
            return problem
    problem = invalid_job_id(job_id)
    if problem is not None:
        return problem
    return invalid_job_set(queue, job_set_id)


def invalid_job_set(queue: str, job_set_id: str) -> str | None:
    """Why a (queue, job set) cannot be asked about, naming the field, or None when it is fine."""
    problem = _invalid_id("queue", queue) or _invalid_id("job_set_id", job_set_id)
    if problem is not None:
        return problem
    size = len(queue.encode()) + len(job_set_id.encode())
    if size > MAX_JOB_SET_KEY_BYTES:
        return (
            f"queue and job_set_id are together longer than {MAX_JOB_SET_KEY_BYTES} "
            f"bytes in UTF-8 ({size})"
        )
    return None


def check_ids(queue: str, job_set_id: str, job_id: str) -> str | None:
    """``invalid_field``, after a test cheap enough for every poll that passes ordinary ids."""
    if (
        not (queue and job_set_id and job_id)
        or len(queue) > MAX_ID_LENGTH
        or len(job_set_id) > MAX_ID_LENGTH
        or len(job_id) > MAX_ID_LENGTH
        or "\0" in queue
        or "\0" in job_set_id
        or "\0" in job_id
        # Only ids this long can be too long in bytes (4 bytes per character at most).
        or len(job_id) > MAX_JOB_ID_BYTES // 4
        or len(queue) + len(job_set_id) > MAX_JOB_SET_KEY_BYTES // 4
    ):
        return invalid_field(queue, job_set_id, job_id)
    return None


def parser(message: Any) -> Callable[[bytes], Any]:
    """A deserializer of *message* that gives None for bytes it cannot parse (bad UTF-8)."""
    from_string = message.FromString

    def parse(data: bytes) -> Any:
        try:
            return from_string(data)
        except DecodeError:
            return None

    return parse


parse_request = parser(_Request)


def add_to_server(servicer: JobServiceServicer, server: grpc.aio.Server) -> None:
    """Serve *servicer*'s rpcs; a request that cannot be parsed reaches it as None."""
    # Imported here: both modules build on this one.
    from armada_jobservice.server.batch import BatchStatuses
    from armada_jobservice.server.watch import JobWatches

    batch, watches = BatchStatuses(servicer), JobWatches(servicer)
    servicer.watches = watches
    handler = grpc.unary_unary_rpc_method_handler
    handlers = {
        "GetJobStatus": handler(servicer.GetJobStatus, parse_request, _Response.SerializeToString),
        "Health": handler(
            servicer.Health,
            empty_pb2.Empty.FromString,
            jobservice_pb2.HealthCheckResponse.SerializeToString,
        ),
        "GetJobStatuses": handler(
            batch.GetJobStatuses,
            parser(jobservice_pb2.JobStatusesRequest),
            jobservice_pb2.JobStatusesResponse.SerializeToString,
        ),
        "WatchJobs": grpc.unary_stream_rpc_method_handler(
            watches.WatchJobs,
            parser(jobservice_pb2.WatchJobsRequest),
            jobservice_pb2.JobStatusUpdate.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    server.add_registered_method_handlers(_SERVICE, handlers)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a job set could not be opened: the text, and the job set if cached anyway.

    ``limit`` is set when the caller's own per-identity limit refused it:
    polls of jobs not cached as ended are then refused (RESOURCE_EXHAUSTED).
    """

    text: str
    job_set: JobSet | None
    limit: tuple[str, str] | None = None

    def ended(self, job_id: str) -> bool:
        """Whether *job_id* is cached as ended: it is answered whatever the refusal."""
        js = self.job_set
        return js is not None and js.loaded and js.is_terminal(job_id)

    def answer(self, job_id: str) -> tuple[int, str]:
        """What a poll of *job_id* answers: its end if cached, CONNECTION_ERR otherwise."""
        if self.job_set is not None and self.ended(job_id):
            return self.job_set.lookup(job_id)
        return _CONNECTION_ERR, self.text


class JobServiceServicer(jobservice_pb2_grpc.JobServiceServicer):
    """Answers ``GetJobStatus`` from the cache and ``Health`` from the service's state."""

    def __init__(
        self,
        subscriptions: SubscriptionManager,
        loader: JobSetLoader,
        metrics: Metrics,
        is_serving: Callable[[], bool],
        connection_error_grace_s: float,
        access: Access | None = None,
        limits: IdentityLimits | None = None,
        refusals: Refusals | None = None,
        backfill: Backfill | None = None,
    ) -> None:
        self._subs = subscriptions
        #: Asks Armada's query API about jobs unknown once their stream caught up.
        self._backfill = backfill if backfill is not None and backfill.enabled else None
        self._access = access
        self._limits = limits if limits is not None and limits.enabled else None
        self._refusals = refusals if refusals is not None else Refusals()
        self._loader = loader
        self._job_sets = subscriptions.job_sets
        self._polls = metrics.polls_by_state
        self._is_serving = is_serving
        self.grace_s = connection_error_grace_s
        self.metrics = metrics
        #: The open watches (``server/watch.py``), set by ``add_to_server``.
        self.watches: JobWatches | None = None

    async def GetJobStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Answer the cached state of one job, subscribing to its job set on first sight."""
        if request is None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "not a JobServiceRequest: queue, job_set_id and job_id must be UTF-8",
            )
        self.metrics.calls_by_method["GetJobStatus"] += 1
        # Each protobuf field read costs; read each once.
        queue, job_set_id, job_id = request.queue, request.job_set_id, request.job_id
        problem = check_ids(queue, job_set_id, job_id)
        identity = ANONYMOUS
        access = self._access
        if access is not None:
            # Before the job set is looked at: a refusal says nothing about it.
            outcome = access.decide(context, None if problem is not None else queue)
            identity = (
                outcome
                if isinstance(outcome, str)
                else await access.settle(outcome, context, queue)
            )
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        now = time.monotonic()
        # A plain tuple: equal to (and hashed as) the JobSetKey the dict holds,
        # without a NamedTuple construction per poll.
        key = (queue, job_set_id)
        js = self._job_sets.get(key)  # type: ignore[call-overload]
        if js is None or not js.live:
            opened = await self.open(JobSetKey(*key), now, identity)
            if isinstance(opened, Refusal):
                if opened.limit is not None and not opened.ended(job_id):
                    await self.refuse_limit(opened.limit, identity, queue, context, GET_JOB_STATUS)
                return self.answer(*opened.answer(job_id))
            js = opened
        return self.answer_poll(js, job_id, now)

    def answer_poll(self, js: JobSet, job_id: str, now: float) -> Any:
        """The response to a poll of *job_id* in *js*; a job not found may be backfilled."""
        state, error = js.poll(job_id, now, self.grace_s)
        if state == _NOT_FOUND and self._backfill is not None:
            self._backfill.note(js, job_id, now)
        return self.answer(state, error)

    def note_missing(self, js: JobSet, job_id: str, now: float) -> None:
        """A watch found *job_id* not cached: the backfill may ask Armada for it, as for a poll."""
        if self._backfill is not None:
            self._backfill.note(js, job_id, now)

    async def identify(
        self, context: Any, queues: list[str], method: str, *, valid: bool = True
    ) -> str:
        """The caller's identity, once it may ask about every one of *queues*.

        Refuses the call (its audit line, its status) for the first queue it
        may not ask about; with ``valid`` false (the request will be refused
        as invalid) it only authenticates.
        """
        access = self._access
        if access is None:
            return ANONYMOUS
        identity = ANONYMOUS
        first = queues[0] if queues else ""
        # No queue to check (bad input, an empty batch): authenticate only.
        checked: list[str | None] = list(dict.fromkeys(queues)) if valid and queues else [None]
        for queue in checked:
            outcome = access.decide(context, queue)
            identity = (
                outcome
                if isinstance(outcome, str)
                else await access.settle(outcome, context, queue or first, method)
            )
        return identity

    def open_now(self, key: JobSetKey, now: float, identity: str) -> JobSet | Refusal:
        """Subscribe to *key* for *identity* (charging its limits), without waiting for the load.

        Synchronous, as ``SubscriptionManager.subscribe`` is: concurrent first
        polls share one stream, and each identity's count is exact.
        """
        js = self._job_sets.get(key)
        opening = js is None or js.stream is None
        limits = self._limits
        if opening and limits is not None:
            refused = limits.refusal(identity, now)
            if refused is not None:
                return Refusal(refused[1], js, refused)
        try:
            js = self._subs.subscribe(key, now)
        except SubscriptionLimitReached as exc:
            return Refusal(str(exc), js)
        if opening and limits is not None:
            limits.opened(identity, js, now)
        return js

    async def open(self, key: JobSetKey, now: float, identity: str) -> JobSet | Refusal:
        """The job set of a first poll, subscribed and loaded, or why it cannot be."""
        opened = self.open_now(key, now, identity)
        if isinstance(opened, Refusal):
            return opened
        return await self.loaded(opened)

    async def loaded(self, js: JobSet) -> JobSet | Refusal:
        """*js* once its stored jobs are in memory, or why they cannot be read."""
        try:
            await self._loader.ensure_loaded(js)
        except StoreError as exc:
            return Refusal(f"job service database: {exc}", None)
        return js

    async def refuse_limit(
        self, refused: tuple[str, str], identity: str, queue: str, context: Any, method: str
    ) -> NoReturn:
        """Refuse the call for the caller's own subscription limit (RESOURCE_EXHAUSTED)."""
        kind, text = refused
        reason = Reason.SUBSCRIPTION_COUNT if kind == "count" else Reason.SUBSCRIPTION_RATE
        self._refusals.record(
            reason,
            identity=identity,
            method=method,
            queue=queue,
            peer=context.peer(),
            detail=text,
        )
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, text)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

    def answer(self, state: int, error: str) -> Any:
        """The response for a poll's answer (counted by state)."""
        self._polls[state] += 1
        if not error:
            # Responses are only serialised, never changed: share one per state.
            return _PLAIN[state]
        return _Response(state=state, error=error)  # type: ignore[arg-type]

    async def Health(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """SERVING while the service runs and its database answers, NOT_SERVING otherwise."""
        status = (
            jobservice_pb2.HealthCheckResponse.SERVING
            if self._is_serving()
            else jobservice_pb2.HealthCheckResponse.NOT_SERVING
        )
        return jobservice_pb2.HealthCheckResponse(status=status)
