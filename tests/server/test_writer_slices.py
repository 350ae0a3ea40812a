"""The writer's passes over every job set let the event loop run between slices."""

from __future__ import annotations

import asyncio

from armada_jobservice.server import writer
from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.model import JobSetKey


async def test_a_pass_goes_in_slices_with_a_turn_of_the_loop_between() -> None:
    """Every job set comes once, in slices of ``PASS_SLICE``; other tasks run in between."""
    job_sets = [JobSet(JobSetKey("q", f"s{n}"), 0.0) for n in range(2 * writer.PASS_SLICE + 1)]
    turns: list[int] = []
    seen: list[JobSet] = []

    async def other_task() -> None:
        while True:
            turns.append(len(seen))
            await asyncio.sleep(0)

    task = asyncio.get_running_loop().create_task(other_task())
    await asyncio.sleep(0)
    async for part in writer.in_slices(job_sets):
        assert len(part) <= writer.PASS_SLICE
        seen.extend(part)
    task.cancel()
    assert seen == job_sets
    # The other task ran after the first slice and after the second.
    assert writer.PASS_SLICE in turns
    assert 2 * writer.PASS_SLICE in turns


async def test_a_pass_works_on_a_copy() -> None:
    """Job sets added while a pass yields do not break it (it walks a copy)."""
    held = {n: JobSet(JobSetKey("q", f"s{n}"), 0.0) for n in range(writer.PASS_SLICE + 5)}
    count = 0
    async for part in writer.in_slices(held.values()):
        count += len(part)
        held[len(held)] = JobSet(JobSetKey("q", "new"), 0.0)
    assert count == writer.PASS_SLICE + 5
