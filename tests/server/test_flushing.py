"""Flushing: the writer batches cache changes into the database, early once streams are quiet."""

from __future__ import annotations

import time

from armada_jobservice._wire import WireState

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
    """Once events stop, one early flush writes the changes long before the (hour-long) interval."""
    app = await serve(flush_interval_s=NEVER_S)
    client = connect(app)
    await client.get_job_status(Q, JS, "job-1")
    await eventually(lambda: armada.open_streams == 1)
    armada.publish(Q, JS, "running", "job-1")
    # The quiet flush is due about QUIET_S + QUIET_MIN_GAP_S after the event (the
    # schedule's timing is table-tested in test_flush_schedule.py); any flush
    # at all proves it here, as the interval is an hour. The bound only keeps
    # a broken writer from hanging the test, with room for a loaded machine.
    stored = await eventually(
        lambda: app.store.load_job_set((Q, JS)),
        lambda s: s is not None and bool(s.rows),
        timeout=10.0,
        interval=0.01,
    )
    assert [(r.job_id, r.state) for r in stored.rows] == [("job-1", WireState.RUNNING)]
    # One flush did it: the early one, not a string of them.
    assert metric(app, "armada_jobservice_flush_batch_jobs_count") == 1
