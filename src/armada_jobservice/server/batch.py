"""``GetJobStatuses``: many polls in one call, each answered as ``GetJobStatus`` answers it.

A unary call costs the server about 200 µs of gRPC whatever it asks; a batch
pays that once for up to ``MAX_BATCH_JOBS`` jobs. Entries may name any job
sets: the first poll of each subscribes it, and the job sets a batch opens are
loaded together (``JobSetLoader`` reads them in one query).

Access is that of ``GetJobStatus`` for every queue the call names (the first
queue the caller may not ask about refuses the whole call), as are the
per-identity limits (a job set the caller's limit keeps out refuses the call
with RESOURCE_EXHAUSTED unless its entries are cached as ended).

Validation is that of ``GetJobStatus``, entry by entry, before anything is
subscribed: one bad entry makes the whole call INVALID_ARGUMENT, naming the
entry (``jobs[3].job_id must not be empty``). A per-entry answer cannot say
"bad request" (the states are fixed by the contract, and CONNECTION_ERR would
make a client retry it forever), and a call with no side effects is the
easiest one to fix and resend.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import grpc

from armada_jobservice._gen import jobservice_pb2
from armada_jobservice._wire import MAX_JOBS_PER_CALL
from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.servicer import Refusal, check_ids

if TYPE_CHECKING:
    from armada_jobservice.server.servicer import JobServiceServicer

#: Most jobs one ``GetJobStatuses`` call (or one ``WatchJobs`` call) may name.
MAX_BATCH_JOBS = MAX_JOBS_PER_CALL

_Statuses = jobservice_pb2.JobStatusesResponse
METHOD = "/jobservice.JobService/GetJobStatuses"


def too_many(count: int, what: str) -> str | None:
    """The INVALID_ARGUMENT text for *count* entries of *what*, or None within the limit."""
    if count > MAX_BATCH_JOBS:
        return f"{what} holds {count} entries; at most {MAX_BATCH_JOBS} are allowed per call"
    return None


class BatchStatuses:
    """Answers ``GetJobStatuses`` through the servicer's ``open`` and ``answer``."""

    def __init__(self, servicer: JobServiceServicer) -> None:
        self._servicer = servicer
        self._job_sets = servicer._job_sets

    async def GetJobStatuses(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Answer every entry as ``GetJobStatus`` would, in the order asked."""
        if request is None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "not a JobStatusesRequest: queue, job_set_id and job_id must be UTF-8",
            )
        servicer = self._servicer
        servicer.metrics.calls_by_method["GetJobStatuses"] += 1
        problem = too_many(len(request.jobs), "jobs")
        # Each protobuf field read costs; read each once.
        entries = [] if problem else [(j.queue, j.job_set_id, j.job_id) for j in request.jobs]
        for index, (queue, job_set_id, job_id) in enumerate(entries):
            problem = check_ids(queue, job_set_id, job_id)
            if problem is not None:
                problem = f"jobs[{index}].{problem}"
                break
        # As GetJobStatus: the caller is identified first, then refused for bad input.
        queues = [e[0] for e in entries] or [j.queue for j in request.jobs[:1]]
        identity = await servicer.identify(context, queues, METHOD, valid=problem is None)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        now = time.monotonic()
        job_sets = self._job_sets
        opened: dict[tuple[str, str], JobSet | Refusal] = {}
        while True:
            asked = dict.fromkeys((q, s) for q, s, _ in entries)
            closed = [
                key
                for key in asked
                if key not in opened and ((js := job_sets.get(key)) is None or not js.live)  # type: ignore[call-overload]
            ]
            if not closed:
                break  # every job set is open now: no await until the answers are built
            # Subscribed in order (each charged to the caller), then loaded together:
            # their loads share one read of the database.
            for key in closed:
                opened[key] = servicer.open_now(JobSetKey(*key), now, identity)
            await self._refuse_limits(entries, opened, identity, context)
            pending = [(k, js) for k in closed if isinstance(js := opened[k], JobSet)]
            results = await asyncio.gather(*(servicer.loaded(js) for _, js in pending))
            opened.update(zip((k for k, _ in pending), results, strict=True))
        answer, answer_poll = servicer.answer, servicer.answer_poll
        statuses = []
        for queue, job_set_id, job_id in entries:
            key = (queue, job_set_id)
            found = opened.get(key) if opened else None
            if found is None:
                found = job_sets[key]  # type: ignore[index]
            if isinstance(found, Refusal):
                statuses.append(answer(*found.answer(job_id)))
            else:
                statuses.append(answer_poll(found, job_id, now))
        return _Statuses(statuses=statuses)

    async def _refuse_limits(
        self,
        entries: list[tuple[str, str, str]],
        opened: dict[tuple[str, str], JobSet | Refusal],
        identity: str,
        context: grpc.aio.ServicerContext,
    ) -> None:
        """Refuse the call if the caller's own limit kept out a job set of an unended entry."""
        for queue, job_set_id, job_id in entries:
            found = opened.get((queue, job_set_id))
            if isinstance(found, Refusal) and found.limit is not None and not found.ended(job_id):
                await self._servicer.refuse_limit(found.limit, identity, queue, context, METHOD)
