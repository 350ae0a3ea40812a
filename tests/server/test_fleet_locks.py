"""The fleet's lease queries against the real PostgreSQL: who waits for whom.

A flush holds its job sets' lease rows ``FOR KEY SHARE`` while it writes. A
renewal must never wait for it (a slow flush would otherwise cost the owner
its leases), a claim must never take a job set while its old owner's flush
is under way, and replicas renewing and reporting polls of each other's job
sets must never deadlock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from armada_jobservice.server.fleet.db import FleetDB
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.store import open_store

#: Guards against a hang; no test here measures time.
HANG_S = 20.0


@pytest.fixture
def schema(pg_url: str) -> str:
    """A fresh schema with the store's tables (migrations applied)."""
    store = open_store(pg_url)
    store.open()
    store.close()
    return pg_url


@pytest.fixture
async def fleet(schema: str) -> AsyncIterator[tuple[FleetDB, FleetDB]]:
    """Two replicas' fleet connections, named a and b."""
    a, b = FleetDB(schema, "a"), FleetDB(schema, "b")
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


def flush_under_way(url: str, key: JobSetKey) -> psycopg.Connection[tuple[object, ...]]:
    """A transaction holding *key*'s lease row as a flush does, left open."""
    conn = psycopg.connect(url)
    conn.execute(
        "SELECT 1 FROM job_set_owners WHERE queue = %s AND job_set_id = %s FOR KEY SHARE",
        (key.queue, key.job_set_id),
    )
    return conn


async def test_a_renewal_does_not_wait_for_a_flush(
    schema: str, fleet: tuple[FleetDB, FleetDB]
) -> None:
    """The owner renews (and reports polls of) a job set while its own flush holds the row."""
    a, _ = fleet
    key = JobSetKey("q", "s")
    [won] = await a.claim([key], 10)
    flush = flush_under_way(schema, key)
    try:
        renewal = await asyncio.wait_for(a.renew(10, [key], [key], {}), HANG_S)
        assert renewal.held == {key: won.epoch}
    finally:
        flush.close()


async def test_a_claim_skips_a_job_set_whose_old_owner_is_flushing(
    schema: str, fleet: tuple[FleetDB, FleetDB]
) -> None:
    """An expired lease under a flush is left alone, and taken (epoch raised) once it commits."""
    a, b = fleet
    key = JobSetKey("q", "s")
    [first] = await a.claim([key], 0)  # expires at once
    flush = flush_under_way(schema, key)
    try:
        assert await asyncio.wait_for(b.claim([key], 10), HANG_S) == []
    finally:
        flush.commit()
        flush.close()
    [taken] = await asyncio.wait_for(b.claim([key], 10), HANG_S)
    assert taken.epoch == first.epoch + 1


async def test_a_live_lease_is_not_taken(fleet: tuple[FleetDB, FleetDB]) -> None:
    """A claim of a job set whose lease holds wins nothing, and the owner keeps renewing it."""
    a, b = fleet
    key = JobSetKey("q", "s")
    [won] = await a.claim([key], 10)
    assert await b.claim([key], 10) == []
    assert (await a.renew(10, [key], [], {})).held == {key: won.epoch}


async def test_replicas_reporting_each_others_polls_never_deadlock(
    fleet: tuple[FleetDB, FleetDB],
) -> None:
    """Concurrent renewals that also report polls of the other's job sets all succeed."""
    a, b = fleet
    mine = [JobSetKey("q", f"a-{i:03}") for i in range(40)]
    theirs = [JobSetKey("q", f"b-{i:03}") for i in range(40)]
    assert len(await a.claim(mine, 30)) == len(mine)
    assert len(await b.claim(theirs, 30)) == len(theirs)

    async def rounds(db: FleetDB, owned: list[JobSetKey], other: list[JobSetKey]) -> None:
        for i in range(25):
            polled = list(reversed(other)) if i % 2 else other
            renewal = await db.renew(30, owned, [*polled, *reversed(owned)], {})
            assert set(renewal.held) == set(owned)
            await db.ask(list(reversed(other)))

    await asyncio.wait_for(
        asyncio.gather(rounds(a, mine, theirs), rounds(b, theirs, mine)), HANG_S * 3
    )
