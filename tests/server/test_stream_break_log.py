"""Stream breaks are logged without a flood: once per kind and window, then summed up."""

from __future__ import annotations

import asyncio
import logging

import pytest

from armada_jobservice.server.streams import BreakLog

from ..fake_armada import FakeArmada
from ..helpers import Connect, Serve, eventually, metric

Q = "queue-a"
LOGGER = "armada_jobservice.server.streams"


async def test_breaks_of_one_kind_are_logged_once_then_summed_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first break of a window is logged, the others counted and summed up at its end."""
    caplog.set_level(logging.DEBUG, logger="break-log-test")
    breaks = BreakLog(logging.getLogger("break-log-test"), window_s=0.2)
    for n in range(5):
        breaks.report(logging.WARNING, "UNAVAILABLE", "stream %d broke", n)
    breaks.report(logging.WARNING, "INTERNAL", "stream %d broke", 9)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    # Each kind has its own window: one line each, the rest at DEBUG.
    assert warnings() == ["stream 0 broke", "stream 9 broke"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG] == [
        f"stream {n} broke" for n in range(1, 5)
    ]
    await asyncio.sleep(0.3)
    assert warnings()[2:] == [
        "4 more event streams broke (UNAVAILABLE) in the 0.2 s after the line above; "
        "each reconnects with its own backoff"
    ]
    # A new window logs its first break again.
    breaks.report(logging.WARNING, "UNAVAILABLE", "stream %d broke", 5)
    assert warnings()[-1] == "stream 5 broke"


async def test_an_armada_outage_logs_one_line_not_one_per_job_set(
    armada: FakeArmada, serve: Serve, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """Thirty streams broken by Armada going away: one WARNING line, every break counted."""
    app = await serve()
    client = connect(app)
    sets = [f"set-{n}" for n in range(30)]
    for job_set in sets:
        armada.publish(Q, job_set, "submitted", "job-1")
    await client.get_job_statuses([(Q, job_set, "job-1") for job_set in sets])
    await eventually(lambda: armada.open_streams == len(sets))
    caplog.set_level(logging.INFO, logger=LOGGER)
    await armada.stop()
    reconnects = "armada_jobservice_stream_reconnects_total"
    # Every stream broke, and was retried at least once more, with Armada gone.
    await eventually(lambda: metric(app, reconnects, reason="UNAVAILABLE") >= 2 * len(sets))
    lines = [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.INFO
    ]
    assert len(lines) == 1, lines
    assert "UNAVAILABLE" in lines[0]
