"""A TCP proxy that cuts connections after a given number of bytes from the server.

It sits between the job service and the fake Armada. While ``cuts`` holds
budgets, the bytes going from Armada to the service are counted against the
first: when it runs out, the connection carrying that byte is reset, wherever
in an HTTP/2 frame or a gRPC message it falls, and the next budget counts on.
With no budget left, everything passes.
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
        #: Bytes from Armada to let through before each of the next cuts, in order.
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
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        up = asyncio.create_task(_pipe(client_r, server_w))
        down = asyncio.create_task(self._down(server_r, client_w))
        self._tasks.update((up, down))
        try:
            await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            self._tasks.difference_update((up, down))
            for writer in (client_w, server_w):
                # At once, whatever is still buffered: the peer sees the
                # connection end mid-stream, as when a load balancer drops it.
                transport = writer.transport
                with contextlib.suppress(Exception):
                    transport.abort()

    async def _down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy Armada's bytes until EOF or until the current budget runs out (a cut)."""
        while chunk := await reader.read(65536):
            if self.cuts and len(chunk) >= self.cuts[0]:
                writer.write(chunk[: self.cuts.popleft()])
                await writer.drain()
                self.cut_count += 1
                return
            if self.cuts:
                self.cuts[0] -= len(chunk)
            writer.write(chunk)
            await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF."""
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
