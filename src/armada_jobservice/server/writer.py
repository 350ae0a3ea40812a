"""The writer: flushes the cache to the database in batches and deletes stale job sets.

When ``FlushSchedule`` says so (every ``flush_interval_s``, or sooner when
the streams fall quiet), one batch holds every job that changed since the
last flush (many events of one job become one row write) and, in the same
transaction, the resume position of each job set those rows bring up to
date. A flush looks only at the job sets that received events since the last
one (``ChangeTracker``), so its cost follows the events, not the number of
job sets held; about once a second a full pass over every job set also
expires idle subscriptions, refreshes stored activity times and evicts what
the database fully holds. Every pass goes in slices of ``PASS_SLICE`` job
sets with a turn of the event loop between them, so polls are answered
while it runs. A batch the database refuses is kept and written
with the next one: nothing is dropped. Job sets with neither a poll nor an
event for ``job_set_retention_s`` are deleted whole, never job by job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING

from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.changes import ChangeTracker
from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.flush_schedule import FlushSchedule
from armada_jobservice.server.metrics import Metrics
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.store.base import JobSetWrite
from armada_jobservice.server.store.thread import AsyncStore
from armada_jobservice.server.subscriptions import SubscriptionManager

if TYPE_CHECKING:
    from armada_jobservice.server.fleet.replica import Fleet

log = logging.getLogger(__name__)

#: How stale a subscribed job set's stored activity time may get before a
#: flush refreshes it (polls alone do not make a write each).
ACTIVITY_RESOLUTION_S = 60.0
RETENTION_BATCH = 5_000
#: Job sets a pass looks at between two turns of the event loop. Looked at
#: all at once, 10,000 job sets held the loop for about 70 ms every second
#: (py-spy in bench scenario 4), and every poll arriving meanwhile waited.
PASS_SLICE = 256
#: While flushes keep being refused, the error is logged again at most this often.
REFUSAL_LOG_S = 60.0


async def in_slices(job_sets: Iterable[JobSet]) -> AsyncIterator[list[JobSet]]:
    """*job_sets* (copied first) in slices of ``PASS_SLICE``, letting the event loop run between."""
    items = list(job_sets)
    for start in range(0, len(items), PASS_SLICE):
        if start:
            await asyncio.sleep(0)
        yield items[start : start + PASS_SLICE]


class Writer:
    """Batches cache changes into the database; also expires, evicts and purges."""

    def __init__(
        self,
        subscriptions: SubscriptionManager,
        changes: ChangeTracker,
        store: AsyncStore,
        metrics: Metrics,
        *,
        flush_interval_s: float,
        job_set_retention_s: float,
        fleet: Fleet | None = None,
    ) -> None:
        self.subscriptions = subscriptions
        #: In a fleet, only the leases held here let rows and positions be written.
        self.fleet = fleet
        self.changes = changes
        self.store = store
        self.metrics = metrics
        self.flush_interval_s = flush_interval_s
        self.retention_s = job_set_retention_s
        self.activity_resolution_s = min(ACTIVITY_RESOLUTION_S, job_set_retention_s / 10)
        #: Whether the last database operation worked (feeds the health check).
        self.store_ok = True
        #: Flushes the database refused in a row (0 once one is taken).
        self.refused_in_a_row = 0
        self._refusal_logged_at = -REFUSAL_LOG_S
        self._lock = asyncio.Lock()

    async def flush_once(self, wall_now: float | None = None, *, full: bool = True) -> int:
        """Write every change since the last flush in one transaction; return the job rows.

        ``full=False`` looks only at the job sets that received events since
        the last flush: activity times and unsubscribed job sets wait for the
        next full flush, and nothing is evicted.
        """
        async with self._lock:
            return await self._flush(wall_now, full)

    async def _flush(self, wall_now: float | None, full: bool) -> int:
        started = time.perf_counter()
        mono = time.monotonic()
        wall = time.time() if wall_now is None else wall_now
        batch: list[JobSetWrite] = []
        owners: list[JobSet] = []
        subscriptions = self.subscriptions
        changed = self.changes.take()
        owned = self.fleet.owned if self.fleet is not None else None
        # Each job set's rows and its position are taken in one step, without
        # awaiting, so they describe the same instant; the loop runs between
        # slices (job sets are written independently of each other).
        async for part in in_slices(subscriptions if full else changed):
            self._collect(part, wall, mono, owned, batch, owners)
        written = sum(len(entry.rows) for entry in batch)
        if batch:
            try:
                refused = set(await self.store.write(batch))
            except StoreError as exc:
                # Mark the rows changed again: the cache still holds their
                # latest state, so the next flush writes them.
                for js, entry in zip(owners, batch, strict=True):
                    js.restore_dirty(row[0] for row in entry.rows)
                self.changes.restore(owners)
                self.metrics.flush_failures += 1
                self.store_ok = False
                self._log_refusal(written, exc)
                return 0
            if self.refused_in_a_row:
                log.warning(
                    "the database took a flush again after %d refused; %d jobs written",
                    self.refused_in_a_row,
                    written,
                )
                self.refused_in_a_row = 0
            for js, entry in zip(owners, batch, strict=True):
                if entry.key in refused:
                    js.discard_unflushed()
                    if self.fleet is not None:
                        self.fleet.lose(entry.key, "a write found another replica holding it")
                    continue
                if entry.last_message_id is None and not entry.rows:
                    js.mark_persisted(js.persisted_message_id, entry.last_activity)
                else:
                    js.mark_persisted(entry.last_message_id, entry.last_activity)
            self.store_ok = True
            self.metrics.flush_jobs.observe(written)
            self.metrics.flush_seconds.observe(time.perf_counter() - started)
            log.debug("flushed %d jobs of %d job sets", written, len(batch))
        if full:
            async for part in in_slices(subscriptions):
                subscriptions.evict_clean(part)
        return written

    def _log_refusal(self, jobs: int, exc: StoreError) -> None:
        """Log a refused flush: the first at once, then at most every ``REFUSAL_LOG_S``."""
        self.refused_in_a_row += 1
        now = time.monotonic()
        if self.refused_in_a_row == 1:
            log.error("flush of %d jobs failed, will retry: %s", jobs, exc)
        elif now - self._refusal_logged_at >= REFUSAL_LOG_S:
            log.error(
                "flushes still refused (%d in a row), %d jobs waiting, retrying: %s",
                self.refused_in_a_row,
                jobs,
                exc,
            )
        else:
            return
        self._refusal_logged_at = now

    def _collect(
        self,
        job_sets: list[JobSet],
        wall: float,
        mono: float,
        owned: Mapping[JobSetKey, int] | None,
        batch: list[JobSetWrite],
        owners: list[JobSet],
    ) -> None:
        """Add to *batch* (and *owners*) what each of *job_sets* has to write."""
        for js in job_sets:
            if not js.loaded:
                continue
            activity = wall - (mono - js.last_activity())
            if owned is not None and js.key not in owned:
                # Followed, not owned: only the activity time is this replica's to write.
                if not js.is_clean():
                    js.discard_unflushed()
                if activity - js.persisted_activity > self.activity_resolution_s:
                    batch.append(JobSetWrite(js.key, None, activity, []))
                    owners.append(js)
                continue
            rows = js.take_dirty()
            if (
                rows
                or js.last_message_id != js.persisted_message_id
                or activity - js.persisted_activity > self.activity_resolution_s
                or (js.stream is None and activity > js.persisted_activity)
            ):
                epoch = owned.get(js.key) if owned is not None else None
                batch.append(JobSetWrite(js.key, js.last_message_id, activity, rows, epoch))
                owners.append(js)

    async def sweep_retention(self, wall_now: float | None = None) -> int:
        """Delete the job sets idle for longer than the retention time; return how many."""
        wall = time.time() if wall_now is None else wall_now
        cutoff = wall - self.retention_s
        deleted = 0
        while True:
            candidates = await self.store.idle_job_sets(cutoff, RETENTION_BATCH)
            held = self.subscriptions.job_sets
            # Filtering and queueing the delete happen in one step of the
            # loop: a poll after this point queues its load behind the delete.
            keys = [k for k in candidates if k not in held]
            if not keys:
                break
            n = await self.store.delete_job_sets_soon(keys, cutoff)
            deleted += n
            if len(candidates) < RETENTION_BATCH or n == 0:
                break
        if deleted:
            log.info("deleted %d job sets idle for more than %.0f s", deleted, self.retention_s)
        return deleted

    async def check_store(self) -> bool:
        """Ask the database whether it answers; remember the answer for health checks."""
        try:
            await self.store.ping()
        except StoreError as exc:
            if self.store_ok:
                log.error("%s", exc)
            self.store_ok = False
        else:
            self.store_ok = True
        return self.store_ok

    async def run(self) -> None:
        """Do what ``FlushSchedule`` says is due, tick after tick, until cancelled."""
        loop = asyncio.get_running_loop()
        changes = self.changes
        schedule = FlushSchedule(
            flush_interval_s=self.flush_interval_s,
            subscription_expiry_s=self.subscriptions.expiry_s,
            job_set_retention_s=self.retention_s,
            now=loop.time(),
            events_seen=changes.events_seen,
        )
        while True:
            await asyncio.sleep(schedule.tick_s)
            due = schedule.step(loop.time(), changes.events_seen, changes.pending > 0)
            if due is None:
                continue
            try:
                if due.full:
                    async for part in in_slices(self.subscriptions):
                        self.subscriptions.expire_idle(among=part)
                await self.flush_once(full=due.full)
                if self.refused_in_a_row:
                    schedule.flush_refused(loop.time(), self.refused_in_a_row)
                if due.ping:
                    await self.check_store()
                if due.sweep:
                    await self.sweep_retention()
            except StoreError as exc:
                self.store_ok = False
                log.error("database housekeeping failed: %s", exc)
            except Exception:
                log.exception("writer step failed; continuing")
