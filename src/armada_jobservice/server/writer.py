"""The writer: flushes the cache to the database in batches and deletes stale job sets.

Every ``flush_interval_s``, or sooner when the streams fall quiet, one batch
holds every job that changed since the last flush (many events of one job
become one row write) and, in the same transaction, the resume position of
each job set those rows bring up to date. A flush looks only at the job
sets that received events since the last one, so its cost follows the
events, not the number of job sets held; about once a second
(``housekeeping_s``) a full pass over every job set also expires idle
subscriptions, refreshes stored activity times and evicts what the database
fully holds. A batch the database refuses is kept and written with the next
one: nothing is dropped. Job sets with neither a poll nor an event for
``job_set_retention_s`` are deleted whole, never job by job.
"""

from __future__ import annotations

import asyncio
import logging
import time

from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.metrics import Metrics
from armada_jobservice.server.store.base import JobSetWrite
from armada_jobservice.server.store.thread import AsyncStore
from armada_jobservice.server.subscriptions import SubscriptionManager

log = logging.getLogger(__name__)

#: How stale a subscribed job set's stored activity time may get before a
#: flush refreshes it (polls alone do not make a write each).
ACTIVITY_RESOLUTION_S = 60.0
RETENTION_BATCH = 5_000
#: Longest gap between full passes over every job set.
HOUSEKEEPING_S = 1.0
#: The streams count as quiet when no event arrived for this long...
QUIET_S = 0.02
#: ...and then a flush runs early, if the last one is at least this old.
QUIET_MIN_GAP_S = 0.1


class Writer:
    """Batches cache changes into the database; also expires, evicts and purges."""

    def __init__(
        self,
        subscriptions: SubscriptionManager,
        store: AsyncStore,
        metrics: Metrics,
        *,
        flush_interval_s: float,
        job_set_retention_s: float,
    ) -> None:
        self.subscriptions = subscriptions
        self.store = store
        self.metrics = metrics
        self.flush_interval_s = flush_interval_s
        self.retention_s = job_set_retention_s
        self.activity_resolution_s = min(ACTIVITY_RESOLUTION_S, job_set_retention_s / 10)
        # Expiry is checked at least four times per expiry period.
        self.housekeeping_s = max(flush_interval_s, min(HOUSEKEEPING_S, subscriptions.expiry_s / 4))
        #: Whether the last database operation worked (feeds the health check).
        self.store_ok = True
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
        changed = subscriptions.take_changed()
        # The snapshot is taken without awaiting, so each job set's rows and
        # its position describe the same instant.
        for js in subscriptions if full else changed:
            if not js.loaded:
                continue
            activity = wall - (mono - js.last_activity())
            rows = js.take_dirty()
            if (
                rows
                or js.last_message_id != js.persisted_message_id
                or activity - js.persisted_activity > self.activity_resolution_s
                or (js.stream is None and activity > js.persisted_activity)
            ):
                batch.append(JobSetWrite(js.key, js.last_message_id, activity, rows))
                owners.append(js)
        written = sum(len(entry.rows) for entry in batch)
        if batch:
            try:
                await self.store.write(batch)
            except StoreError as exc:
                # Mark the rows changed again: the cache still holds their
                # latest state, so the next flush writes them.
                for js, entry in zip(owners, batch, strict=True):
                    js.dirty.update(row[0] for row in entry.rows)
                subscriptions.changed.update(owners)
                self.metrics.flush_failures += 1
                self.store_ok = False
                log.error("flush of %d jobs failed, will retry: %s", written, exc)
                return 0
            for js, entry in zip(owners, batch, strict=True):
                js.persisted_message_id = entry.last_message_id
                js.persisted_activity = max(js.persisted_activity, entry.last_activity)
            self.store_ok = True
            self.metrics.flush_jobs.observe(written)
            self.metrics.flush_seconds.observe(time.perf_counter() - started)
            log.debug("flushed %d jobs of %d job sets", written, len(batch))
        if full:
            subscriptions.evict_clean()
        return written

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
        """Flush, expire, ping and purge on their intervals until cancelled.

        A flush runs every ``flush_interval_s``, and sooner once the streams
        are quiet (no event for ``QUIET_S``) with changes waiting, though not
        within ``QUIET_MIN_GAP_S`` of the last flush. A burst of events is
        written in large batches while it lasts and is durable soon after it
        ends; a trickle of events never becomes a transaction per event.
        """
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        next_ping = loop.time()
        next_full = loop.time()
        sweep_every = min(60.0, self.retention_s / 10)
        tick = min(self.flush_interval_s, QUIET_S)
        min_gap = min(self.flush_interval_s, QUIET_MIN_GAP_S)
        last_flush = loop.time()
        seen = self.metrics.events_received
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            received = self.metrics.events_received
            quiet, seen = received == seen, received
            since = now - last_flush
            if since < self.flush_interval_s and not (
                quiet and since >= min_gap and self.subscriptions.changed
            ):
                continue
            last_flush = now
            try:
                full = now >= next_full
                if full:
                    next_full = now + self.housekeeping_s
                    self.subscriptions.expire_idle()
                await self.flush_once(full=full)
                now = loop.time()
                if now >= next_ping:
                    next_ping = now + 5.0
                    await self.check_store()
                if now >= next_sweep:
                    next_sweep = now + sweep_every
                    await self.sweep_retention()
            except StoreError as exc:
                self.store_ok = False
                log.error("database housekeeping failed: %s", exc)
            except Exception:
                log.exception("writer step failed; continuing")
