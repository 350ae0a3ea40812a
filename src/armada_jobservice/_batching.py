"""Concurrent polls of one asyncio client, sent together as ``GetJobStatuses`` calls.

A unary call costs the service a few hundred microseconds whatever it asks,
so a process with a thousand waiting tasks (an Airflow triggerer) should
not make a thousand calls per interval. ``PollBatcher`` holds each
``get_job_status`` for ``window_s`` and sends what gathered meanwhile in one
call; a lone poll goes out as the plain ``GetJobStatus`` it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from armada_jobservice._exceptions import JobServiceError, RPCError
from armada_jobservice._types import JobRef, JobStatus

#: Refusals of a whole batch that may be due to one entry: its entries are then asked alone.
PER_ENTRY = frozenset({"INVALID_ARGUMENT", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED"})

SendOne = Callable[[JobRef], Awaitable[JobStatus]]
SendMany = Callable[[list[JobRef]], Awaitable[list[JobStatus]]]


class PollBatcher:
    """Gathers the polls made within ``window_s`` of each other into one call."""

    def __init__(self, send_one: SendOne, send_many: SendMany, *, window_s: float) -> None:
        self._send_one = send_one
        self._send_many = send_many
        self.window_s = window_s
        self._pending: list[tuple[JobRef, asyncio.Future[JobStatus]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        #: Calls sent and polls answered through them (tests and the bench read these).
        self.calls_sent = 0
        self.polls_sent = 0

    async def status(self, ref: JobRef) -> JobStatus:
        """The job's status, asked together with whatever else is asked meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JobStatus] = loop.create_future()
        self._pending.append((ref, future))
        if self._timer is None:
            self._timer = loop.call_later(self.window_s, self._flush)
        return await future

    def _flush(self) -> None:
        self._timer = None
        pending, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(pending), name="batched polls")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, pending: list[tuple[JobRef, asyncio.Future[JobStatus]]]) -> None:
        # Callers that gave up (cancelled) are not asked about.
        pending = [(ref, future) for ref, future in pending if not future.done()]
        if not pending:
            return
        self.calls_sent += 1
        self.polls_sent += len(pending)
        refs = [ref for ref, _ in pending]
        try:
            if len(refs) == 1:
                statuses = [await self._send_one(refs[0])]
            else:
                statuses = await self._send_many(refs)
        except RPCError as exc:
            if exc.code not in PER_ENTRY or len(refs) == 1:
                _fail(pending, exc)
                return
            # One caller's bad ids (or queue out of scope, or limit) must not fail
            # the others: each is asked alone.
            await asyncio.gather(*(self._one(ref, future) for ref, future in pending))
            return
        except JobServiceError as exc:
            _fail(pending, exc)
            return
        for (_, future), status in zip(pending, statuses, strict=True):
            if not future.done():
                future.set_result(status)

    async def _one(self, ref: JobRef, future: asyncio.Future[JobStatus]) -> None:
        try:
            status = await self._send_one(ref)
        except JobServiceError as exc:
            _fail([(ref, future)], exc)
        else:
            if not future.done():
                future.set_result(status)

    async def close(self) -> None:
        """Send what is pending now and wait for the calls in flight."""
        if self._timer is not None:
            self._timer.cancel()
            self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


def _fail(pending: list[tuple[JobRef, asyncio.Future[JobStatus]]], exc: JobServiceError) -> None:
    for _, future in pending:
        if not future.done():
            future.set_exception(exc)
