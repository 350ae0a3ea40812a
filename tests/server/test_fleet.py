"""Several ``serve`` processes on one PostgreSQL database: one stream per job set, fail-over.

Real replicas (child processes), the real PostgreSQL, the fake Armada in this
process recording every stream with its open and close times. Each test
checks over its whole run that no two streams of one job set were ever open
at once.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import psycopg
import pytest

from armada_jobservice import JobState

from ..fake_armada import FakeArmada, StreamRecord
from ..helpers import Connect, eventually
from .outages import PostgresProxy
from .test_process import ServeProcess

Q = "queue-a"
#: Short leases keep the tests short; the defaults are 10 s (renewed every 2 s).
TTL = "3"

Replicas = Callable[..., Awaitable[ServeProcess]]


@pytest.fixture
async def replicas(armada: FakeArmada, pg_url: str) -> AsyncIterator[Replicas]:
    """Start named replicas on one fresh PostgreSQL schema; any left running is killed."""
    started: list[ServeProcess] = []

    async def start(name: str, database: str | None = None, *extra: str) -> ServeProcess:
        proc = await ServeProcess.start(
            "--armada-url",
            f"127.0.0.1:{armada.port}",
            "--database",
            database or pg_url,
            "--replica-name",
            name,
            "--lease-ttl-s",
            TTL,
            *extra,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc.returncode is None:
            proc.proc.kill()
            await proc.proc.wait()


def owner_of(pg_url: str, job_set_id: str) -> str | None:
    """The replica the database names owner of a job set (None: nobody holds it)."""
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT owner FROM job_set_owners WHERE queue = %s AND job_set_id = %s"
            " AND expires_at > now()",
            (Q, job_set_id),
        ).fetchone()
    return None if row is None else row[0]


def stored_position(pg_url: str, job_set_id: str) -> str | None:
    """The resume position the database holds for a job set."""
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT last_message_id FROM job_sets WHERE queue = %s AND job_set_id = %s",
            (Q, job_set_id),
        ).fetchone()
    return None if row is None else row[0]


def overlaps(streams: list[StreamRecord]) -> list[tuple[StreamRecord, StreamRecord]]:
    """Pairs of streams of one job set that were open at the same time."""
    found = []
    by_key: dict[tuple[str, str], list[StreamRecord]] = {}
    for record in streams:
        by_key.setdefault(record.key, []).append(record)
    for records in by_key.values():
        records.sort(key=lambda r: r.opened)
        for earlier, later in itertools.pairwise(records):
            if earlier.closed is None or earlier.closed > later.opened:
                found.append((earlier, later))
    return found


def open_streams(armada: FakeArmada, job_set_id: str) -> list[StreamRecord]:
    """The streams of a job set open now."""
    return [r for r in armada.streams if r.key == (Q, job_set_id) and r.closed is None]


async def test_first_polls_through_every_replica_open_one_stream_and_all_answer(
    armada: FakeArmada, replicas: Replicas, connect: Connect
) -> None:
    """Three replicas, first polls through each at once: one stream; every replica answers."""
    fleet = [await replicas(f"r{n}") for n in range(3)]
    clients = [connect(r.port) for r in fleet]
    job_sets = [f"set-{n}" for n in range(5)]
    for js in job_sets:
        armada.publish(Q, js, "submitted", "job-1")
    await asyncio.gather(*(c.get_job_status(Q, js, "job-1") for c in clients for js in job_sets))
    for js in job_sets:
        await eventually(lambda js=js: len(open_streams(armada, js)) == 1)
    for js in job_sets:
        armada.publish(Q, js, "running", "job-1")
        armada.publish(Q, js, "succeeded", "job-1")
    for client in clients:
        for js in job_sets:
            await eventually(
                lambda c=client, js=js: c.get_job_status(Q, js, "job-1"),
                lambda r: r.state == JobState.SUCCEEDED,
            )
    assert all(len(open_streams(armada, js)) == 1 for js in job_sets)
    assert overlaps(armada.streams) == []
    assert {r.key for r in armada.streams} == {(Q, js) for js in job_sets}


async def test_kill_9_of_the_owner_moves_its_job_sets_resuming_where_it_was_flushed(
    armada: FakeArmada, replicas: Replicas, connect: Connect, pg_url: str
) -> None:
    """The survivor takes over after the lease ends and resumes from the stored position."""
    fleet = {name: await replicas(name) for name in ("r1", "r2")}
    client = connect(fleet["r1"].port)
    other = connect(fleet["r2"].port)
    armada.publish(Q, "set-1", "submitted", "job-1")
    armada.publish(Q, "set-1", "running", "job-1")
    await client.get_job_status(Q, "set-1", "job-1")
    await other.get_job_status(Q, "set-1", "job-1")
    for c in (client, other):
        await eventually(
            lambda c=c: c.get_job_status(Q, "set-1", "job-1"),
            lambda r: r.state == JobState.RUNNING,
        )
    owner = await eventually(lambda: owner_of(pg_url, "set-1"))
    survivor = "r2" if owner == "r1" else "r1"
    stored_position = armada.logs[(Q, "set-1")][-1].id
    # Flushed (the followers read the owner's rows), so the position is stored.
    fleet[owner].proc.send_signal(signal.SIGKILL)
    await fleet[owner].proc.wait()
    armada.publish(Q, "set-1", "succeeded", "job-1")
    armada.publish(Q, "set-1", "submitted", "job-2")
    survivor_client = client if survivor == "r1" else other
    for job, state in (("job-1", JobState.SUCCEEDED), ("job-2", JobState.SUBMITTED)):
        await eventually(
            lambda job=job: survivor_client.get_job_status(Q, "set-1", job),
            lambda r, state=state: r.state == state,
            timeout=30,
        )
    assert owner_of(pg_url, "set-1") == survivor
    later = [r for r in armada.streams if r.key == (Q, "set-1")][1:]
    assert [r.from_message_id for r in later] == [stored_position]
    assert overlaps(armada.streams) == []


async def test_sigterm_hands_the_job_sets_over_and_exits_zero(
    armada: FakeArmada, replicas: Replicas, connect: Connect, pg_url: str
) -> None:
    """A stopping replica flushes, releases its leases, and another resumes at once."""
    fleet = {name: await replicas(name) for name in ("r1", "r2")}
    clients = {name: connect(p.port) for name, p in fleet.items()}
    armada.publish(Q, "set-1", "submitted", "job-1")
    for c in clients.values():
        await c.get_job_status(Q, "set-1", "job-1")
    owner = await eventually(lambda: owner_of(pg_url, "set-1"))
    survivor = "r2" if owner == "r1" else "r1"
    armada.publish(Q, "set-1", "running", "job-1")
    await eventually(
        lambda: clients[owner].get_job_status(Q, "set-1", "job-1"),
        lambda r: r.state == JobState.RUNNING,
    )
    fleet[owner].proc.send_signal(signal.SIGTERM)
    assert await fleet[owner].wait() == 0
    await eventually(lambda: owner_of(pg_url, "set-1") == survivor, timeout=10)
    armada.publish(Q, "set-1", "succeeded", "job-1")
    await eventually(
        lambda: clients[survivor].get_job_status(Q, "set-1", "job-1"),
        lambda r: r.state == JobState.SUCCEEDED,
    )
    later = [r for r in armada.streams if r.key == (Q, "set-1")][1:]
    # Resumed after the running event, which the stopping replica flushed before it left.
    assert [r.from_message_id for r in later] == [armada.logs[(Q, "set-1")][1].id]
    assert overlaps(armada.streams) == []


async def test_a_replica_cut_off_from_the_database_stops_streaming_before_another_takes_over(
    armada: FakeArmada, replicas: Replicas, connect: Connect, pg_url: str
) -> None:
    """Fencing: the owner, unable to renew, closes its stream before its lease ends."""
    proxy = PostgresProxy(pg_url)
    await proxy.start()
    try:
        cut_off = await replicas("cut", proxy.url)
        armada.publish(Q, "set-1", "submitted", "job-1")
        client = connect(cut_off.port)
        await client.get_job_status(Q, "set-1", "job-1")
        await eventually(lambda: owner_of(pg_url, "set-1") == "cut")
        healthy = await replicas("healthy")
        other = connect(healthy.port)
        await other.get_job_status(Q, "set-1", "job-1")
        proxy.cut()
        # The healthy replica takes over once the lease ends; the cut one stopped before.
        await eventually(lambda: owner_of(pg_url, "set-1") == "healthy", timeout=30)
        armada.publish(Q, "set-1", "running", "job-1")
        await eventually(
            lambda: other.get_job_status(Q, "set-1", "job-1"),
            lambda r: r.state == JobState.RUNNING,
        )
        first, second = [r for r in armada.streams if r.key == (Q, "set-1")][:2]
        assert first.closed is not None
        assert first.closed <= second.opened
        proxy.heal()
        # Back in touch, the cut-off replica follows: its answer catches up.
        await eventually(
            lambda: client.get_job_status(Q, "set-1", "job-1"),
            lambda r: r.state == JobState.RUNNING,
            timeout=20,
        )
        assert len(open_streams(armada, "set-1")) == 1
        assert overlaps(armada.streams) == []
    finally:
        await proxy.stop()


async def test_a_job_set_refused_at_one_replicas_limit_is_taken_by_one_with_room(
    armada: FakeArmada, replicas: Replicas, connect: Connect, pg_url: str
) -> None:
    """A replica at max_subscriptions hands a first poll on; a replica with room streams it."""
    full = await replicas("full", None, "--max-subscriptions", "1")
    roomy = await replicas("roomy")
    for js in ("set-1", "set-2"):
        armada.publish(Q, js, "submitted", "job-1")
    client = connect(full.port)
    await client.get_job_status(Q, "set-1", "job-1")
    refused = await client.get_job_status(Q, "set-2", "job-1")
    assert refused.state == JobState.CONNECTION_ERR
    assert "max_subscriptions" in refused.error
    await eventually(lambda: owner_of(pg_url, "set-2") == "roomy", timeout=10)
    await eventually(lambda: len(open_streams(armada, "set-2")) == 1)
    armada.publish(Q, "set-2", "running", "job-1")
    await eventually(
        lambda: connect(roomy.port).get_job_status(Q, "set-2", "job-1"),
        lambda r: r.state == JobState.RUNNING,
    )
    assert owner_of(pg_url, "set-1") == "full"
    assert overlaps(armada.streams) == []


async def test_armadas_refusal_reaches_polls_through_every_replica(
    armada: FakeArmada, replicas: Replicas, connect: Connect
) -> None:
    """CONNECTION_ERR with Armada's reason holds fleet-wide, not only at the owner."""
    fleet = [await replicas(f"r{n}") for n in range(2)]
    clients = [connect(r.port) for r in fleet]
    armada.publish(Q, "set-1", "submitted", "job-1")
    for c in clients:
        await c.get_job_status(Q, "set-1", "job-1")
    for c in clients:
        await eventually(
            lambda c=c: c.get_job_status(Q, "set-1", "job-1"),
            lambda r: r.state == JobState.SUBMITTED,
        )
    armada.faults.refuse = grpc.StatusCode.PERMISSION_DENIED
    armada.faults.break_after = 0
    armada.publish(Q, "set-1", "running", "job-1")  # breaks the open stream
    for c in clients:
        answer = await eventually(
            lambda c=c: c.get_job_status(Q, "set-1", "job-1"),
            lambda r: r.state == JobState.CONNECTION_ERR,
        )
        assert "PERMISSION_DENIED" in answer.error
    armada.faults.refuse = None
    armada.faults.break_after = None
    for c in clients:
        await eventually(
            lambda c=c: c.get_job_status(Q, "set-1", "job-1"),
            lambda r: r.state == JobState.RUNNING,
            timeout=30,
        )
    assert overlaps(armada.streams) == []


