"""The fleet's table in PostgreSQL: who owns which job set, until when, and what followers read.

Every query here runs on the event loop (psycopg's asyncio connection), on
connections of the fleet's own: one for leases, one for what followers and
sweeps read. So renewing leases never waits behind a large flush on the
store's thread nor behind a large read, and it takes its turn on the event
loop like any poll. (On a thread of its own, a renewal was starved of the
GIL for seconds while the event loop answered polls at full speed, which
cost healthy replicas their leases.) Times are the database's (``now()``),
never a replica's clock.

``job_set_owners`` holds one row per job set the fleet has been asked
about: its owner (a replica name, NULL once released), the lease's epoch
(raised by every claim, the fencing token of the owner's writes), when the
lease expires, when any replica last saw a poll of it, and the owner's
report of a failing stream (so that every replica answers CONNECTION_ERR
alike). ``jobs`` carries the id of the transaction that last wrote each row
(``xid``), from which followers read what changed. Both come with schema
version 2 (``store/migrations.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.model import JobRow, JobSetKey

T = TypeVar("T")
log = logging.getLogger(__name__)

#: A fleet query slower than this is logged: as slow as a renewal interval (ttl/5).
SLOW_S = 2.0
#: The connection for claims, renewals and releases, and the one for reads.
LEASES, READS = "leases", "reads"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A lease won: its epoch and where the stored job set stands."""

    key: JobSetKey
    epoch: int
    last_message_id: str | None


@dataclass(frozen=True, slots=True)
class Renewal:
    """The leases a renewal kept, with the latest poll any replica saw (seconds ago)."""

    held: dict[JobSetKey, int]
    polled_ago_s: dict[JobSetKey, float]


@dataclass(frozen=True, slots=True)
class Failure:
    """An owner's report that a job set's stream is failing."""

    text: str
    refused: bool
    #: Seconds since it began failing, by the database's clock.
    for_s: float


@dataclass(frozen=True, slots=True)
class Changes:
    """What followers read: rows written since the last horizon, and the next horizon."""

    rows: list[tuple[JobSetKey, JobRow]]
    failures: dict[JobSetKey, Failure]
    horizon: int


def _columns(keys: Iterable[JobSetKey]) -> tuple[list[str], list[str]]:
    keys = list(keys)
    return [k[0] for k in keys], [k[1] for k in keys]


async def _lock_in_order(cur: Any, keys: Iterable[JobSetKey]) -> None:
    """Lock the lease rows of *keys* for a change of their non-key columns, in key order.

    Renewals, poll reports and releases of several replicas touch
    overlapping rows; taking every row lock up front in one order means
    they may wait for one another but never deadlock. ``FOR NO KEY UPDATE``
    does not wait for a flush (``FOR KEY SHARE``); claims never wait at all.
    """
    await cur.execute(
        """
        SELECT 1 FROM job_set_owners o
        JOIN unnest(%s::text[], %s::text[]) AS f(queue, job_set_id)
          ON o.queue = f.queue AND o.job_set_id = f.job_set_id
        ORDER BY o.queue, o.job_set_id
        FOR NO KEY UPDATE OF o
        """,
        _columns(keys),
    )


