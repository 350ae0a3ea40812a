"""One replica of a fleet: which job sets it owns, and how it keeps, loses and takes them.

Several ``serve`` processes on one PostgreSQL database form a fleet with no
other coordination. Each cached job set has one task (``drive``): it loads
the job set, then either owns it (holds its lease and reads Armada's event
stream) or follows it (answers polls from rows the owner wrote, read every
``follow_s``), and switches between the two as leases are won and lost.

Leases (``job_set_owners``) are claimed, renewed every ``renew_s`` and
expire ``lease_ttl_s`` after their last renewal, by the database's clock. A
replica keeps, per owned job set, a local deadline: the monotonic time it
sent the last successful claim or renewal, plus the lease time, minus
``fence_margin_s``. Past that deadline it stops the stream whatever the
database says, so that it has stopped before any other replica can claim
the job set (fencing); its writes carry the lease's epoch and are refused
once another replica holds it. Every ``sweep_s`` a replica with room claims
the job sets that were polled lately and that nobody holds (their owner
died, stopped, or expired them), so a killed replica's job sets move within
about ``lease_ttl_s + sweep_s``, and a stopped replica's (it releases its
leases after its last flush) within about ``sweep_s``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.fleet.db import Claimed, Failure, FleetDB
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.store.thread import AsyncStore
from armada_jobservice.server.streams import EventStreams

if TYPE_CHECKING:
    from armada_jobservice.server.subscriptions import SubscriptionManager

log = logging.getLogger(__name__)

#: Most job sets this replica remembers to record as wanted (polled here, no room).
MAX_ASKS = 10_000


def _pass_on(
    target: asyncio.Future[Claimed | None], source: asyncio.Future[Claimed | None]
) -> None:
    if not target.done():
        target.set_result(None if source.cancelled() else source.result())


class Fleet:
    """This replica's leases, and the loops that renew, fence, sweep and follow."""

    def __init__(
        self,
        db: FleetDB,
        streams: EventStreams,
        store: AsyncStore,
        *,
        lease_ttl_s: float,
        max_owned: int,
        polled_within_s: float,
        renew_s: float | None = None,
        fence_margin_s: float | None = None,
        sweep_s: float = 1.0,
        follow_s: float = 0.1,
    ) -> None:
        self.db = db
        self.streams = streams
        self.store = store
        self.name = db.owner
        self.lease_ttl_s = lease_ttl_s
        self.renew_s = renew_s if renew_s is not None else lease_ttl_s / 5
        self.fence_margin_s = fence_margin_s if fence_margin_s is not None else lease_ttl_s / 5
        self.max_owned = max_owned
        self.polled_within_s = polled_within_s
        self.sweep_s = sweep_s
        self.follow_s = follow_s
        self._subs: SubscriptionManager | None = None
        #: Epoch of each lease held, and its local deadline.
        self._owned: dict[JobSetKey, int] = {}
        self._deadline: dict[JobSetKey, float] = {}
        #: Set when the lease of an owned job set is lost; its driver stops streaming.
        self._lost: dict[JobSetKey, asyncio.Event] = {}
        #: Drivers waiting to try a claim again (set by the sweep when it sees the job set free).
        self._wake: dict[JobSetKey, asyncio.Event] = {}
        #: Claims asked for and not yet sent, batched by the claim loop.
        self._claims: dict[JobSetKey, asyncio.Future[Claimed | None]] = {}
        self._claim_wake = asyncio.Event()
        #: Job sets polled here that this replica has no room for, to record as wanted.
        self._asks: set[JobSetKey] = set()
        #: Poll times set from other replicas' reports, by job set.
        self._remote_poll: dict[JobSetKey, float] = {}
        #: Failure reports already sent, by owned job set.
        self._reported: dict[JobSetKey, tuple[str, bool] | None] = {}
        #: Follower reads start from here; job sets followed since carry their own start.
        self._horizon = 0
        self._since: dict[JobSetKey, int] = {}
        self._last_renewal = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        #: Takeovers (claims won) and leases lost, for metrics and tests.
        self.claims_won = 0
        self.leases_lost = 0

    # -- wiring ------------------------------------------------------------

    def bind(self, subscriptions: SubscriptionManager) -> None:
        """Give the fleet the job sets it works on (they are made after the fleet)."""
        self._subs = subscriptions

    @property
    def owned(self) -> dict[JobSetKey, int]:
        """The leases held now: job set -> epoch (read only, by convention)."""
        return self._owned

    def epoch(self, key: JobSetKey) -> int | None:
        """The epoch of this replica's lease on *key*, or None when it does not own it."""
        return self._owned.get(key)

    async def start(self) -> None:
        """Learn the follower horizon, then start the loops."""
        await self.db.open()
        self._horizon = await self.db.horizon()
        loop = asyncio.get_running_loop()
        named: list[tuple[str, Callable[[], object]]] = [
            ("claims", self._claim_loop),
            ("renewals", self._renew_loop),
            ("fence", self._fence_loop),
            ("sweep", self._sweep_loop),
            ("follow", self._follow_loop),
        ]
        self._tasks = [
            loop.create_task(fn(), name=f"fleet {name}")  # type: ignore[arg-type]
            for name, fn in named
        ]
        log.info(
            "fleet replica %s: lease %.0f s, renewed every %.1f s",
            self.name,
            self.lease_ttl_s,
            self.renew_s,
        )

    async def stop_loops(self) -> None:
        """Stop claiming, renewing, sweeping and following (streams stop with their drivers)."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for future in self._claims.values():
            if not future.done():
                future.set_result(None)
        self._claims.clear()

    async def release_all(self) -> int:
        """Give up every lease held (after the final flush), so others take over at once."""
        keys = list(self._owned)
        for key in keys:
            self._forget(key)
        if not keys:
            return 0
        try:
            released = await self.db.release(keys)
        except StoreError as exc:
            log.warning("could not release %d leases (they expire): %s", len(keys), exc)
            return 0
        log.info("released %d job sets to the fleet", released)
        return released

    async def close(self) -> None:
        """Close the fleet's database connection."""
        await self.db.close()

    # -- one job set -------------------------------------------------------

    async def drive(self, js: JobSet) -> None:
        """The task of a cached job set: load it, then own it whenever this replica can."""
        key = js.key
        # Before the load: rows written after it are read from this horizon on.
        self._since.setdefault(key, self._horizon)
        try:
            await self.streams.load(js)
            while True:
                claimed = await self._acquire(key)
                # Taken now: the lease may be lost while the stored jobs are read.
                lost = self._lost[key]
                try:
                    stored = await self.store.load_job_sets([key])
                except StoreError as exc:
                    log.warning("took over %s but cannot read it: %s; giving it back", key, exc)
                    await self._give_back(key)
                    await asyncio.sleep(self.sweep_s)
                    continue
                found = stored.get(key)
                if found is not None:
                    js.merge_stored(found.rows)
                js.adopt(claimed.last_message_id)
                log.info(
                    "owning job set %s (epoch %d) from %s",
                    key,
                    claimed.epoch,
                    claimed.last_message_id or "the start",
                )
                await self._stream_while_owned(js, lost)
                self._since[key] = self._horizon
        finally:
            self._since.pop(key, None)
            self._wake.pop(key, None)
            if key in self._owned and not self._closing:
                # Expired here: nobody polls it anywhere; let it go at once.
                self._forget(key)
                asyncio.get_running_loop().create_task(self._release_one(key))

    async def _stream_while_owned(self, js: JobSet, lost: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self.streams.read_events(js), name=f"events {js.key}")
        waiter = loop.create_task(lost.wait())
        try:
            await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            waiter.cancel()
            await asyncio.gather(reader, waiter, return_exceptions=True)

    async def _acquire(self, key: JobSetKey) -> Claimed:
        """Wait until this replica holds the lease of *key*; meanwhile the job set is followed."""
        loop = asyncio.get_running_loop()
        while True:
            wake = self._wake.setdefault(key, asyncio.Event())
            wake.clear()
            future = self._claims.get(key)
            if future is None:
                future = self._claims[key] = loop.create_future()
                self._claim_wake.set()
            claimed = await future
            if claimed is not None:
                return claimed
            await wake.wait()

    def ask_soon(self, key: JobSetKey) -> None:
        """Record soon that *key* was polled here but this replica has no room for it."""
        # Bounded: a flood of new job sets while the database is away must not
        # grow this without end; a job set left out is asked for by its next poll.
        if len(self._asks) < MAX_ASKS:
            self._asks.add(key)
        self._claim_wake.set()

    async def _give_back(self, key: JobSetKey) -> None:
        self._forget(key)
        await self._release_one(key)

    async def _release_one(self, key: JobSetKey) -> None:
        try:
            await self.db.release([key])
        except StoreError as exc:
            log.warning("could not release %s (it expires by itself): %s", key, exc)

    def _forget(self, key: JobSetKey) -> None:
        self._owned.pop(key, None)
        self._deadline.pop(key, None)
        self._reported.pop(key, None)
        self._remote_poll.pop(key, None)
        lost = self._lost.pop(key, None)
        if lost is not None:
            lost.set()

    def lose(self, key: JobSetKey, why: str) -> None:
        """Stop owning *key* now: its stream stops; it is followed until claimed again."""
        if key not in self._owned:
            return
        self._forget(key)
        self._since[key] = self._horizon
        self.leases_lost += 1
        log.warning("lost the lease of job set %s: %s; its stream is stopped", key, why)

    # -- loops -------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            await self._claim_wake.wait()
            self._claim_wake.clear()
            # Let the first polls arriving together join one batch.
            await asyncio.sleep(0.005)
            batch, self._claims = self._claims, {}
            asks, self._asks = self._asks, set()
            room = max(0, self.max_owned - len(self._owned))
            keys = list(batch)[:room]
            asks.update(list(batch)[len(keys) :])
            sent = time.monotonic()
            try:
                won = await self.db.claim(keys, self.lease_ttl_s) if keys else []
            except StoreError as exc:
                # Asked again after a pause: a first poll's claim is not dropped.
                log.warning("cannot claim %d job sets: %s", len(keys), exc)
                self._retry_later(batch)
                continue
            for claimed in won:
                key = claimed.key
                self._owned[key] = claimed.epoch
                self._deadline[key] = sent + self.lease_ttl_s - self.fence_margin_s
                self._lost[key] = asyncio.Event()
                self.claims_won += 1
            if asks:
                try:
                    await self.db.ask(list(asks))
                except StoreError as exc:
                    log.warning("cannot hand %d job sets to the fleet: %s", len(asks), exc)
            by_key = {c.key: c for c in won}
            for key, future in batch.items():
                if not future.done():
                    future.set_result(by_key.get(key))
            if len(batch) > len(keys):
                log.warning(
                    "%d job sets not claimed: %d owned already (max_subscriptions)",
                    len(batch) - len(keys),
                    len(self._owned),
                )

    def _retry_later(self, batch: dict[JobSetKey, asyncio.Future[Claimed | None]]) -> None:
        async def later() -> None:
            await asyncio.sleep(self.sweep_s)
            for key, future in batch.items():
                if future.done():
                    continue
                pending = self._claims.get(key)
                if pending is None:
                    self._claims[key] = future
                else:
                    pending.add_done_callback(functools.partial(_pass_on, future))
            self._claim_wake.set()

        task = asyncio.get_running_loop().create_task(later(), name="fleet claim retry")
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.renew_s)
            try:
                await self.renew_once()
            except StoreError as exc:
                log.warning("cannot renew leases: %s", exc)
            except Exception:
                log.exception("lease renewal failed")

    async def renew_once(self) -> None:
        """Renew every lease held; report polls seen here and stream failures."""
        subs = self._subs
        since = self._last_renewal
        # Polls seen here since the last renewal; a poll time set from another
        # replica's report (below) is not one, or two replicas would keep
        # reporting each other's polls forever. An open watch is a poll at
        # every renewal, so the owner keeps a job set watched here.
        remote = self._remote_poll
        polled = (
            [
                js.key
                for js in subs
                if js.watched or (js.last_poll > since and js.last_poll != remote.get(js.key))
            ]
            if subs is not None
            else []
        )
        failures: dict[JobSetKey, Failure | None] = {}
        job_sets = subs.job_sets if subs is not None else {}
        # The leases this renewal is about: one claimed while it is on its way
        # is not in it, and must not be judged by its answer.
        owned = dict(self._owned)
        for key in owned:
            js = job_sets.get(key)
            report = js.failure if js is not None else None
            if report != self._reported.get(key):
                failures[key] = None if report is None else Failure(report[0], report[1], 0.0)
        sent = time.monotonic()
        # Only the leases known here are renewed: one whose claim's answer was lost
        # (the connection broke at commit) expires and is swept up as any other.
        renewal = await self.db.renew(self.lease_ttl_s, list(owned), polled, failures)
        self._last_renewal = sent
        for key, failure in failures.items():
            if key in self._owned:
                self._reported[key] = None if failure is None else (failure.text, failure.refused)
        now = time.monotonic()
        for key, epoch in owned.items():
            if self._owned.get(key) != epoch:
                continue  # released, lost or claimed anew meanwhile
            if renewal.held.get(key) != epoch:
                self.lose(key, "the database no longer names this replica its owner")
                continue
            self._deadline[key] = sent + self.lease_ttl_s - self.fence_margin_s
            js = job_sets.get(key)
            ago = renewal.polled_ago_s.get(key)
            if js is not None and ago is not None and now - ago > js.last_poll:
                js.touch(now - ago)
                remote[key] = js.last_poll

    async def _fence_loop(self) -> None:
        step = min(0.25, self.fence_margin_s / 4)
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            for key, deadline in list(self._deadline.items()):
                if now > deadline:
                    self.lose(key, "its lease could not be renewed in time")

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_s)
            try:
                await self.sweep_once()
            except StoreError as exc:
                log.debug("sweep: %s", exc)
            except Exception:
                log.exception("fleet sweep failed")

    async def sweep_once(self) -> int:
        """Take the job sets polled lately that nobody holds; return how many were asked for."""
        room = self.max_owned - len(self._owned)
        subs = self._subs
        if room <= 0 or subs is None:
            return 0
        free = await self.db.orphans(self.polled_within_s, room)
        now = time.monotonic()
        for key, polled_ago in free:
            wake = self._wake.get(key)
            if wake is not None:
                wake.set()
            elif key not in subs.job_sets or subs.job_sets[key].stream is None:
                try:
                    # As polled when it was last polled anywhere, not now: it
                    # expires here as it would have where it was polled.
                    subs.subscribe(key, now - polled_ago)
                except Exception as exc:  # the limit, or shutting down
                    log.debug("not taking over %s: %s", key, exc)
        return len(free)

    async def _follow_loop(self) -> None:
        while True:
            await asyncio.sleep(self.follow_s)
            try:
                await self.follow_once()
            except StoreError as exc:
                log.debug("follow: %s", exc)
            except Exception:
                log.exception("fleet follow failed")

    async def follow_once(self) -> int:
        """Read what other replicas wrote for the job sets followed here; return rows applied."""
        subs = self._subs
        if subs is None:
            return 0
        job_sets = subs.job_sets
        followed = [k for k, js in job_sets.items() if js.loaded and k not in self._owned]
        if not followed:
            self._horizon = await self.db.horizon()
            return 0
        start = min([self._horizon, *(self._since.get(k, self._horizon) for k in followed)])
        changes = await self.db.changes(start, followed)
        self._horizon = changes.horizon
        for key in followed:
            if self._since.get(key) is not None:
                self._since[key] = changes.horizon
        applied = 0
        by_key: dict[JobSetKey, list[object]] = {}
        for key, row in changes.rows:
            by_key.setdefault(key, []).append(row)
        now = time.monotonic()
        for key in followed:
            if key in self._owned:
                continue  # claimed meanwhile: the stream is the truth now
            js = job_sets.get(key)
            if js is None:
                continue
            rows = by_key.get(key)
            if rows:
                applied += js.merge_stored(rows)  # type: ignore[arg-type]
            failure = changes.failures.get(key)
            if failure is not None:
                js.mark_failing(now - failure.for_s, failure.text, refused=failure.refused)
            elif js.failing_since is not None:
                js.mark_healthy()
        return applied