@pytest.mark.parametrize("outage_s", [0.5, 5.0], ids=["shorter-than-a-lease", "longer"])
async def test_the_database_going_away_and_back_loses_nothing_and_never_doubles_a_stream(
    armada: FakeArmada, replicas: Replicas, connect: Connect, pg_url: str, outage_s: float
) -> None:
    """Every replica loses PostgreSQL at once (as in a restart), then gets it back."""
    proxy = PostgresProxy(pg_url)
    await proxy.start()
    try:
        fleet = [await replicas(f"r{n}", proxy.url) for n in range(2)]
        clients = [connect(r.port) for r in fleet]
        armada.publish(Q, "set-1", "submitted", "job-1")
        for c in clients:
            await c.get_job_status(Q, "set-1", "job-1")
        await eventually(lambda: owner_of(pg_url, "set-1") is not None)
        await eventually(
            lambda: stored_position(pg_url, "set-1") == armada.logs[(Q, "set-1")][-1].id
        )
        proxy.cut()
        armada.publish(Q, "set-1", "running", "job-1")
        await asyncio.sleep(outage_s)
        proxy.heal()
        armada.publish(Q, "set-1", "succeeded", "job-1")
        armada.publish(Q, "set-1", "submitted", "job-2")
        for c in clients:
            for job, state in (("job-1", JobState.SUCCEEDED), ("job-2", JobState.SUBMITTED)):
                await eventually(
                    lambda c=c, job=job: c.get_job_status(Q, "set-1", job),
                    lambda r, state=state: r.state == state,
                    timeout=30,
                )
        await eventually(lambda: len(open_streams(armada, "set-1")) == 1)
        assert overlaps(armada.streams) == []
        # What the owner flushed before the outage was never read again from the start.
        assert all(r.from_message_id for r in armada.streams[1:])
    finally:
        await proxy.stop()


