"""One contract, every storage backend: SQLite (file) and PostgreSQL (the local server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from armada_jobservice import JobState
from armada_jobservice.server.config import Settings
from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.model import JobRow, JobSetKey
from armada_jobservice.server.store import Store, open_store
from armada_jobservice.server.store.base import JobSetWrite

from ..fake_armada import FakeArmada
from ..helpers import Connect, Serve, eventually, without_sqlite_json


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open store."""
    s = open_store(store_url)
    s.open()
    yield s
    s.close()


K1 = JobSetKey("q1", "set")
K2 = JobSetKey("q2", "set")  # same job set id, other queue


def test_empty_store(store: Store) -> None:
    """A new store holds nothing."""
    assert store.load_job_set(K1) is None
    assert store.counts() == (0, 0)
    store.ping()


def test_write_and_load(store: Store) -> None:
    """A batch is read back exactly: rows, position and activity, per (queue, job set)."""
    store.write(
        [
            JobSetWrite(K1, "m-2", 100.0, [JobRow("a", 0, None), JobRow("b", 3, "boom")]),
            JobSetWrite(K2, "m-9", 50.0, [JobRow("a", 4, None)]),
        ]
    )
    one = store.load_job_set(K1)
    assert one is not None
    assert one.last_message_id == "m-2"
    assert one.last_activity == 100.0
    assert sorted(one.rows) == [JobRow("a", 0, None), JobRow("b", 3, "boom")]
    two = store.load_job_set(K2)
    assert two is not None
    assert two.rows == [JobRow("a", 4, None)]
    assert store.counts() == (2, 3)


def test_upserts_replace_jobs_and_never_lose_others(store: Store) -> None:
    """Writing a job set again updates its rows and keeps the jobs the batch does not name."""
    store.write([JobSetWrite(K1, "m-1", 10.0, [JobRow("a", 0, None), JobRow("b", 0, None)])])
    store.write([JobSetWrite(K1, "m-2", 20.0, [JobRow("a", 5, "cancelled")])])
    store.write([JobSetWrite(K1, None, 15.0, [])])  # a poll-only touch: position kept
    loaded = store.load_job_set(K1)
    assert loaded is not None
    assert sorted(loaded.rows) == [JobRow("a", 5, "cancelled"), JobRow("b", 0, None)]
    assert loaded.last_message_id == "m-2"
    assert loaded.last_activity == 20.0


def test_terminal_state_is_never_overwritten(store: Store) -> None:
    """A stored terminal state survives a later write of an older state."""
    store.write([JobSetWrite(K1, "m-5", 1.0, [JobRow("a", 4, None), JobRow("b", 2, None)])])
    store.write([JobSetWrite(K1, "m-3", 2.0, [JobRow("a", 2, None), JobRow("b", 3, "x")])])
    loaded = store.load_job_set(K1)
    assert loaded is not None
    assert sorted(loaded.rows) == [JobRow("a", 4, None), JobRow("b", 3, "x")]


def test_retention_deletes_whole_idle_job_sets(store: Store) -> None:
    """Idle job sets are found by activity and deleted with all their jobs; others stay."""
    store.write(
        [
            JobSetWrite(K1, "m", 100.0, [JobRow("a", 4, None)]),
            JobSetWrite(K2, "m", 300.0, [JobRow("a", 4, None)]),
        ]
    )
    assert store.idle_job_sets(200.0, 10) == [K1]
    assert store.delete_job_sets([K1], 200.0) == 1
    assert store.load_job_set(K1) is None
    assert store.load_job_set(K2) is not None
    assert store.counts() == (1, 1)


def test_delete_rechecks_activity(store: Store) -> None:
    """A job set active again since it was found idle is not deleted."""
    store.write([JobSetWrite(K1, "m", 100.0, [JobRow("a", 0, None)])])
    assert store.idle_job_sets(200.0, 10) == [K1]
    store.write([JobSetWrite(K1, "m", 250.0, [])])
    assert store.delete_job_sets([K1], 200.0) == 0
    assert store.load_job_set(K1) is not None


