"""Text PostgreSQL cannot store, from Armada and from callers, against a real PostgreSQL.

PostgreSQL refuses NUL in text, and a key too large for its index (2,704 bytes). A flush is
one transaction, so one such value in a batch would fail every flush after
it, for every job set, and health would say NOT_SERVING for good.
"""

from __future__ import annotations

import random

import pytest

from armada_jobservice import JobState, RPCError
from armada_jobservice._wire import WireState

from ..fake_armada import FakeArmada
from ..helpers import Connect, Serve, eventually, query
from .strategies import JOB_ID_BYTES, JOB_SET_KEY_BYTES, Known, serialize

Q, JS = "queue-a", "set-1"


async def test_nul_from_armada_never_stops_the_writer(
    armada: FakeArmada, serve: Serve, connect: Connect, pg_url: str
) -> None:
    """NUL in an error text, a job id or a message id: the rest is stored, health stays SERVING."""
    app = await serve(database=pg_url)
    client = connect(app)
    await client.get_job_status(Q, JS, "j1")
    armada.publish(Q, JS, "failed", "j1", reason="bad\x00reason")
    armada.publish(Q, JS, "running", "j\x00")
    message = armada.logs[(Q, JS)][-1].message
    armada.publish_raw(Q, JS, "3\x00-0", serialize("3\x00-0", Known(message)))
    last = armada.publish(Q, JS, "succeeded", "j2")
    await eventually(lambda: client.get_job_status(Q, JS, "j2"), lambda s: s.state.is_terminal)
    await app.writer.flush_once()
    assert app.writer.store_ok
    assert (await client.health()).name == "SERVING"
    failed = await client.get_job_status(Q, JS, "j1")
    assert (failed.state, failed.error) == (JobState.FAILED, "bad\ufffdreason")
    assert sorted(query(pg_url, "SELECT job_id, state, error FROM jobs")) == [
        ("j1", WireState.FAILED, "bad\ufffdreason"),
        ("j2", WireState.SUCCEEDED, None),
    ]
    assert query(pg_url, "SELECT last_message_id FROM job_sets") == [(last,)]


def wide(nbytes: int, rng: random.Random) -> str:
    """Random CJK characters (3 UTF-8 bytes each, hardly compressible) of exactly *nbytes*."""
    head = "x" * (nbytes % 3)
    return head + "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(nbytes // 3))


async def test_ids_at_the_byte_limits_are_stored_and_beyond_them_refused(
    armada: FakeArmada, serve: Serve, connect: Connect, pg_url: str
) -> None:
    """Ids of exactly the byte limits are polled, streamed and stored; one byte more is refused."""
    app = await serve(database=pg_url)
    client = connect(app)
    rng = random.Random(11)
    queue, job_set_id = wide(JOB_SET_KEY_BYTES // 2, rng), wide(JOB_SET_KEY_BYTES // 2, rng)
    job_id = wide(JOB_ID_BYTES, rng)
    status = await client.get_job_status(queue, job_set_id, job_id)
    assert status.state == JobState.JOB_ID_NOT_FOUND
    armada.publish(queue, job_set_id, "succeeded", job_id)
    await eventually(
        lambda: client.get_job_status(queue, job_set_id, job_id), lambda s: s.state.is_terminal
    )
    await app.writer.flush_once()
    assert app.writer.store_ok
    assert query(pg_url, "SELECT job_id FROM jobs") == [(job_id,)]
    for ids, field in (
        ((queue + "x", job_set_id, "j"), "queue"),
        ((queue, job_set_id, job_id + "x"), "job_id"),
    ):
        with pytest.raises(RPCError) as refused:
            await client.get_job_status(*ids)
        assert refused.value.code == "INVALID_ARGUMENT"
        assert refused.value.details.startswith(field + " ")
    assert (await client.health()).name == "SERVING"


async def test_a_job_id_from_armada_beyond_the_byte_limit_is_ignored(
    armada: FakeArmada, serve: Serve, connect: Connect, pg_url: str
) -> None:
    """No poll can name it and PostgreSQL could not store it: the rest of the stream is stored."""
    app = await serve(database=pg_url)
    client = connect(app)
    await client.get_job_status(Q, JS, "j1")
    armada.publish(Q, JS, "running", "j" * (JOB_ID_BYTES + 1))
    armada.publish(Q, JS, "succeeded", "j1")
    await eventually(lambda: client.get_job_status(Q, JS, "j1"), lambda s: s.state.is_terminal)
    await app.writer.flush_once()
    assert app.writer.store_ok
    assert query(pg_url, "SELECT job_id FROM jobs") == [("j1",)]
