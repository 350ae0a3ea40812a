"""Subscriptions: one event stream per polled job set, and the cache it feeds.

The first poll of a (queue, job set) creates its ``JobSet`` and starts one
task that loads what the database holds, then reads Armada's
``GetJobSetEvents`` stream (``watch=true``) from the stored position. All of
it happens on the event loop's thread, and the check-then-create of a
subscription contains no ``await``: however many first polls arrive at once,
exactly one stream opens.

A broken or ended stream is re-opened with capped exponential backoff and
jitter, resuming after the last event applied. A subscription ends when its
job set has not been polled for ``subscription_expiry_s``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator

import grpc
from armada_client.armada import event_pb2, event_pb2_grpc

from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.errors import JobServiceError, StoreError
from armada_jobservice.server.metrics import Metrics
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.store.thread import AsyncStore
from armada_jobservice.server.upstream import Upstream

log = logging.getLogger(__name__)

# Armada saying no, rather than Armada being unreachable: polls learn of it at once.
REFUSALS = frozenset(
    {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED}
)


class SubscriptionLimitReached(JobServiceError):
    """Opening one more event stream would exceed ``max_subscriptions``."""


def backoff_s(attempt: int, base_s: float, cap_s: float, rand: random.Random) -> float:
    """Delay before reconnect number *attempt* (0-based): exponential, capped, jittered.

    "Equal jitter": half the exponential step is kept, the other half drawn at
    random, so thousands of streams broken at once do not reconnect together
    yet none retries much sooner than its step.
    """
    step = min(cap_s, base_s * (2.0**attempt))
    return step / 2 + rand.uniform(0, step / 2)


class SubscriptionManager:
    """Owns the cached job sets and the stream task of each subscribed one."""

    def __init__(
        self,
        upstream: Upstream,
        store: AsyncStore,
        metrics: Metrics,
        *,
        max_subscriptions: int,
        subscription_expiry_s: float,
        connection_error_grace_s: float,
        reconnect_max_backoff_s: float,
        reconnect_base_backoff_s: float = 0.5,
        stable_after_s: float = 5.0,
        seed: int | None = None,
    ) -> None:
        self.upstream = upstream
        self.store = store
        self.metrics = metrics
        self.max_subscriptions = max_subscriptions
        self.expiry_s = subscription_expiry_s
        self.grace_s = connection_error_grace_s
        self.backoff_cap_s = reconnect_max_backoff_s
        self.backoff_base_s = reconnect_base_backoff_s
        self.stable_after_s = stable_after_s
        self._rand = random.Random(seed)
        self.job_sets: dict[JobSetKey, JobSet] = {}
        #: Job sets that received events since the writer last took them.
        self.changed: set[JobSet] = set()
        self.active = 0
        #: Job sets whose stored rows are being read, and those queued for the next read.
        self._loading: dict[JobSetKey, asyncio.Future[None]] = {}
        self._to_load: list[JobSet] = []
        self._reader: asyncio.Task[None] | None = None
        self._stub = event_pb2_grpc.EventStub(upstream.channel)  # type: ignore[no-untyped-call]
        self._closed = False

    # -- polls ---------------------------------------------------------------

    def subscribe(self, key: JobSetKey, now: float) -> JobSet:
        """The job set for a poll, subscribing to it first if it is not subscribed.

        Synchronous on purpose: no other coroutine can run between the check
        and the creation, so concurrent first polls share one stream.
        """
        js = self.job_sets.get(key)
        if js is None or js.stream is None:
            if self._closed:
                raise SubscriptionLimitReached("the service is shutting down")
            if self.active >= self.max_subscriptions:
                raise SubscriptionLimitReached(
                    f"subscription limit reached: {self.max_subscriptions} job sets are "
                    "subscribed already (max_subscriptions)"
                )
            if js is None:
                js = JobSet(key, now)
                self.job_sets[key] = js
            js.stream = asyncio.get_running_loop().create_task(self._run(js), name=f"events {key}")
            self.active += 1
            log.info("subscribed to job set %s (%d active)", key, self.active)
        js.last_poll = now
        return js

    async def ensure_loaded(self, js: JobSet) -> None:
        """Wait until the stored jobs of *js* are in memory; raise ``StoreError`` if unreadable.

        One read is in flight at a time; the first polls that arrive meanwhile
        are read together by the next, in one thread hop and one query. An idle
        service reads a lone first poll at once; a busy one batches by itself.
        """
        if js.loaded:
            return
        future = self._loading.get(js.key)
        if future is None:
            future = self._loading[js.key] = asyncio.get_running_loop().create_future()
            self._to_load.append(js)
            if self._reader is None:
                self._reader = asyncio.get_running_loop().create_task(
                    self._read_stored(), name="load job sets"
                )
        await asyncio.shield(future)

    async def _read_stored(self) -> None:
        batch: list[JobSet] = []
        try:
            while self._to_load:
                batch, self._to_load = self._to_load, []
                await self._load(batch)
        except BaseException:
            # Cancelled (shutdown): no poll may wait forever for a read that will not come.
            for js in batch + self._to_load:
                future = self._loading.pop(js.key, None)
                if future is not None:
                    future.cancel()
            self._to_load = []
            raise
        finally:
            self._reader = None

    async def _load(self, batch: list[JobSet]) -> None:
        try:
            stored = await self.store.load_job_sets([js.key for js in batch])
        except StoreError as exc:
            for js in batch:
                future = self._loading.pop(js.key)
                future.set_exception(exc)
                future.exception()  # retrieved here: a poll that gave up may not await it
            return
        for js in batch:
            found = stored.get(js.key)
            if found is None:
                js.load(None, [])
            else:
                js.load(found.last_message_id, found.rows)
                js.persisted_activity = found.last_activity
            self._loading.pop(js.key).set_result(None)
        log.debug("loaded %d job sets from the database", len(batch))

    # -- streams -------------------------------------------------------------

    async def _run(self, js: JobSet) -> None:
        """Load, then keep the job set's event stream open until cancelled."""
        me = asyncio.current_task()
        try:
            await self._load_with_retry(js)
            attempt = 0
            while True:
                if await self._stream_once(js):
                    attempt = 0
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("event stream task of %s failed", js.key)
        finally:
            # Unless _stop() already detached this task (expiry, shutdown).
            if js.stream is me:
                js.stream = None
                self.active -= 1

    async def _load_with_retry(self, js: JobSet) -> None:
        attempt = 0
        while True:
            try:
                await self.ensure_loaded(js)
            except StoreError as exc:
                js.mark_failing(time.monotonic(), f"job service database: {exc}", True)
                log.error("cannot load job set %s: %s", js.key, exc)
            else:
                if attempt:
                    js.mark_healthy()
                return
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    def _stop(self, js: JobSet) -> None:
        task, js.stream = js.stream, None
        if task is not None:
            self.active -= 1
            task.cancel()

    def _backoff(self, attempt: int) -> float:
        return backoff_s(attempt, self.backoff_base_s, self.backoff_cap_s, self._rand)

    async def _stream_once(self, js: JobSet) -> bool:
        """Read one stream until it ends; return whether it worked for a while."""
        queue, job_set_id = js.key
        request = event_pb2.JobSetRequest(
            id=job_set_id, queue=queue, watch=True, from_message_id=js.last_message_id or ""
        )
        loop = asyncio.get_running_loop()
        metrics = self.metrics
        call = self._stub.GetJobSetEvents(request, metadata=self.upstream.call_metadata())
        state = {"stable": False}

        def stable() -> None:
            state["stable"] = True
            js.mark_healthy()

        timer = loop.call_later(self.stable_after_s, stable)
        received = 0
        changed = self.changed  # cleared in place by the writer, never replaced
        try:
            async for msg in call:
                if received == 0 and js.failing_since is not None:
                    js.mark_healthy()
                received += 1
                metrics.events_received += 1
                js.last_event = time.monotonic()
                changed.add(js)
                if js.apply(msg.id, msg.message):
                    metrics.events_applied += 1
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            text = f"Armada event stream of {js.key}: {code.name}: {exc.details()}"
            js.mark_failing(time.monotonic(), text, code in REFUSALS)
            metrics.count_reconnect(code.name)
            log.warning("%s (after %d events); reconnecting", text, received)
            return received > 0 or state["stable"]
        except Exception as exc:  # anything else (bad credentials file...) is a failure too
            text = f"Armada event stream of {js.key}: {exc}"
            js.mark_failing(time.monotonic(), text, False)
            metrics.count_reconnect(type(exc).__name__)
            log.warning("%s (after %d events); reconnecting", text, received)
            return received > 0 or state["stable"]
        finally:
            timer.cancel()
            call.cancel()
        metrics.count_reconnect("ended")
        log.info("event stream of %s ended after %d events; reconnecting", js.key, received)
        return received > 0 or state["stable"]

    # -- housekeeping --------------------------------------------------------

    def expire_idle(self, now: float | None = None) -> int:
        """End the subscriptions whose job set was not polled for the expiry time."""
        now = time.monotonic() if now is None else now
        expired = 0
        for js in self.job_sets.values():
            if js.stream is not None and now - js.last_poll > self.expiry_s:
                self._stop(js)
                expired += 1
                log.info("unsubscribed from job set %s: no poll for %.0f s", js.key, self.expiry_s)
        return expired

    def take_changed(self) -> list[JobSet]:
        """The job sets that received events since the last call, forgetting them."""
        taken = list(self.changed)
        self.changed.clear()
        return taken

    def evict_clean(self) -> int:
        """Drop unsubscribed job sets whose data the database fully holds."""
        gone = [
            key
            for key, js in self.job_sets.items()
            if js.stream is None and key not in self._loading and (not js.loaded or js.is_clean())
        ]
        for key in gone:
            del self.job_sets[key]
        return len(gone)

    def cached_jobs(self) -> int:
        """Jobs held in memory."""
        return sum(len(js.states) for js in self.job_sets.values())

    def __iter__(self) -> Iterator[JobSet]:
        return iter(self.job_sets.values())

    async def close(self) -> None:
        """Cancel every stream and wait for them to end; idempotent."""
        self._closed = True
        tasks = [js.stream for js in self.job_sets.values() if js.stream is not None]
        for js in self.job_sets.values():
            self._stop(js)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        loading = list(self._loading.values())
        if loading:
            await asyncio.gather(*loading, return_exceptions=True)