def test_reopen_keeps_data(store_url: str) -> None:
    """Opening an existing database creates nothing new and drops nothing."""
    first = open_store(store_url)
    first.open()
    first.write([JobSetWrite(K1, "m-7", 1.0, [JobRow("x", 4, None)])])
    first.close()
    second = open_store(store_url)
    second.open()
    loaded = second.load_job_set(K1)
    second.close()
    assert loaded is not None
    assert loaded.rows == [JobRow("x", 4, None)]


def test_large_batch(store: Store) -> None:
    """A batch of 20,000 rows over 200 job sets is written in one call."""
    batch = [
        JobSetWrite(
            JobSetKey("q", f"s{n}"),
            f"m{n}",
            1.0,
            [JobRow(f"job-{n}-{i}", i % 5, None) for i in range(100)],
        )
        for n in range(200)
    ]
    store.write(batch)
    assert store.counts() == (200, 20_000)


def test_rows_across_statement_chunks_keep_every_rule(store: Store) -> None:
    """Rows past one statement's worth (not a multiple of it) are all written, with the guard."""
    from armada_jobservice.server.store.sql import CHUNK_ROWS

    n = CHUNK_ROWS * 2 + 7
    store.write(
        [JobSetWrite(K1, "m-1", 1.0, [(f"j{i}", 4 if i % 2 else 0, None) for i in range(n)])]
    )
    store.write([JobSetWrite(K1, "m-2", 2.0, [(f"j{i}", 2, None) for i in range(n)])])
    loaded = store.load_job_set(K1)
    assert loaded is not None
    assert loaded.last_message_id == "m-2"
    # Terminal rows (odd) kept SUCCEEDED; the others moved to RUNNING, in every chunk.
    assert sorted((int(r.job_id[1:]), r.state) for r in loaded.rows) == [
        (i, 4 if i % 2 else 2) for i in range(n)
    ]


def test_a_job_set_twice_in_one_batch_takes_the_later_entry(store: Store) -> None:
    """Two entries for one job set in a batch: the later position and rows win."""
    store.write(
        [
            JobSetWrite(K1, "m-1", 1.0, [JobRow("a", 0, None), JobRow("b", 0, None)]),
            JobSetWrite(K2, "m-7", 3.0, [JobRow("a", 2, None)]),
            JobSetWrite(K1, "m-2", 2.0, [JobRow("a", 2, None)]),
            # No position and an older activity time: neither moves back.
            JobSetWrite(K2, None, 1.0, [JobRow("b", 4, None)]),
        ]
    )
    one = store.load_job_set(K1)
    assert one is not None
    assert (one.last_message_id, one.last_activity) == ("m-2", 2.0)
    assert sorted(one.rows) == [JobRow("a", 2, None), JobRow("b", 0, None)]
    two = store.load_job_set(K2)
    assert two is not None
    assert (two.last_message_id, two.last_activity) == ("m-7", 3.0)
    assert sorted(two.rows) == [JobRow("a", 2, None), JobRow("b", 4, None)]
    assert store.counts() == (2, 4)


def test_awkward_text_comes_back_exactly(store: Store) -> None:
    """Quotes, backslashes, newlines and non-ASCII in ids and errors survive a round trip."""
    odd = 'a"b\\c\u00e9\n\t\u2603 ' + "'x'"
    rows = [JobRow(odd, 3, odd * 3), JobRow("plain", 0, None), JobRow("", 4, "")]
    store.write([JobSetWrite(JobSetKey(odd, odd), "m-1", 1764370000.123456, rows)])
    loaded = store.load_job_set(JobSetKey(odd, odd))
    assert loaded is not None
    assert sorted(loaded.rows) == sorted(rows)
    assert loaded.last_activity == 1764370000.123456


def test_load_many_job_sets_past_one_query(store: Store) -> None:
    """More keys than one query takes, stored and not, repeated: each stored set once, whole."""
    from armada_jobservice.server.store.sql import CHUNK_ROWS

    stored = [JobSetKey("q", f"s{n}") for n in range(0, CHUNK_ROWS * 2 + 50, 3)]
    store.write([JobSetWrite(k, f"m-{k.job_set_id}", 1.0, [JobRow("j", 2, None)]) for k in stored])
    keys = [JobSetKey("q", f"s{n}") for n in range(CHUNK_ROWS * 2 + 50)] + stored[:5]
    found = store.load_job_sets(keys)
    assert set(found) == set(stored)
    assert all(found[k].last_message_id == f"m-{k.job_set_id}" for k in stored)
    assert all(found[k].rows == [JobRow("j", 2, None)] for k in stored)


