"""Loading stored job sets: first polls read what the database holds, in shared batches."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from armada_jobservice import AsyncJobServiceClient, JobState
from armada_jobservice._wire import WireState
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.model import JobRow, JobSetKey
from armada_jobservice.server.store.base import JobSetWrite

from ..helpers import eventually, queued_loads

Q = "queue-a"


async def test_concurrent_first_polls_of_many_stored_job_sets(
    service: JobServiceApp, client: AsyncJobServiceClient
) -> None:
    """First polls of many job sets at once each get their own stored jobs (read in batches)."""
    states = list(WireState)[:5]
    await service.store.write(
        [
            JobSetWrite(
                JobSetKey(Q, f"s{n}"), f"m{n}", time.time(), [JobRow(f"j{n}", states[n % 5], None)]
            )
            for n in range(40)
        ]
    )
    replies = await asyncio.gather(*(client.get_job_status(Q, f"s{n}", f"j{n}") for n in range(40)))
    assert [r.state for r in replies] == [JobState(states[n % 5].name) for n in range(40)]


async def test_first_polls_during_a_read_wait_and_are_read_together(
    service: JobServiceApp, client: AsyncJobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One database read is in flight at a time; first polls arriving meanwhile share the next."""
    real_load = service.store.load_job_sets
    gate = asyncio.Event()
    batches: list[list[Any]] = []

    async def gated_load(keys: list[Any]) -> Any:
        batches.append(list(keys))
        if len(batches) == 1:
            await gate.wait()
        return await real_load(keys)

    monkeypatch.setattr(service.store, "load_job_sets", gated_load)
    first = asyncio.ensure_future(client.get_job_status(Q, "s0", "j"))
    await eventually(lambda: len(batches) == 1)
    rest = [asyncio.ensure_future(client.get_job_status(Q, f"s{n}", "j")) for n in range(1, 20)]
    # All nineteen wait behind the first read, none starts a read of its own.
    await eventually(lambda: queued_loads(service) == 19)
    assert len(batches) == 1
    gate.set()
    replies = await asyncio.gather(first, *rest)
    assert [r.state for r in replies] == [JobState.JOB_ID_NOT_FOUND] * 20
    assert [len(b) for b in batches] == [1, 19]
    assert {k.job_set_id for b in batches for k in b} == {f"s{n}" for n in range(20)}
