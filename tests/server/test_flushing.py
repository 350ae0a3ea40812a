"""Flushing: the writer batches cache changes into the database, early once streams are quiet."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from armada_jobservice._wire import WireState
from armada_jobservice.server.writer import QUIET_MIN_GAP_S

from ..fake_armada import FakeArmada
from ..helpers import Connect, Serve, eventually, metric, pending_changes

Q, JS = "queue-a", "job-set-1"

#: Far longer than any test: a flush that happens was not due to the interval.
NEVER_S = 3600.0


async def test_flush_between_full_passes_writes_positions_of_changed_job_sets(
    armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """A flush of only the job sets with events still stores an event that changed no job."""
    # The writer's own loop never runs a flush here: each flush below is called by hand.
    app = await serve(flush_interval_s=NEVER_S)
    client = connect(app)
    await client.get_job_status(Q, "quiet", "job-1")
    await client.get_job_status(Q, JS, "job-1")
    armada.publish(Q, JS, "submitted", "job-1")
    js = app.subscriptions.job_sets[(Q, JS)]
    await eventually(lambda: js.last_message_id == armada.logs[(Q, JS)][-1].id)
    assert await app.writer.flush_once(time.time(), full=False) == 1
    # "queued" changes no job's state, only the stream position to resume from.
    armada.publish(Q, JS, "queued", "job-1")
    await eventually(lambda: js.last_message_id == armada.logs[(Q, JS)][-1].id)
    assert pending_changes(app) == {js}
    assert await app.writer.flush_once(time.time(), full=False) == 0
    assert pending_changes(app) == set()
    stored = await app.store.load_job_set((Q, JS))
    assert stored is not None
    assert stored.last_message_id == armada.logs[(Q, JS)][-1].id
    assert [(r.job_id, r.state) for r in stored.rows] == [("job-1", WireState.SUBMITTED)]
    # The job set without events was not written by these flushes; a full pass writes it.
    assert await app.store.load_job_set((Q, "quiet")) is None
    await app.writer.flush_once(time.time(), full=True)
    assert await app.store.load_job_set((Q, "quiet")) is not None


async def test_quiet_streams_are_flushed_before_the_interval(
    armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """Once events stop, one early flush writes the changes within a second, not an hour later."""
    app = await serve(flush_interval_s=NEVER_S)
    client = connect(app)
    await client.get_job_status(Q, JS, "job-1")
    await eventually(lambda: armada.open_streams == 1)
    loop = asyncio.get_running_loop()
    published = loop.time()
    armada.publish(Q, JS, "running", "job-1")
    # The quiet flush is due QUIET_S + QUIET_MIN_GAP_S (~0.12 s) after the event;
    # one second leaves room for a slow machine and is still 1/3600 of the interval.
    stored = await eventually(
        lambda: app.store.load_job_set((Q, JS)),
        lambda s: s is not None and bool(s.rows),
        timeout=1.0,
        interval=0.01,
    )
    assert loop.time() - published < 1.0
    assert [(r.job_id, r.state) for r in stored.rows] == [("job-1", WireState.RUNNING)]
    # One flush did it: the early one, not a string of them.
    assert metric(app, "armada_jobservice_flush_batch_jobs_count") == 1


async def test_a_trickle_of_events_is_not_a_flush_per_event(
    armada: FakeArmada, serve: Serve, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events 30 ms apart (quiet between each) still share flushes: at most one per 0.1 s."""
    app = await serve(flush_interval_s=NEVER_S)
    client = connect(app)
    await client.get_job_status(Q, JS, "job-0")
    flushes: list[float] = []
    real_flush = app.writer.flush_once

    async def counted(*args: Any, **kwargs: Any) -> int:
        flushes.append(time.monotonic())
        return await real_flush(*args, **kwargs)

    monkeypatch.setattr(app.writer, "flush_once", counted)
    started = time.monotonic()
    for n in range(30):
        armada.publish(Q, JS, "submitted", f"job-{n}")
        await asyncio.sleep(0.03)
    await eventually(lambda: app.subscriptions.job_sets[(Q, JS)].is_clean())
    elapsed = time.monotonic() - started
    assert flushes, "nothing was flushed"
    assert len(flushes) <= elapsed / QUIET_MIN_GAP_S + 1
    gaps = [b - a for a, b in itertools.pairwise(flushes)]
    assert all(g >= QUIET_MIN_GAP_S * 0.9 for g in gaps), gaps