def test_closed_sqlite_store_raises_store_error(tmp_path: Path) -> None:
    """Using a SQLite store after closing it raises StoreError, never a driver error."""
    s = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    s.open()
    s.close()
    with pytest.raises(StoreError):
        s.ping()


def test_closed_postgres_store_reconnects_on_demand(pg_url: str) -> None:
    """A PostgreSQL store used after closing it connects again and keeps its data."""
    s = open_store(pg_url)
    s.open()
    s.write([JobSetWrite(K1, "m-1", 1.0, [JobRow("a", 2, None)])])
    s.close()
    try:
        s.ping()
        found = s.load_job_set(K1)
        assert found is not None
        assert found.rows == [JobRow("a", 2, None)]
    finally:
        s.close()


def test_unreachable_postgres_is_store_error() -> None:
    """A PostgreSQL server that does not answer is a StoreError naming the problem."""
    s = open_store("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(StoreError, match="cannot connect"):
        s.open()


def test_missing_sqlite_folder_is_store_error(tmp_path: Path) -> None:
    """A SQLite path in a folder that does not exist is a StoreError."""
    s = open_store(f"sqlite:///{tmp_path}/nope/x.db")
    with pytest.raises(StoreError, match="does not exist"):
        s.open()


async def test_service_on_postgres_survives_a_restart(
    armada: FakeArmada,
    make_settings: Callable[..., Settings],
    serve: Serve,
    connect: Connect,
    pg_url: str,
) -> None:
    """The whole service on PostgreSQL: flushed states and the resume position survive."""
    settings = make_settings(database=pg_url)
    first = await serve(settings)
    client = connect(first)
    await client.get_job_status("q", "s", "j1")
    armada.publish("q", "s", "running", "j1")
    last = armada.publish("q", "s", "failed", "j2", reason="bad input")
    await eventually(
        lambda: client.get_job_status("q", "s", "j2"), lambda r: r.state == JobState.FAILED
    )
    await first.stop()
    client = connect(await serve(settings))
    reply = await client.get_job_status("q", "s", "j2")
    assert (reply.state, reply.error) == (JobState.FAILED, "bad input")
    assert (await client.get_job_status("q", "s", "j1")).state == JobState.RUNNING
    requests = await eventually(lambda: armada.stream_requests("q", "s"), lambda r: len(r) == 2)
    assert requests[1].from_message_id == last


def test_load_several_job_sets_at_once(store: Store) -> None:
    """A batch read returns the stored job sets and leaves out the unknown ones."""
    store.write(
        [
            JobSetWrite(K1, "m-1", 1.0, [JobRow("a", 2, None)]),
            JobSetWrite(K2, "m-2", 2.0, [JobRow("b", 4, None), JobRow("c", 3, "x")]),
        ]
    )
    found = store.load_job_sets([K1, JobSetKey("q1", "nope"), K2])
    assert set(found) == {K1, K2}
    assert found[K1].rows == [JobRow("a", 2, None)]
    assert sorted(found[K2].rows) == [JobRow("b", 4, None), JobRow("c", 3, "x")]
    assert found[K2].last_message_id == "m-2"


def test_sqlite_without_json_functions_reads_row_by_row(tmp_path: Path) -> None:
    """Where SQLite lacks its JSON functions, jobs are read row by row, with the same result."""
    from armada_jobservice.server.store.sqlite import SQLiteStore

    store = SQLiteStore(str(tmp_path / "s.db"))
    store.open()
    try:
        rows = [JobRow("a", 0, None), JobRow("b", 3, "boom")]
        store.write([JobSetWrite(K1, "m-1", 1.0, rows)])
        with_json = store.load_job_set(K1)
        without_sqlite_json(store)
        without = store.load_job_set(K1)
        assert with_json is not None
        assert without is not None
        assert sorted(with_json.rows) == sorted(without.rows) == rows
    finally:
        store.close()
