"""Loading job sets from the database: what a first poll waits for.

One read is in flight at a time; the first polls that arrive meanwhile are
read together by the next, in one thread hop and one query. An idle service
reads a lone first poll at once; a busy one batches by itself.
"""

from __future__ import annotations

import asyncio
import logging

from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.store.thread import AsyncStore

log = logging.getLogger(__name__)


class JobSetLoader:
    """Reads stored job sets into their ``JobSet``, batching the reads that wait together."""

    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        # Job sets whose stored rows are being read, and those queued for the next read.
        self._loading: dict[JobSetKey, asyncio.Future[None]] = {}
        self._queued: list[JobSet] = []
        self._reader: asyncio.Task[None] | None = None

    async def ensure_loaded(self, js: JobSet) -> None:
        """Wait until the stored jobs of *js* are in memory; raise ``StoreError`` if unreadable."""
        if js.loaded:
            return
        future = self._loading.get(js.key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._loading[js.key] = loop.create_future()
            self._queued.append(js)
            if self._reader is None:
                self._reader = loop.create_task(self._read_queued(), name="load job sets")
        await asyncio.shield(future)

    def is_loading(self, key: JobSetKey) -> bool:
        """Whether a read of this job set is queued or in flight."""
        return key in self._loading

    @property
    def queued(self) -> int:
        """Job sets waiting for the next read (not counting the one in flight)."""
        return len(self._queued)

    async def _read_queued(self) -> None:
        batch: list[JobSet] = []
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                await self._read(batch)
        except BaseException:
            # Cancelled (shutdown): no poll may wait forever for a read that will not come.
            for js in batch + self._queued:
                future = self._loading.pop(js.key, None)
                if future is not None:
                    future.cancel()
            self._queued = []
            raise
        finally:
            self._reader = None

    async def _read(self, batch: list[JobSet]) -> None:
        try:
            stored = await self.store.load_job_sets([js.key for js in batch])
        except StoreError as exc:
            for js in batch:
                future = self._loading.pop(js.key)
                future.set_exception(exc)
                future.exception()  # retrieved here: a poll that gave up may not await it
            return
        for js in batch:
            found = stored.get(js.key)
            if found is None:
                js.load(None, (), 0.0)
            else:
                js.load(found.last_message_id, found.rows, found.last_activity)
            self._loading.pop(js.key).set_result(None)
        log.debug("loaded %d job sets from the database", len(batch))

    async def close(self) -> None:
        """Wait for the reads in flight to end (they end when the database answers)."""
        loading = list(self._loading.values())
        if loading:
            await asyncio.gather(*loading, return_exceptions=True)
