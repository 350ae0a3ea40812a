"""Runs a blocking ``Store`` on one dedicated thread, for the asyncio service.

One thread means one writer and a first-in-first-out order of reads and
writes; the event loop only pays one thread hop per batch or per job-set load,
never one per poll.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.store.base import JobSetWrite, Store, StoredJobSet

T = TypeVar("T")


class AsyncStore:
    """Async face of a ``Store``: each call runs on the store's own thread, in order."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobservice-store")

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def open(self) -> None:
        """Open the store (create tables if missing)."""
        await self._run(self.store.open)

    async def close(self) -> None:
        """Close the store and stop its thread; idempotent."""
        await self._run(self.store.close)
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        """Raise ``StoreError`` unless the database answers."""
        await self._run(self.store.ping)

    async def write(self, batch: list[JobSetWrite]) -> list[JobSetKey]:
        """Write one batch in one transaction; return the job sets the fence refused."""
        return await self._run(self.store.write, batch)

    async def load_job_set(self, key: JobSetKey) -> StoredJobSet | None:
        """Read one job set."""
        return await self._run(self.store.load_job_set, key)

    async def load_job_sets(self, keys: list[JobSetKey]) -> dict[JobSetKey, StoredJobSet]:
        """Read several job sets in one hop."""
        return await self._run(self.store.load_job_sets, keys)

    async def idle_job_sets(self, cutoff: float, limit: int) -> list[JobSetKey]:
        """Job sets idle since before *cutoff*."""
        return await self._run(self.store.idle_job_sets, cutoff, limit)

    def delete_job_sets_soon(self, keys: Iterable[JobSetKey], cutoff: float) -> asyncio.Future[int]:
        """Queue a deletion now (so later reads see it) and return its future."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(
            self._executor, functools.partial(self.store.delete_job_sets, list(keys), cutoff)
        )

    async def counts(self) -> tuple[int, int]:
        """Numbers of stored job sets and jobs."""
        return await self._run(self.store.counts)
