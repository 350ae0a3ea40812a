"""Waiting by watching: what both clients do with each thing a watch brings.

A wait reads ``WatchJobs`` items (updates, the stream's end, transport
errors) and hands each to ``take`` with the time; ``take`` feeds the
``JobsWaiter`` and says whether to keep reading or to open the watch again
after a delay. A service that answers UNIMPLEMENTED (one older than the
watch) raises ``WatchUnsupported``, and the client polls instead.

Also here, for the asyncio client: ``WatchHub``, which lets concurrent waits
on one job set share one stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from armada_jobservice._exceptions import (
    JobServiceError,
    RPCError,
    ServiceUnavailable,
    TransportError,
    is_transient,
)
from armada_jobservice._types import JobUpdate
from armada_jobservice._wait import JobsWaiter

log = logging.getLogger(__name__)

UpdateCallback = Callable[[JobUpdate], object]
"""Called with every update a wait receives, terminal or not."""


class WatchUnsupported(JobServiceError):
    """The service answered UNIMPLEMENTED to ``WatchJobs``: it is older than the watch."""


class StreamEnd:
    """The watch ended without an error (the service ends it once the listed jobs ended)."""


END = StreamEnd()

WatchItem = JobUpdate | JobServiceError | StreamEnd


def is_unimplemented(exc: BaseException) -> bool:
    """Whether *exc* says the service does not know the rpc (an older service)."""
    return isinstance(exc, RPCError) and exc.code == "UNIMPLEMENTED"


def take(
    jobs: JobsWaiter, item: WatchItem, now: float, on_update: UpdateCallback | None
) -> float | None:
    """Apply one item of a watch; return None to keep reading, or the delay before reopening."""
    if isinstance(item, JobUpdate):
        if item.job_id in jobs.waiters:
            if on_update is not None:
                on_update(item)
            jobs.on_status(item.job_id, item.status, now)
        return None
    if isinstance(item, StreamEnd):
        # Before every listed job ended: a service going away does this.
        item = ServiceUnavailable("WatchJobs: the stream ended early", code="UNAVAILABLE")
    if is_unimplemented(item):
        raise WatchUnsupported(str(item)) from item
    # CANCELLED included: what a client sees of a service shutting down with the stream open.
    if isinstance(item, TransportError) and is_transient(item):
        return jobs.on_error(item, now)
    raise item


@dataclass(eq=False)
class _Member:
    """One wait sharing a job set's watch: the jobs it wants and where its items go."""

    key: tuple[str, str]
    job_ids: set[str]
    sink: asyncio.Queue[WatchItem]
    retry_s: float


@dataclass(eq=False)
class _JobSetWatch:
    """The one stream of a job set, listing the jobs every member waits for."""

    key: tuple[str, str]
    members: list[_Member] = field(default_factory=list)
    #: The members by job they wait for: an update reaches its own, not a scan of all.
    by_job: dict[str, list[_Member]] = field(default_factory=dict)
    #: The last update of each listed job, for members that join an open stream.
    latest: dict[str, JobUpdate] = field(default_factory=dict)
    listed: frozenset[str] = frozenset()
    reopen: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


Opener = Callable[[str, str, list[str]], AsyncIterator[JobUpdate]]


class WatchHub:
    """Concurrent waits on one job set, served by one ``WatchJobs`` stream of their jobs.

    A wait joins with its job ids and a queue; the stream lists every job
    some member waits for, and is opened again (after ``gather_s``, so that
    waits starting together join once) when a member brings new ones.
    Updates go to the members that want them; errors and the stream's end go
    to every member, each of which applies its own timeouts.
    """

    def __init__(self, open_watch: Opener, *, gather_s: float = 0.002) -> None:
        self._open = open_watch
        self.gather_s = gather_s
        self._watches: dict[tuple[str, str], _JobSetWatch] = {}
        #: Streams opened since the hub was made (tests and the bench read it).
        self.streams_opened = 0

    def join(
        self, queue: str, job_set_id: str, job_ids: Iterable[str], retry_s: float
    ) -> tuple[_Member, asyncio.Queue[WatchItem]]:
        """Share the job set's watch for *job_ids*; items arrive on the returned queue."""
        key = (queue, job_set_id)
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _JobSetWatch(key)
        member = _Member(key, set(job_ids), asyncio.Queue(), retry_s)
        watch.members.append(member)
        for job_id in member.job_ids:
            watch.by_job.setdefault(job_id, []).append(member)
        for job_id in member.job_ids:
            seen = watch.latest.get(job_id)
            if seen is not None:
                member.sink.put_nowait(seen)
        if not member.job_ids <= watch.listed:
            watch.reopen.set()
        if watch.task is None:
            watch.task = asyncio.get_running_loop().create_task(
                self._run(watch), name=f"watch {key}"
            )
        return member, member.sink

    def leave(self, member: _Member) -> None:
        """Stop sharing; the stream closes when its last member leaves."""
        watch = self._watches.get(member.key)
        if watch is None or member not in watch.members:
            return
        watch.members.remove(member)
        for job_id in member.job_ids:
            waiting = watch.by_job.get(job_id)
            if waiting is not None:
                waiting.remove(member)
                if not waiting:
                    del watch.by_job[job_id]
        if not watch.members:
            del self._watches[member.key]
            if watch.task is not None:
                watch.task.cancel()

    async def close(self) -> None:
        """End every stream (the client is closing)."""
        tasks = [w.task for w in self._watches.values() if w.task is not None]
        for watch in self._watches.values():
            watch.members.clear()
        self._watches.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, watch: _JobSetWatch) -> None:
        while watch.members:
            await asyncio.sleep(self.gather_s)
            wanted = set().union(*(m.job_ids for m in watch.members))
            watch.listed = frozenset(wanted)
            watch.latest = {j: u for j, u in watch.latest.items() if j in wanted}
            watch.reopen.clear()
            self.streams_opened += 1
            reader = asyncio.ensure_future(self._read(watch, sorted(wanted)))
            reopen = asyncio.ensure_future(watch.reopen.wait())
            try:
                await asyncio.wait({reader, reopen}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                reopen.cancel()
                if not reader.done():
                    reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            if reader.cancelled():
                continue  # reopened with more jobs
            failure = reader.result()
            # Members whose jobs all ended leave; any other reads the end as an outage.
            self._send(watch, END if failure is None else failure)
            if failure is not None and is_unimplemented(failure):
                return
            delay = min((m.retry_s for m in watch.members), default=0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.reopen.wait(), delay)

    async def _read(self, watch: _JobSetWatch, job_ids: list[str]) -> JobServiceError | None:
        queue, job_set_id = watch.key
        try:
            async for update in self._open(queue, job_set_id, job_ids):
                watch.latest[update.job_id] = update
                for member in watch.by_job.get(update.job_id, ()):
                    member.sink.put_nowait(update)
        except JobServiceError as exc:
            return exc
        return None

    @staticmethod
    def _send(watch: _JobSetWatch, item: WatchItem) -> None:
        for member in watch.members:
            member.sink.put_nowait(item)