async def test_polls_through_a_follower_keep_the_owners_stream_open(
    armada: FakeArmada, replicas: Replicas, connect: Connect, pg_url: str
) -> None:
    """Expiry is fleet-wide: a job set polled only through another replica stays subscribed."""
    expiry = ("--subscription-expiry-s", "2", "--job-set-retention-s", "600")
    fleet = {name: await replicas(name, None, *expiry) for name in ("r1", "r2")}
    armada.publish(Q, "set-1", "submitted", "job-1")
    for proc in fleet.values():
        await connect(proc.port).get_job_status(Q, "set-1", "job-1")
    owner = await eventually(lambda: owner_of(pg_url, "set-1"))
    follower = connect(fleet["r2" if owner == "r1" else "r1"].port)
    stream = await eventually(lambda: open_streams(armada, "set-1"))
    await eventually(
        lambda: follower.get_job_status(Q, "set-1", "job-1"),
        lambda r: r.state == JobState.SUBMITTED,
    )
    # Three expiry periods of polls through the follower only.
    loop = asyncio.get_running_loop()
    end = loop.time() + 6
    while loop.time() < end:
        assert (await follower.get_job_status(Q, "set-1", "job-1")).state == JobState.SUBMITTED
        await asyncio.sleep(0.2)
    assert open_streams(armada, "set-1") == stream
    assert owner_of(pg_url, "set-1") == owner
    # Once nobody polls, the owner lets it go (and so does the follower).
    await eventually(lambda: open_streams(armada, "set-1") == [], timeout=15)
    assert overlaps(armada.streams) == []


