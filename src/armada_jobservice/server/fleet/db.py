"""The fleet's table in PostgreSQL: who owns which job set, until when, and what followers read.

Every query here runs on a connection and a thread of the fleet's own, so
that renewing leases never waits behind a large flush on the store's
thread. Times are the database's (``now()``), never a replica's clock.

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
import functools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.model import JobRow, JobSetKey

T = TypeVar("T")


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


class FleetDB:
    """The fleet's queries on their own PostgreSQL connection and thread."""

    def __init__(self, url: str, owner: str) -> None:
        self.url = url
        #: This replica's name in ``job_set_owners.owner``.
        self.owner = owner
        self._conn: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobservice-fleet")

    # -- plumbing ----------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: object, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def _transaction(self, fn: Callable[[Any], T], *, snapshot: bool = False) -> T:
        import psycopg

        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(
                    self.url,
                    autocommit=False,
                    connect_timeout=5,
                    application_name=f"armada-jobservice {self.owner} fleet",
                )
            except psycopg.Error as exc:
                raise StoreError(f"fleet: cannot connect to PostgreSQL: {exc}".strip()) from exc
        conn = self._conn
        try:
            if snapshot:
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            else:
                conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
            with conn.transaction(), conn.cursor() as cur:
                return fn(cur)
        except psycopg.OperationalError as exc:
            conn.close()
            raise StoreError(f"fleet: PostgreSQL: {exc}".strip()) from exc
        except psycopg.Error as exc:
            raise StoreError(f"fleet: PostgreSQL: {exc}".strip()) from exc

    async def open(self) -> None:
        """Connect (the store created the fleet's table and columns)."""
        await self._run(self._transaction, lambda cur: cur.execute("SELECT 1"))

    async def close(self) -> None:
        """Close the connection and stop the thread; idempotent."""

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(close)
        self._executor.shutdown(wait=True)

    # -- leases ------------------------------------------------------------

    async def claim(self, keys: Sequence[JobSetKey], ttl_s: float) -> list[Claimed]:
        """Take the leases of *keys* that nobody holds (or whose lease expired)."""
        owner = self.owner

        def claim(cur: Any) -> list[Claimed]:
            won = []
            for queue, job_set_id in keys:
                cur.execute(
                    """
                    INSERT INTO job_set_owners AS o (queue, job_set_id, owner, epoch, expires_at)
                    VALUES (%s, %s, %s, 1, now() + make_interval(secs => %s))
                    ON CONFLICT (queue, job_set_id) DO UPDATE SET
                        owner = excluded.owner, epoch = o.epoch + 1,
                        expires_at = excluded.expires_at,
                        failure = NULL, refused = false, failing_since = NULL
                    WHERE o.owner IS NULL OR o.expires_at < now()
                    RETURNING o.epoch,
                        (SELECT last_message_id FROM job_sets j
                         WHERE j.queue = o.queue AND j.job_set_id = o.job_set_id)
                    """,
                    (queue, job_set_id, owner, ttl_s),
                )
                row = cur.fetchone()
                if row is not None:
                    won.append(Claimed(JobSetKey(queue, job_set_id), int(row[0]), row[1]))
            return won

        return await self._run(self._transaction, claim)

    async def ask(self, keys: Sequence[JobSetKey]) -> None:
        """Record that *keys* were polled here though this replica will not own them.

        A job set nobody holds, polled lately, is what other replicas' sweeps
        take over: this is how a replica at its limit hands a first poll on.
        """
        if not keys:
            return

        def ask(cur: Any) -> None:
            cur.execute(
                """
                INSERT INTO job_set_owners (queue, job_set_id)
                SELECT * FROM unnest(%s::text[], %s::text[])
                ON CONFLICT (queue, job_set_id) DO UPDATE SET last_poll_at = now()
                """,
                ([k[0] for k in keys], [k[1] for k in keys]),
            )

        await self._run(self._transaction, ask)

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

        def renew(cur: Any) -> Renewal:
            if polled:
                cur.execute(
                    """
                    UPDATE job_set_owners SET last_poll_at = now()
                    WHERE (queue, job_set_id) IN (
                        SELECT * FROM unnest(%s::text[], %s::text[]))
                    """,
                    ([k[0] for k in polled], [k[1] for k in polled]),
                )
            for (queue, job_set_id), failure in failures.items():
                if failure is None:
                    cur.execute(
                        "UPDATE job_set_owners SET failure = NULL, refused = false, "
                        "failing_since = NULL WHERE queue = %s AND job_set_id = %s AND owner = %s",
                        (queue, job_set_id, owner),
                    )
                else:
                    cur.execute(
                        "UPDATE job_set_owners SET failure = %s, refused = %s, "
                        "failing_since = COALESCE(failing_since, now()) "
                        "WHERE queue = %s AND job_set_id = %s AND owner = %s",
                        (failure.text, failure.refused, queue, job_set_id, owner),
                    )
            cur.execute(
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
            for queue, job_set_id, epoch, polled_ago in cur.fetchall():
                key = JobSetKey(queue, job_set_id)
                held[key] = int(epoch)
                ago[key] = float(polled_ago)
            return Renewal(held, ago)

        return await self._run(self._transaction, renew)

    async def release(self, keys: Sequence[JobSetKey]) -> int:
        """Give up the leases of *keys* at once, so another replica may take them."""
        owner = self.owner
        if not keys:
            return 0

        def release(cur: Any) -> int:
            cur.execute(
                """
                UPDATE job_set_owners SET owner = NULL, expires_at = now()
                WHERE owner = %s AND (queue, job_set_id) IN (
                    SELECT * FROM unnest(%s::text[], %s::text[]))
                """,
                (owner, [k[0] for k in keys], [k[1] for k in keys]),
            )
            return int(cur.rowcount)

        return await self._run(self._transaction, release)

    async def orphans(self, polled_within_s: float, limit: int) -> list[tuple[JobSetKey, float]]:
        """Job sets polled lately whose lease nobody holds, with seconds since their last poll."""

        def read(cur: Any) -> list[tuple[JobSetKey, float]]:
            cur.execute(
                """
                SELECT queue, job_set_id, extract(epoch FROM now() - last_poll_at)::float8
                FROM job_set_owners
                WHERE (owner IS NULL OR expires_at < now())
                  AND last_poll_at > now() - make_interval(secs => %s)
                ORDER BY last_poll_at DESC LIMIT %s
                """,
                (polled_within_s, limit),
            )
            return [(JobSetKey(q, s), max(0.0, float(ago))) for q, s, ago in cur.fetchall()]

        return await self._run(self._transaction, read)

    # -- followers ---------------------------------------------------------

    async def changes(self, horizon: int, followed: Sequence[JobSetKey]) -> Changes:
        """Rows of *followed* job sets written by transactions from *horizon* on.

        One snapshot: every transaction older than its oldest running one
        (``xmin``) is complete and visible, so the next read starts there and
        misses nothing; rows read twice are applied twice, harmlessly.
        """
        queues = [k[0] for k in followed]
        ids = [k[1] for k in followed]

        def read(cur: Any) -> Changes:
            cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            xmin = int(cur.fetchone()[0])
            rows: list[tuple[JobSetKey, JobRow]] = []
            failures: dict[JobSetKey, Failure] = {}
            if followed:
                cur.execute(
                    """
                    SELECT j.queue, j.job_set_id, j.job_id, j.state, j.error FROM jobs j
                    JOIN unnest(%s::text[], %s::text[]) AS f(queue, job_set_id)
                      ON j.queue = f.queue AND j.job_set_id = f.job_set_id
                    WHERE j.xid >= %s::text::xid8
                    """,
                    (queues, ids, str(horizon)),
                )
                rows = [(JobSetKey(q, s), JobRow(j, st, e)) for q, s, j, st, e in cur.fetchall()]
                cur.execute(
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
                for q, s, text, refused, for_s, held, unheld_for in cur.fetchall():
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

        return await self._run(self._transaction, read, snapshot=True)

    async def horizon(self) -> int:
        """The current horizon: rows older than it are all visible to a read now."""

        def read(cur: Any) -> int:
            cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            return int(cur.fetchone()[0])

        return await self._run(self._transaction, read)
