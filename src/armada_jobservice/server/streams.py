"""Reading one job set's events from Armada: the stream loop and its backoff.

A subscribed job set's task first waits for its stored jobs (retrying while
the database cannot be read), then reads Armada's ``GetJobSetEvents`` stream
(``watch=true``) from the stored position. A broken or ended stream is
re-opened with capped exponential backoff and jitter, resuming after the last
event applied.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Protocol

import grpc
from armada_client.armada import event_pb2, event_pb2_grpc

from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.changes import ChangeTracker
from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.loader import JobSetLoader
from armada_jobservice.server.metrics import Metrics
from armada_jobservice.server.upstream import Upstream

log = logging.getLogger(__name__)


class StreamWatcher(Protocol):
    """What wants to know when a job set's event stream opens and ends."""

    def stream_opened(self, js: JobSet, now: float) -> None:
        """An event stream of *js* opened at monotonic *now*."""

    def stream_closed(self, js: JobSet) -> None:
        """The event stream of *js* ended."""


#: Armada saying no, rather than Armada being unreachable: polls learn of it at once.
REFUSALS = frozenset(
    {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED}
)


def backoff_s(attempt: int, base_s: float, cap_s: float, rand: random.Random) -> float:
    """Delay before reconnect number *attempt* (0-based): exponential, capped, jittered.

    "Equal jitter": half the exponential step is kept, the other half drawn at
    random, so thousands of streams broken at once do not reconnect together
    yet none retries much sooner than its step.
    """
    step = min(cap_s, base_s * (2.0**attempt))
    return step / 2 + rand.uniform(0, step / 2)


#: Stream breaks of one kind are logged in full once per this long; the
#: others within it are logged at DEBUG and summed up in one line.
BREAK_LOG_S = 10.0


class BreakLog:
    """Logs stream breaks without a flood when every job set's stream breaks at once.

    An Armada outage breaks every stream, each retried with its own backoff:
    10,000 subscriptions would write hundreds of lines a second. Per reason
    (the gRPC code, or ``ended``), the first break of a window is logged as
    it is; the rest of the window go to DEBUG, and at the window's end one
    line says how many there were. Every break is still counted in
    ``armada_jobservice_stream_reconnects_total``.
    """

    def __init__(self, logger: logging.Logger, window_s: float = BREAK_LOG_S) -> None:
        self._log = logger
        self.window_s = window_s
        #: reason -> [end of the window, breaks not logged in it]
        self._windows: dict[str, list[float]] = {}

    def report(self, level: int, reason: str, message: str, *args: object) -> None:
        """Log one break of *reason*, or count it if one was logged within the window."""
        now = time.monotonic()
        window = self._windows.get(reason)
        if window is None or now >= window[0]:
            self._windows[reason] = [now + self.window_s, 0]
            self._log.log(level, message, *args)
            return
        if not window[1]:
            delay = window[0] - now
            asyncio.get_running_loop().call_later(delay, self._sum_up, reason, level)
        window[1] += 1
        self._log.debug(message, *args)

    def _sum_up(self, reason: str, level: int) -> None:
        window = self._windows.get(reason)
        if window is not None and window[1]:
            self._log.log(
                level,
                "%d more event streams broke (%s) in the %g s after the line above; "
                "each reconnects with its own backoff",
                window[1],
                reason,
                self.window_s,
            )
            window[1] = 0


class EventStreams:
    """Runs the event stream of a job set: load it, then read events until cancelled."""

    def __init__(
        self,
        upstream: Upstream,
        loader: JobSetLoader,
        changes: ChangeTracker,
        metrics: Metrics,
        *,
        reconnect_max_backoff_s: float,
        reconnect_base_backoff_s: float = 0.5,
        stable_after_s: float = 5.0,
        seed: int | None = None,
    ) -> None:
        self.upstream = upstream
        self.loader = loader
        self.changes = changes
        self.metrics = metrics
        self.backoff_cap_s = reconnect_max_backoff_s
        self.backoff_base_s = reconnect_base_backoff_s
        #: A stream that stayed open this long counts as working, even without events.
        self.stable_after_s = stable_after_s
        self._rand = random.Random(seed)
        self._stub = event_pb2_grpc.EventStub(upstream.channel)  # type: ignore[no-untyped-call]
        #: Told when a stream opens and ends (``backfill``: has it caught up?).
        self.watcher: StreamWatcher | None = None
        self.breaks = BreakLog(log)

    async def run(self, js: JobSet) -> None:
        """Load *js*, then keep its event stream open until cancelled."""
        await self.load(js)
        await self.read_events(js)

    async def load(self, js: JobSet) -> None:
        """Wait until the stored jobs of *js* are in memory, retrying while the database fails."""
        await self._load_with_retry(js)

    async def read_events(self, js: JobSet) -> None:
        """Keep the event stream of a loaded *js* open from its position until cancelled."""
        attempt = 0
        while True:
            if await self._stream_once(js):
                attempt = 0
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    async def _load_with_retry(self, js: JobSet) -> None:
        attempt = 0
        while True:
            try:
                await self.loader.ensure_loaded(js)
            except StoreError as exc:
                js.mark_failing(time.monotonic(), f"job service database: {exc}", refused=True)
                log.error("cannot load job set %s: %s", js.key, exc)
            else:
                if attempt:
                    js.mark_healthy()
                return
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

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
        event = self.changes.event
        apply = js.apply
        monotonic = time.monotonic
        sent = self.upstream.call_metadata()
        call = self._stub.GetJobSetEvents(request, metadata=sent)
        stable = False

        def became_stable() -> None:
            nonlocal stable
            stable = True
            js.mark_healthy()

        timer = loop.call_later(self.stable_after_s, became_stable)
        received = 0
        watcher = self.watcher
        if watcher is not None:
            watcher.stream_opened(js, monotonic())
        try:
            async for msg in call:
                if msg is None:  # what gRPC yields for bytes protobuf cannot parse
                    raise ValueError("Armada sent a message that cannot be parsed")
                if received == 0 and js.failing_since is not None:
                    js.mark_healthy()
                received += 1
                event(js)
                if apply(msg.id, msg.message, monotonic()):
                    metrics.events_applied += 1
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code is grpc.StatusCode.UNAUTHENTICATED:
                self.upstream.refused(sent)
            text = f"Armada event stream of {js.key}: {code.name}: {exc.details()}"
            js.mark_failing(time.monotonic(), text, refused=code in REFUSALS)
            metrics.count_reconnect(code.name)
            self.breaks.report(
                logging.WARNING, code.name, "%s (after %d events); reconnecting", text, received
            )
            return received > 0 or stable
        except Exception as exc:  # anything else (bad credentials file...) is a failure too
            text = f"Armada event stream of {js.key}: {exc}"
            js.mark_failing(time.monotonic(), text, refused=False)
            metrics.count_reconnect(type(exc).__name__)
            self.breaks.report(
                logging.WARNING,
                type(exc).__name__,
                "%s (after %d events); reconnecting",
                text,
                received,
            )
            return received > 0 or stable
        finally:
            if watcher is not None:
                watcher.stream_closed(js)
            timer.cancel()
            call.cancel()
        metrics.count_reconnect("ended")
        self.breaks.report(
            logging.INFO,
            "ended",
            "event stream of %s ended after %d events; reconnecting",
            js.key,
            received,
        )
        return received > 0 or stable