def _restart_postgres() -> None:
    """Restart the machine's PostgreSQL server for real (as CI starts it)."""
    import shutil
    import subprocess
    from pathlib import Path

    clusters = (
        sorted(Path("/etc/postgresql").glob("*/main")) if Path("/etc/postgresql").is_dir() else []
    )
    if shutil.which("pg_ctlcluster") is None or not clusters:
        pytest.skip("no local PostgreSQL cluster to restart (pg_ctlcluster)")
    version = clusters[0].parent.name
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


async def test_a_real_postgresql_restart_under_a_fleet(
    armada: FakeArmada, replicas: Replicas, connect: Connect, pg_url: str
) -> None:
    """PostgreSQL restarted under two replicas: answers continue, nothing is lost, one stream."""
    fleet = [await replicas(f"r{n}") for n in range(2)]
    clients = [connect(r.port) for r in fleet]
    armada.publish(Q, "set-1", "submitted", "job-1")
    for c in clients:
        await c.get_job_status(Q, "set-1", "job-1")
    for c in clients:
        await eventually(
            lambda c=c: c.get_job_status(Q, "set-1", "job-1"),
            lambda r: r.state == JobState.SUBMITTED,
        )
    await asyncio.to_thread(_restart_postgres)
    armada.publish(Q, "set-1", "running", "job-1")
    armada.publish(Q, "set-1", "succeeded", "job-1")
    for c in clients:
        await eventually(
            lambda c=c: c.get_job_status(Q, "set-1", "job-1"),
            lambda r: r.state == JobState.SUCCEEDED,
            timeout=30,
        )
    await eventually(lambda: stored_position(pg_url, "set-1") == armada.logs[(Q, "set-1")][-1].id)
    await eventually(lambda: len(open_streams(armada, "set-1")) == 1)
    assert overlaps(armada.streams) == []
