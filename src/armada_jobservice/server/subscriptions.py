"""Subscriptions: one event stream per polled job set, started, limited and expired here.

The first poll of a (queue, job set) creates its ``JobSet`` and starts one
task (``EventStreams.run``) that loads what the database holds, then reads
Armada's event stream from the stored position. All of it happens on the
event loop's thread, and the check-then-create of a subscription contains no
``await``: however many first polls arrive at once, exactly one stream opens.
A subscription ends when its job set has not been polled for
``subscription_expiry_s``; a job set the database fully holds is then evicted
from memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.errors import JobServiceError
from armada_jobservice.server.loader import JobSetLoader
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.streams import EventStreams

if TYPE_CHECKING:
    from armada_jobservice.server.fleet.replica import Fleet

log = logging.getLogger(__name__)


class SubscriptionLimitReached(JobServiceError):
    """Opening one more event stream would exceed ``max_subscriptions``."""


class SubscriptionManager:
    """Owns the cached job sets and which of them have a stream task."""

    def __init__(
        self,
        streams: EventStreams,
        loader: JobSetLoader,
        *,
        max_subscriptions: int,
        subscription_expiry_s: float,
        fleet: Fleet | None = None,
    ) -> None:
        self.streams = streams
        self.loader = loader
        #: In a fleet, each job set's task owns or follows it (``Fleet.drive``).
        self.fleet = fleet
        self.max_subscriptions = max_subscriptions
        self.expiry_s = subscription_expiry_s
        self._job_sets: dict[JobSetKey, JobSet] = {}
        #: Every cached job set by key, read only (the servicer's fast path reads it).
        self.job_sets: Mapping[JobSetKey, JobSet] = MappingProxyType(self._job_sets)
        self._active = 0
        self._closed = False

    @property
    def active(self) -> int:
        """Job sets with a running stream task."""
        return self._active

    def subscribe(self, key: JobSetKey, now: float) -> JobSet:
        """The job set for a poll, subscribing to it first if it is not subscribed.

        Synchronous on purpose: no other coroutine can run between the check
        and the creation, so concurrent first polls share one stream.
        """
        js = self._job_sets.get(key)
        if js is None or js.stream is None:
            if self._closed:
                raise SubscriptionLimitReached("the service is shutting down")
            if self._active >= self.max_subscriptions:
                if self.fleet is not None:
                    # Another replica with room takes it over (its sweep).
                    self.fleet.ask_soon(key)
                raise SubscriptionLimitReached(
                    f"subscription limit reached: {self.max_subscriptions} job sets are "
                    "subscribed already (max_subscriptions)"
                )
            if js is None:
                js = JobSet(key, now)
                self._job_sets[key] = js
            loop = asyncio.get_running_loop()
            js.attach_stream(loop.create_task(self._run(js), name=f"events {key}"))
            self._active += 1
            log.info("subscribed to job set %s (%d active)", key, self._active)
        js.touch(now)
        return js

    async def _run(self, js: JobSet) -> None:
        me = asyncio.current_task()
        try:
            if self.fleet is not None:
                await self.fleet.drive(js)
            else:
                await self.streams.run(js)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("event stream task of %s failed", js.key)
        finally:
            # Unless _stop() already detached this task (expiry, shutdown).
            if js.stream is me:
                js.detach_stream()
                self._active -= 1

    def _stop(self, js: JobSet) -> None:
        task = js.detach_stream()
        if task is not None:
            self._active -= 1
            task.cancel()

    def expire_idle(self, now: float | None = None, among: Iterable[JobSet] | None = None) -> int:
        """End the subscriptions whose job set was not polled for the expiry time.

        *among*: look only at these job sets (the writer's full pass hands
        them over in slices, so the event loop is never held for all at once).
        A job set with an open watch counts as polled (``WatchJobs``).
        """
        now = time.monotonic() if now is None else now
        expired = 0
        for js in self._job_sets.values() if among is None else among:
            if js.stream is not None and now - js.last_poll > self.expiry_s and not js.watched:
                self._stop(js)
                expired += 1
                log.info("unsubscribed from job set %s: no poll for %.0f s", js.key, self.expiry_s)
        return expired

    def evict_clean(self, among: Iterable[JobSet] | None = None) -> int:
        """Drop unsubscribed job sets whose data the database fully holds.

        *among*: look only at these job sets (as for ``expire_idle``).
        """
        job_sets = self._job_sets
        gone = [
            js.key
            for js in (job_sets.values() if among is None else among)
            if job_sets.get(js.key) is js
            and js.stream is None
            and not self.loader.is_loading(js.key)
            and (not js.loaded or js.is_clean())
        ]
        for key in gone:
            del job_sets[key]
        return len(gone)

    def cached_jobs(self) -> int:
        """Jobs held in memory."""
        return sum(len(js) for js in self._job_sets.values())

    def __iter__(self) -> Iterator[JobSet]:
        return iter(self._job_sets.values())

    def __len__(self) -> int:
        return len(self._job_sets)

    async def close(self) -> None:
        """Cancel every stream and wait for them and the reads in flight to end; idempotent."""
        self._closed = True
        tasks = [js.stream for js in self._job_sets.values() if js.stream is not None]
        for js in self._job_sets.values():
            self._stop(js)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.loader.close()
