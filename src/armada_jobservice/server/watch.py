"""``WatchJobs``: a job set's changes pushed to the caller as the service applies them.

A watch opens its job set as a first poll does (subscribes, waits for the
stored jobs), sends the current state of every listed job (of every cached
job when none is listed), then one update per change. Each watch has its own
``WatchFeed``, which the ``JobSet`` tells of every change it applies, whoever
applies it: this replica's event stream, or a fleet follower's read of what
the owner wrote. The feed keeps only *which* jobs changed; the update sent
is the job's state when it is sent. A slow reader therefore costs at most
one pending entry per watched job, however many events arrive meanwhile.

Answers are those a poll would give (``JobSet.peek``): a failing event stream
turns every unfinished watched job into CONNECTION_ERR with its text once the
grace has passed (or at once when Armada refused), and back when it heals.
A watch of every job learns of it through the job set's unfinished jobs.

Access and per-identity limits are those of ``GetJobStatus`` for the watched
queue: a refusal ends the call before any update.

While a watch is open its job set counts as polled: it does not expire here,
and in a fleet each lease renewal reports it as polled to the owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from armada_jobservice._gen import jobservice_pb2
from armada_jobservice._wire import TERMINAL_STATES, WireState
from armada_jobservice.server.batch import too_many
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.servicer import Refusal, invalid_job_id, invalid_job_set

if TYPE_CHECKING:
    from armada_jobservice.server.cache import JobSet
    from armada_jobservice.server.servicer import JobServiceServicer

log = logging.getLogger(__name__)

_Update = jobservice_pb2.JobStatusUpdate
METHOD = "/jobservice.JobService/WatchJobs"
_TERMINAL = frozenset(int(s) for s in TERMINAL_STATES)
_NOT_FOUND = int(WireState.JOB_ID_NOT_FOUND)
#: How often a watch refused a subscription (the limit) tries again.
REOPEN_S = 1.0


class WatchFeed:
    """One watch's pending changes: the ids of jobs changed since it last took them."""

    __slots__ = ("_connection", "_pending", "_wake", "wanted")

    def __init__(self, wanted: frozenset[str] | None) -> None:
        #: The watched job ids; None watches every job.
        self.wanted = wanted
        # A dict as an insertion-ordered set: updates go out in the order of change.
        self._pending: dict[str, None] = {}
        self._connection = False
        self._wake = asyncio.Event()

    def job_changed(self, job_id: str) -> None:
        """Note that *job_id* changed (a job changed twice is still one entry)."""
        wanted = self.wanted
        if wanted is None or job_id in wanted:
            self._pending[job_id] = None
            self._wake.set()

    def connection_changed(self) -> None:
        """Note that the job set's event stream failed, changed failure, or healed."""
        self._connection = True
        self._wake.set()

    @property
    def pending(self) -> int:
        """How many jobs changed since the last ``take`` (at most the watched jobs)."""
        return len(self._pending)

    def take(self) -> tuple[list[str], bool]:
        """The changed job ids in order of first change, and whether the connection changed."""
        changed, self._pending = list(self._pending), {}
        connection, self._connection = self._connection, False
        self._wake.clear()
        return changed, connection

    async def wait(self, timeout_s: float | None) -> None:
        """Return once something changed, or after *timeout_s* (None: no limit)."""
        if self._pending or self._connection:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)


