"""The ``demo`` command end to end: simulator, job service and polling in one process."""

from __future__ import annotations

import io

from rich.console import Console

from armada_jobservice.cli import main
from armada_jobservice.cli.demo import DemoOptions, run_demo


async def test_the_demo_tracks_every_job_to_a_terminal_state() -> None:
    """A small demo ends with every job terminal, one cancelled and one preempted, exit 0."""
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    options = DemoOptions(
        jobs=6, job_sets=2, time_scale=0.05, poll_interval_s=0.05, timeout_s=100, live=False
    )
    assert await run_demo(options, console) == 0
    text = out.getvalue()
    assert "Summary: 6 jobs terminal" in text
    assert "1 cancelled" in text
    assert "preempted" in text


def test_the_demo_command_rejects_a_batch_too_small_for_its_script() -> None:
    """``demo --jobs 1`` is a usage error: the script needs a job to cancel and one to preempt."""
    assert main(["demo", "--jobs", "1"]) == 2