class FleetDB:
    """The fleet's queries, on its own PostgreSQL connections, on the event loop."""

    def __init__(self, url: str, owner: str) -> None:
        self.url = url
        #: This replica's name in ``job_set_owners.owner``.
        self.owner = owner
        self._conns: dict[str, Any] = {}
        self._locks = {LEASES: asyncio.Lock(), READS: asyncio.Lock()}
        self._closing: set[asyncio.Task[None]] = set()

    # -- plumbing ----------------------------------------------------------

    async def _connection(self, name: str) -> Any:
        import psycopg

        conn = self._conns.get(name)
        if conn is None or conn.closed:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url,
                    autocommit=False,
                    connect_timeout=5,
                    application_name=f"armada-jobservice {self.owner} fleet {name}",
                )
            except psycopg.Error as exc:
                raise StoreError(f"fleet: cannot connect to PostgreSQL: {exc}".strip()) from exc
            self._conns[name] = conn
        return conn

    def _drop(self, name: str) -> None:
        """Forget a connection that may be mid-query; the next transaction opens another."""
        conn = self._conns.pop(name, None)
        if conn is not None and not conn.closed:
            task = asyncio.get_running_loop().create_task(conn.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _transaction(
        self, name: str, fn: Callable[[Any], Awaitable[T]], *, snapshot: bool = False
    ) -> T:
        """Run *fn* with a cursor in one transaction on connection *name*, one at a time."""
        import psycopg

        asked = time.monotonic()
        async with self._locks[name]:
            began = time.monotonic()
            try:
                conn = await self._connection(name)
                level = (
                    psycopg.IsolationLevel.REPEATABLE_READ
                    if snapshot
                    else psycopg.IsolationLevel.READ_COMMITTED
                )
                if conn.isolation_level != level:
                    await conn.set_isolation_level(level)
                async with conn.transaction(), conn.cursor() as cur:
                    return await fn(cur)
            except psycopg.OperationalError as exc:
                self._drop(name)
                raise StoreError(f"fleet: PostgreSQL: {exc}".strip()) from exc
            except psycopg.Error as exc:
                raise StoreError(f"fleet: PostgreSQL: {exc}".strip()) from exc
            except asyncio.CancelledError:
                self._drop(name)
                raise
            finally:
                now = time.monotonic()
                if now - asked > SLOW_S:
                    log.warning(
                        "fleet query %s took %.1f s (%.1f s waiting for its connection)",
                        getattr(fn, "__qualname__", "?").split(".<locals>")[0],
                        now - asked,
                        began - asked,
                    )

    async def open(self) -> None:
        """Connect (the store created the fleet's table and columns)."""

        async def ping(cur: Any) -> None:
            await cur.execute("SELECT 1")

        await self._transaction(LEASES, ping)
        await self._transaction(READS, ping)

    async def close(self) -> None:
        """Close the connections; idempotent."""
        for name in list(self._conns):
            async with self._locks[name]:
                conn = self._conns.pop(name, None)
                if conn is not None:
                    await conn.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # -- leases ------------------------------------------------------------

    async def claim(self, keys: Sequence[JobSetKey], ttl_s: float) -> list[Claimed]:
        """Take the leases of *keys* that nobody holds (or whose lease expired)."""
        owner = self.owner

        async def claim(cur: Any) -> list[Claimed]:
            won = []
            for queue, job_set_id in sorted(keys):
                await cur.execute(
                    """
                    INSERT INTO job_set_owners AS o (queue, job_set_id, owner, epoch, expires_at)
                    VALUES (%s, %s, %s, 1, now() + make_interval(secs => %s))
                    ON CONFLICT (queue, job_set_id) DO NOTHING
                    RETURNING o.epoch,
                        (SELECT last_message_id FROM job_sets j
                         WHERE j.queue = o.queue AND j.job_set_id = o.job_set_id)
                    """,
                    (queue, job_set_id, owner, ttl_s),
                )
                row = await cur.fetchone()
                if row is not None:
                    won.append(Claimed(JobSetKey(queue, job_set_id), int(row[0]), row[1]))
                    continue
                # Only a row free to take is locked, and never waited for: one the
                # owner is flushing (FOR KEY SHARE) or another replica is claiming
                # is left for the next round. Holding FOR UPDATE, the position read
                # is the last one a fenced owner could write.
                await cur.execute(
                    """
                    UPDATE job_set_owners o SET
                        owner = %s, epoch = o.epoch + 1,
                        expires_at = now() + make_interval(secs => %s),
                        failure = NULL, refused = false, failing_since = NULL
                    FROM (
                        SELECT queue, job_set_id FROM job_set_owners
                        WHERE queue = %s AND job_set_id = %s
                          AND (owner IS NULL OR expires_at < now())
                        FOR UPDATE SKIP LOCKED
                    ) AS free
                    WHERE o.queue = free.queue AND o.job_set_id = free.job_set_id
                    RETURNING o.epoch,
                        (SELECT last_message_id FROM job_sets j
                         WHERE j.queue = o.queue AND j.job_set_id = o.job_set_id)
                    """,
                    (owner, ttl_s, queue, job_set_id),
                )
                row = await cur.fetchone()
                if row is not None:
                    won.append(Claimed(JobSetKey(queue, job_set_id), int(row[0]), row[1]))
            return won

        return await self._transaction(LEASES, claim)

    async def ask(self, keys: Sequence[JobSetKey]) -> None:
        """Record that *keys* were polled here though this replica will not own them.

        A job set nobody holds, polled lately, is what other replicas' sweeps
        take over: this is how a replica at its limit hands a first poll on.
        """
        if not keys:
            return

        async def ask(cur: Any) -> None:
            await cur.execute(
                """
                INSERT INTO job_set_owners (queue, job_set_id)
                SELECT * FROM unnest(%s::text[], %s::text[]) AS f ORDER BY 1, 2
                ON CONFLICT (queue, job_set_id) DO NOTHING
                """,
                _columns(keys),
            )
            await _lock_in_order(cur, keys)
            await cur.execute(
                """
                UPDATE job_set_owners o SET last_poll_at = now()
                FROM unnest(%s::text[], %s::text[]) AS f(queue, job_set_id)
                WHERE o.queue = f.queue AND o.job_set_id = f.job_set_id
                """,
                _columns(keys),
            )

        await self._transaction(LEASES, ask)

    async def renew(
        self,
        ttl_s: float,
        owned: Sequence[JobSetKey],
        polled: Iterable[JobSetKey],
        failures: dict[JobSetKey, Failure | None],
    ) -> Renewal:
        """Extend this replica's unexpired leases on *owned*; report polls and stream failures.

        *polled*: job sets this replica saw polled since the last renewal
        (owned or not); *failures*: owned job sets whose failure report
        changed (None: healthy again).
        """
        owner = self.owner
        polled = list(polled)

        async def renew(cur: Any) -> Renewal:
            await _lock_in_order(cur, [*owned, *polled])
            if polled:
                await cur.execute(
                    """
                    UPDATE job_set_owners o SET last_poll_at = now()
                    FROM unnest(%s::text[], %s::text[]) AS f(queue, job_set_id)
                    WHERE o.queue = f.queue AND o.job_set_id = f.job_set_id
                    """,
                    _columns(polled),
                )
            for (queue, job_set_id), failure in failures.items():
                if failure is None:
                    await cur.execute(
                        "UPDATE job_set_owners SET failure = NULL, refused = false, "
                        "failing_since = NULL WHERE queue = %s AND job_set_id = %s AND owner = %s",
                        (queue, job_set_id, owner),
                    )
                else:
                    await cur.execute(
                        "UPDATE job_set_owners SET failure = %s, refused = %s, "
                        "failing_since = COALESCE(failing_since, now()) "
                        "WHERE queue = %s AND job_set_id = %s AND owner = %s",
                        (failure.text, failure.refused, queue, job_set_id, owner),
                    )
            await cur.execute(
                """
                UPDATE job_set_owners o SET expires_at = now() + make_interval(secs => %s)
                FROM unnest(%s::text[], %s::text[]) AS f(queue, job_set_id)
                WHERE o.queue = f.queue AND o.job_set_id = f.job_set_id
                  AND o.owner = %s AND o.expires_at > now()
                RETURNING o.queue, o.job_set_id, o.epoch,
                    extract(epoch FROM now() - o.last_poll_at)::float8
                """,
                (ttl_s, [k[0] for k in owned], [k[1] for k in owned], owner),
            )
            held, ago = {}, {}
            for queue, job_set_id, epoch, polled_ago in await cur.fetchall():
                key = JobSetKey(queue, job_set_id)
                held[key] = int(epoch)
                ago[key] = float(polled_ago)
            return Renewal(held, ago)

        return await self._transaction(LEASES, renew)

    async def release(self, keys: Sequence[JobSetKey]) -> int:
        """Give up the leases of *keys* at once, so another replica may take them."""
        owner = self.owner
        if not keys:
            return 0

        async def release(cur: Any) -> int:
            await _lock_in_order(cur, keys)
            await cur.execute(
                """
                UPDATE job_set_owners SET owner = NULL, expires_at = now()
                WHERE owner = %s AND (queue, job_set_id) IN (
                    SELECT * FROM unnest(%s::text[], %s::text[]))
                """,
                (owner, [k[0] for k in keys], [k[1] for k in keys]),
            )
            return int(cur.rowcount)

        return await self._transaction(LEASES, release)

    async def orphans(self, polled_within_s: float, limit: int) -> list[tuple[JobSetKey, float]]:
        """Job sets polled lately whose lease nobody holds, with seconds since their last poll."""

        async def read(cur: Any) -> list[tuple[JobSetKey, float]]:
            await cur.execute(
                """
                SELECT queue, job_set_id, extract(epoch FROM now() - last_poll_at)::float8
                FROM job_set_owners
                WHERE (owner IS NULL OR expires_at < now())
                  AND last_poll_at > now() - make_interval(secs => %s)
                ORDER BY last_poll_at DESC LIMIT %s
                """,
                (polled_within_s, limit),
            )
            return [(JobSetKey(q, s), max(0.0, float(ago))) for q, s, ago in (await cur.fetchall())]

        return await self._transaction(READS, read)

    # -- followers ---------------------------------------------------------

    async def changes(self, horizon: int, followed: Sequence[JobSetKey]) -> Changes:
        """Rows of *followed* job sets written by transactions from *horizon* on.

        One snapshot: every transaction older than its oldest running one
        (``xmin``) is complete and visible, so the next read starts there and
        misses nothing; rows read twice are applied twice, harmlessly.
        """
        queues = [k[0] for k in followed]
        ids = [k[1] for k in followed]

        async def read(cur: Any) -> Changes:
            await cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            xmin = int((await cur.fetchone())[0])
            rows: list[tuple[JobSetKey, JobRow]] = []
            failures: dict[JobSetKey, Failure] = {}
            if followed:
                await cur.execute(
                    """
                    SELECT j.queue, j.job_set_id, j.job_id, j.state, j.error FROM jobs j
                    JOIN unnest(%s::text[], %s::text[]) AS f(queue, job_set_id)
                      ON j.queue = f.queue AND j.job_set_id = f.job_set_id
                    WHERE j.xid >= %s::text::xid8
                    """,
                    (queues, ids, str(horizon)),
                )
                found = await cur.fetchall()
                rows = [(JobSetKey(q, s), JobRow(j, st, e)) for q, s, j, st, e in found]
                await cur.execute(
                    """
                    SELECT o.queue, o.job_set_id, o.failure, o.refused,
                        extract(epoch FROM now() - o.failing_since)::float8,
                        o.owner IS NOT NULL AND o.expires_at > now(),
                        extract(epoch FROM now() - o.expires_at)::float8
                    FROM job_set_owners o
                    JOIN unnest(%s::text[], %s::text[]) AS f(queue, job_set_id)
                      ON o.queue = f.queue AND o.job_set_id = f.job_set_id
                    WHERE o.failure IS NOT NULL OR o.owner IS NULL OR o.expires_at <= now()
                    """,
                    (queues, ids),
                )
                for q, s, text, refused, for_s, held, unheld_for in await cur.fetchall():
                    key = JobSetKey(q, s)
                    if held:
                        failures[key] = Failure(text, bool(refused), float(for_s or 0.0))
                    else:
                        failures[key] = Failure(
                            "no replica of the job service fleet is reading this job set's "
                            "events (each is at max_subscriptions, or cannot reach Armada "
                            "or the database)",
                            False,
                            max(0.0, float(unheld_for or 0.0)),
                        )
            return Changes(rows, failures, xmin)

        return await self._transaction(READS, read, snapshot=True)

    async def horizon(self) -> int:
        """The current horizon: rows older than it are all visible to a read now."""

        async def read(cur: Any) -> int:
            await cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            return int((await cur.fetchone())[0])

        return await self._transaction(READS, read)