class JobWatches:
    """Answers ``WatchJobs`` streams through the servicer's ``open``; counts the open ones."""

    def __init__(self, servicer: JobServiceServicer) -> None:
        self._servicer = servicer
        self.open_streams = 0
        self._feeds: set[WatchFeed] = set()
        self._closing = False
        servicer.metrics.gauge(
            "watch_streams_open", "WatchJobs streams open.", lambda: self.open_streams
        )

    async def WatchJobs(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        """Stream the listed jobs' states, then their changes, until all listed jobs ended."""
        if request is None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "not a WatchJobsRequest: queue, job_set_id and job_ids must be UTF-8",
            )
        self._servicer.metrics.calls_by_method["WatchJobs"] += 1
        queue, job_set_id = request.queue, request.job_set_id
        # In the order asked, each once.
        job_ids = list(dict.fromkeys(request.job_ids))
        problem = too_many(len(request.job_ids), "job_ids") or invalid_job_set(queue, job_set_id)
        for index, job_id in enumerate(job_ids):
            problem = problem or invalid_job_id(job_id, f"job_ids[{index}]")
        # As GetJobStatus: the caller is identified first, then refused for bad input.
        identity = await self._servicer.identify(context, [queue], METHOD, valid=problem is None)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        self.open_streams += 1
        try:
            key = JobSetKey(queue, job_set_id)
            async for update in self._watch(key, job_ids, identity, context):
                yield update
        finally:
            self.open_streams -= 1
        if self._closing:
            # Not OK: that would say every listed job ended. Clients open it again elsewhere.
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the job service is shutting down")

    def close(self) -> None:
        """End every open watch now (the service is stopping); new ones end at once."""
        self._closing = True
        for feed in self._feeds:
            feed.connection_changed()

    async def _watch(
        self, key: JobSetKey, job_ids: list[str], identity: str, context: Any
    ) -> AsyncIterator[Any]:
        servicer = self._servicer
        metrics = servicer.metrics
        refused_with = None
        while True:
            opened = await servicer.open(key, time.monotonic(), identity)
            if not isinstance(opened, Refusal):
                break
            if opened.limit is not None and not (job_ids and all(map(opened.ended, job_ids))):
                # The caller's own limit: refused as GetJobStatus refuses it.
                await servicer.refuse_limit(opened.limit, identity, key.queue, context, METHOD)
            # As polls are answered meanwhile; sent again only when the text changes.
            if opened.text != refused_with:
                refused_with = opened.text
                ended = 0
                for job_id in job_ids:
                    state, error = opened.answer(job_id)
                    ended += state in _TERMINAL
                    metrics.watch_updates += 1
                    yield _Update(job_id=job_id, state=state, error=error)  # type: ignore[arg-type]
                if job_ids and ended == len(job_ids):
                    return
            if self._closing:
                return
            await asyncio.sleep(REOPEN_S)
        js: JobSet = opened
        feed = WatchFeed(frozenset(job_ids) if job_ids else None)
        # Added before the first states are read, with no await between: no change is lost.
        js.add_watcher(feed)
        self._feeds.add(feed)
        try:
            async for update in self._follow(js, feed, job_ids):
                metrics.watch_updates += 1
                yield update
        finally:
            self._feeds.discard(feed)
            js.remove_watcher(feed, time.monotonic())

    async def _follow(self, js: JobSet, feed: WatchFeed, job_ids: list[str]) -> AsyncIterator[Any]:
        grace_s = self._servicer.grace_s
        listed = bool(job_ids)
        now = time.monotonic()
        failure = js.connection_error(now, grace_s)
        # The first states: of a snapshot of the ids, since the cache changes while we send.
        first = job_ids if listed else list(js.states)
        unfinished: set[str] = set()
        for job_id in first:
            state, error = js.peek(job_id, now, grace_s)
            if state not in _TERMINAL:
                unfinished.add(job_id)
                if state == _NOT_FOUND:
                    self._servicer.note_missing(js, job_id, now)
            yield _Update(job_id=job_id, state=state, error=error)  # type: ignore[arg-type]
        while not listed or unfinished:
            await feed.wait(self._until_failure(js, failure))
            if self._closing:
                return
            changed, _connection = feed.take()
            now = time.monotonic()
            current = js.connection_error(now, grace_s)
            if current != failure:
                # Every unfinished job's answer changed with it.
                failure = current
                if not listed:
                    states = js.states
                    unfinished = {j for j, s in states.items() if s not in _TERMINAL}
                changed = list(dict.fromkeys([*changed, *sorted(unfinished)]))
            for job_id in changed:
                state, error = js.peek(job_id, now, grace_s)
                if state in _TERMINAL:
                    unfinished.discard(job_id)
                elif not listed:
                    unfinished.add(job_id)
                yield _Update(job_id=job_id, state=state, error=error)  # type: ignore[arg-type]

    def _until_failure(self, js: JobSet, failure: str | None) -> float | None:
        """Seconds until a failing stream's grace ends (answers change then), or None."""
        since = js.failing_since
        if since is None or failure is not None:
            return None
        return max(0.0, since + self._servicer.grace_s - time.monotonic()) + 0.001
