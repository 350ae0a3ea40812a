"""A TCP proxy that cuts connections after a given number of bytes from the server.

It sits between the job service and the fake Armada. Each new connection
takes the next budget from ``cuts``: once that many bytes went from Armada to
the service, both sides are closed, wherever in a gRPC message that falls.
Connections without a budget left pass everything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class CutProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_port``, cutting connections as told."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        #: Budgets (bytes from Armada) of the next connections, in order.
        self.cuts: deque[int] = deque()
        #: Connections cut so far.
        self.cut_count = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every connection (idempotent)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        budget = self.cuts.popleft() if self.cuts else None
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        up = asyncio.create_task(_pipe(client_r, server_w, None))
        down = asyncio.create_task(_pipe(server_r, client_w, budget))
        self._tasks.update((up, down))
        try:
            await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
            if budget is not None and down.done() and not down.cancelled() and down.result():
                self.cut_count += 1
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            self._tasks.difference_update((up, down))
            for writer in (client_w, server_w):
                # A reset rather than a polite close: the peer sees the
                # connection die, as when a load balancer drops it.
                transport = writer.transport
                with contextlib.suppress(Exception):
                    transport.abort()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, budget: int | None
) -> bool:
    """Copy until EOF, or until *budget* bytes are copied; return whether the budget ran out."""
    left = budget
    while left is None or left > 0:
        chunk = await reader.read(65536 if left is None else min(65536, left))
        if not chunk:
            return False
        writer.write(chunk)
        await writer.drain()
        if left is not None:
            left -= len(chunk)
    return True
