"""Backfill: jobs the event stream never named, answered from Armada's query API.

Armada keeps a job set's events for a limited time (its event store expires a
job set idle for ``eventRetentionPolicy.retentionDuration``). A job whose
events expired, or that ended while the job service was away for that long,
would answer JOB_ID_NOT_FOUND for ever. So a poll that answers
JOB_ID_NOT_FOUND after its job set's stream has caught up
(``backfill_rules.caught_up``) queues the job here; ``run`` asks Armada
about queued jobs in batches:

- ``GetJobDetails`` (``api.Jobs``) for up to ``batch_size`` ids per call: it
  gives each job's state *and* its queue and job set, and only a job of the
  polled queue and job set is answered (``GetJobStatus`` gives states by id
  alone, which would let a caller scoped to one queue learn about jobs of
  another by naming them under its own);
- ``GetJobErrors`` for the jobs that failed, for their text;
- the answer is applied to the cache as the event that would have said it
  (``JobSet.apply``), so terminal states never move back and later events
  apply as usual, and the writer flushes it like any change.

Calls are spaced by ``QueryBudget`` (``backfill_queries_per_s``). At most
``max_pending`` jobs wait; a poll beyond that is not queued (it answers
JOB_ID_NOT_FOUND as before, and a later poll queues it). A job Armada does
not know, or that a failed call asked about, is not asked about again for
``not_found_s`` (a failed call backs off from 1 s up to that), so a poller
of an unknown id causes no query per poll. With a fleet, only the owner of
a job set asks; followers read what it wrote.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import grpc
from armada_client.armada import job_pb2, job_pb2_grpc

from armada_jobservice._wire import WireState
from armada_jobservice.server.backfill_rules import (
    NEEDS_ERRORS,
    QueryBudget,
    caught_up,
    event_for,
    is_known,
    is_terminal,
)
from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.changes import ChangeTracker
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.upstream import Upstream

if TYPE_CHECKING:
    from armada_jobservice.server.fleet.replica import Fleet

log = logging.getLogger(__name__)

#: Deadline of one query-API call.
CALL_TIMEOUT_S = 10.0
#: First retry delay after a failed call; it doubles up to ``not_found_s``.
FAILURE_BACKOFF_S = 1.0

_Job = tuple[JobSetKey, str]
_NOT_FOUND = int(WireState.JOB_ID_NOT_FOUND)


class Backfill:
    """Queues unknown jobs of caught-up job sets and answers them from the query API."""

    def __init__(
        self,
        upstream: Upstream,
        changes: ChangeTracker,
        *,
        queries_per_s: float,
        batch_size: int,
        max_pending: int,
        quiet_s: float,
        not_found_s: float,
        fleet: Fleet | None = None,
    ) -> None:
        self.upstream = upstream
        self.changes = changes
        self.fleet = fleet
        self.enabled = queries_per_s > 0
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.quiet_s = quiet_s
        self.not_found_s = not_found_s
        #: The cached job sets (set by the app once they exist): answers go only to these.
        self.job_sets: Mapping[JobSetKey, JobSet] = {}
        self._budget = QueryBudget(queries_per_s or 1.0, time.monotonic())
        self._opened: dict[JobSet, float] = {}
        self._pending: dict[_Job, JobSet] = {}
        #: Jobs not to ask about before a monotonic time; oldest first, bounded.
        self._quiet_until: dict[_Job, float] = {}
        self._wake = asyncio.Event()
        self._failure_streak = 0
        self._stub: job_pb2_grpc.JobsStub | None = None
        #: Counts for metrics and tests.
        self.queries = 0
        self.answered = 0
        self.not_found = 0
        self.dropped = 0
        self.failures: dict[str, int] = {}

    # -- the stream's side ---------------------------------------------------

    def stream_opened(self, js: JobSet, now: float) -> None:
        """Record that an event stream of *js* opened at monotonic *now*."""
        self._opened[js] = now

    def stream_closed(self, js: JobSet) -> None:
        """Record that the event stream of *js* ended (it is not caught up until reopened)."""
        self._opened.pop(js, None)

    def caught_up(self, js: JobSet, now: float) -> bool:
        """Whether the stream of *js* has delivered what Armada held when it opened."""
        return caught_up(self._opened.get(js), js.last_event, now, self.quiet_s)

    # -- the poll's side -----------------------------------------------------

    @property
    def pending(self) -> int:
        """Jobs waiting to be asked about."""
        return len(self._pending)

    def note(self, js: JobSet, job_id: str, now: float) -> None:
        """A poll of *job_id* answered JOB_ID_NOT_FOUND: queue it if its stream caught up."""
        if not self.enabled or not self.caught_up(js, now):
            return
        fleet = self.fleet
        if fleet is not None and js.key not in fleet.owned:
            return
        job = (js.key, job_id)
        if job in self._pending:
            return
        until = self._quiet_until.get(job)
        if until is not None:
            if now < until:
                return
            del self._quiet_until[job]
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending[job] = js
        self._wake.set()

    def _hold_off(self, job: _Job, until: float) -> None:
        held = self._quiet_until
        held.pop(job, None)
        held[job] = until
        # Bounded: beyond the limit the oldest entries go (those jobs may be
        # asked about again sooner, which costs a query, never an answer).
        limit = self.max_pending * 10
        while len(held) > limit:
            del held[next(iter(held))]

    # -- asking Armada ---------------------------------------------------------

    async def run(self) -> None:
        """Ask about queued jobs, one batch per call the budget allows, until cancelled."""
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            await self._spend()
            try:
                await self.query_once()
            except Exception:
                log.exception("backfill step failed; continuing")

    async def _spend(self) -> None:
        budget = self._budget
        delay = budget.delay_s(time.monotonic())
        if delay > 0:
            # The bucket refills at a fixed rate: after this wait a token is there.
            await asyncio.sleep(delay)
        budget.spend(time.monotonic())

    def _take(self) -> dict[_Job, JobSet]:
        taken: list[_Job] = []
        ids: set[str] = set()
        # Oldest first; one id polled under two job sets is asked about once.
        for job in self._pending:
            if job[1] not in ids and len(ids) >= self.batch_size:
                break
            ids.add(job[1])
            taken.append(job)
        return {job: self._pending.pop(job) for job in taken}

    async def query_once(self) -> int:
        """Ask Armada about one batch of queued jobs and apply the answers; return jobs asked."""
        batch = self._take()
        if not batch:
            return 0
        if self._stub is None:
            self._stub = job_pb2_grpc.JobsStub(self.upstream.channel)  # type: ignore[no-untyped-call]
        ids = sorted({job_id for _, job_id in batch})
        details = await self._call("GetJobDetails", job_pb2.JobDetailsRequest(job_ids=ids), batch)
        if details is None:
            return len(batch)
        found: dict[_Job, Any] = {}
        now = time.monotonic()
        for job in batch:
            key, job_id = job
            d = details.job_details.get(job_id)
            if d is None or not is_known(d.state) or (d.queue, d.jobset) != key:
                self.not_found += 1
                self._hold_off(job, now + self.not_found_s)
            else:
                found[job] = d
        failed = {job: batch[job] for job, d in found.items() if d.state in NEEDS_ERRORS}
        errors: Mapping[str, str] = {}
        if failed:
            await self._spend()
            ids = sorted({job_id for _, job_id in failed})
            answer = await self._call("GetJobErrors", job_pb2.JobErrorsRequest(job_ids=ids), failed)
            if answer is None:
                found = {job: d for job, d in found.items() if job not in failed}
            else:
                errors = answer.job_errors
                self._failure_streak = 0
        else:
            self._failure_streak = 0
        for job, d in found.items():
            self._apply(batch[job], job[1], d, errors.get(job[1], ""))
        return len(batch)

    def _apply(self, js: JobSet, job_id: str, details: Any, error: str) -> None:
        if self.job_sets.get(js.key) is not js:
            return  # evicted meanwhile: a later poll loads what the database holds
        if self.fleet is not None and js.key not in self.fleet.owned:
            return  # the lease moved: the new owner answers
        if js.lookup(job_id)[0] != _NOT_FOUND and not is_terminal(details.state):
            return  # an event named it meanwhile, and the stream keeps it current
        message = event_for(
            job_id, details.state, error, details.cancel_reason, details.cancel_user
        )
        # No position, and the time of the last event, so that neither the
        # resume position nor the caught-up rule sees this as an event.
        if message is not None and js.apply("", message, js.last_event):
            self.changes.mark(js)
            self.answered += 1

    async def _call(self, method: str, request: Any, batch: dict[_Job, JobSet]) -> Any:
        sent = self.upstream.call_metadata()
        self.queries += 1
        try:
            return await getattr(self._stub, method)(request, metadata=sent, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code is grpc.StatusCode.UNAUTHENTICATED:
                self.upstream.refused(sent)
            reason, text = code.name, f"{code.name}: {exc.details()}"
        except Exception as exc:  # credentials that cannot be read, and the like
            reason, text = type(exc).__name__, str(exc)
        self.failures[reason] = self.failures.get(reason, 0) + 1
        delay = min(self.not_found_s, FAILURE_BACKOFF_S * 2.0**self._failure_streak)
        self._failure_streak += 1
        until = time.monotonic() + delay
        for job in batch:
            self._hold_off(job, until)
        log.warning(
            "Armada's query API (%s) failed for %d jobs: %s; they answer JOB_ID_NOT_FOUND "
            "and are asked about again after %.0f s",
            method,
            len(batch),
            text,
            delay,
        )
        return None
