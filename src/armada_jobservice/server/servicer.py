"""The ``jobservice.JobService`` gRPC API, answered from the cache.

A poll of a subscribed job set is a dictionary lookup with no ``await`` and no
database access. Bad input is INVALID_ARGUMENT naming the field; every other
problem is a CONNECTION_ERR answer with its reason, never a gRPC error, since
existing clients keep polling on CONNECTION_ERR and give up on errors. The
exceptions are the caller's own: unknown credentials (UNAUTHENTICATED), a
queue outside its scope (PERMISSION_DENIED, decided before the job set is
looked at) and its per-identity limits (RESOURCE_EXHAUSTED), see ``auth``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError

from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice._wire import WireState
from armada_jobservice.server.auth import ANONYMOUS, GET_JOB_STATUS, Access
from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.limits import IdentityLimits
from armada_jobservice.server.loader import JobSetLoader
from armada_jobservice.server.metrics import Metrics
from armada_jobservice.server.model import MAX_JOB_ID_BYTES, MAX_JOB_SET_KEY_BYTES, JobSetKey
from armada_jobservice.server.refusals import Reason, Refusals
from armada_jobservice.server.subscriptions import SubscriptionLimitReached, SubscriptionManager

MAX_ID_LENGTH = 1024

_Request = jobservice_pb2.JobServiceRequest
_Response = jobservice_pb2.JobServiceResponse
_SERVICE = jobservice_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
_CONNECTION_ERR = int(WireState.CONNECTION_ERR)
_PLAIN = tuple(_Response(state=int(s)) for s in WireState)  # type: ignore[arg-type]


def invalid_field(queue: str, job_set_id: str, job_id: str) -> str | None:
    """Why a request cannot be answered, naming the field, or None when it is fine."""
    for name, value in (("queue", queue), ("job_set_id", job_set_id), ("job_id", job_id)):
        if not value:
            return f"{name} must not be empty"
        if len(value) > MAX_ID_LENGTH:
            return f"{name} is longer than {MAX_ID_LENGTH} characters ({len(value)})"
        if "\0" in value:
            # No Armada name holds one, and PostgreSQL cannot store one.
            return f"{name} must not contain NUL characters"
    size = len(job_id.encode())
    if size > MAX_JOB_ID_BYTES:
        return f"job_id is longer than {MAX_JOB_ID_BYTES} bytes in UTF-8 ({size})"
    size = len(queue.encode()) + len(job_set_id.encode())
    if size > MAX_JOB_SET_KEY_BYTES:
        return (
            f"queue and job_set_id are together longer than {MAX_JOB_SET_KEY_BYTES} "
            f"bytes in UTF-8 ({size})"
        )
    return None


def parse_request(data: bytes) -> Any:
    """The request in *data*, or None when the bytes are no ``JobServiceRequest`` (bad UTF-8)."""
    try:
        return _Request.FromString(data)
    except DecodeError:
        return None


def add_to_server(servicer: JobServiceServicer, server: grpc.aio.Server) -> None:
    """Serve *servicer*'s rpcs; a request that cannot be parsed reaches it as None."""
    handler = grpc.unary_unary_rpc_method_handler
    handlers = {
        "GetJobStatus": handler(servicer.GetJobStatus, parse_request, _Response.SerializeToString),
        "Health": handler(
            servicer.Health,
            empty_pb2.Empty.FromString,
            jobservice_pb2.HealthCheckResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    server.add_registered_method_handlers(_SERVICE, handlers)


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
    ) -> None:
        self._subs = subscriptions
        self._access = access
        self._limits = limits if limits is not None and limits.enabled else None
        self._refusals = refusals if refusals is not None else Refusals()
        self._loader = loader
        self._job_sets = subscriptions.job_sets
        self._polls = metrics.polls_by_state
        self._is_serving = is_serving
        self._grace_s = connection_error_grace_s

    async def GetJobStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Answer the cached state of one job, subscribing to its job set on first sight."""
        if request is None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "not a JobServiceRequest: queue, job_set_id and job_id must be UTF-8",
            )
        # Each protobuf field read costs; read each once.
        queue, job_set_id, job_id = request.queue, request.job_set_id, request.job_id
        suspicious = (
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
        )
        # Suspicious requests may still be valid: only the full check says.
        problem = invalid_field(queue, job_set_id, job_id) if suspicious else None
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
            opening = js is None or js.stream is None
            limits = self._limits
            try:
                if opening and limits is not None:
                    refused = limits.refusal(identity, now)
                    if refused is not None:
                        if js is not None and js.loaded and js.is_terminal(job_id):
                            return self._answer(*js.lookup(job_id))
                        await self._refuse_limit(refused, identity, queue, context)
                js = self._subs.subscribe(JobSetKey(*key), now)
                if opening and limits is not None:
                    limits.opened(identity, js, now)
                await self._loader.ensure_loaded(js)
            except SubscriptionLimitReached as exc:
                if js is not None and js.loaded and js.is_terminal(job_id):
                    return self._answer(*js.lookup(job_id))
                return self._answer(_CONNECTION_ERR, str(exc))
            except StoreError as exc:
                return self._answer(_CONNECTION_ERR, f"job service database: {exc}")
        return self._answer(*js.poll(job_id, now, self._grace_s))

    async def _refuse_limit(
        self, refused: tuple[str, str], identity: str, queue: str, context: Any
    ) -> None:
        kind, text = refused
        reason = Reason.SUBSCRIPTION_COUNT if kind == "count" else Reason.SUBSCRIPTION_RATE
        self._refusals.record(
            reason,
            identity=identity,
            method=GET_JOB_STATUS,
            queue=queue,
            peer=context.peer(),
            detail=text,
        )
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, text)

    def _answer(self, state: int, error: str) -> Any:
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
