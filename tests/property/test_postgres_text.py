"""Text PostgreSQL cannot store, from Armada and from callers, against a real PostgreSQL.

PostgreSQL refuses NUL in text, and a key too large for its index. A flush is
one transaction, so one such value in a batch would fail every flush after
it, for every job set, and health would say NOT_SERVING for good.
"""

from __future__ import annotations

import random

import pytest

from armada_jobservice import JobState
from armada_jobservice._wire import WireState

from ..fake_armada import FakeArmada
from ..helpers import Connect, Serve, eventually, query
from .strategies import LIMIT, Known, serialize

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


@pytest.mark.xfail(
    strict=True,
    reason="PostgreSQL's btree refuses index rows over 2,704 bytes; ids of 1,024 wide "
    "characters are valid requests (not fixed: see the report of issue 11)",
)
async def test_ids_at_the_length_limit_never_stop_the_writer(
    serve: Serve, connect: Connect, pg_url: str
) -> None:
    """A valid poll with ids of exactly the limit, in 3-byte characters: health stays SERVING."""
    app = await serve(database=pg_url)
    client = connect(app)
    rng = random.Random(11)
    queue, job_set_id = (
        "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(LIMIT)) for _ in "qs"
    )
    status = await client.get_job_status(queue, job_set_id, "j1")
    assert status.state == JobState.JOB_ID_NOT_FOUND
    await app.writer.flush_once()
    assert app.writer.store_ok
