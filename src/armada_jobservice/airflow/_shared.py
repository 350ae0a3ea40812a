"""One ``AsyncJobServiceClient`` per job service and event loop, shared by the triggers in it.

The triggerer runs every deferred task's trigger in one event loop. Each
trigger opening its own client would mean one channel, and one call per
poll, per task; sharing one client per (address, TLS, token) lets the
client's own batching and shared watches (where it has them) serve them all.
The client is closed when the last trigger using it is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc

from armada_jobservice._async_client import AsyncJobServiceClient

Key = tuple[int, str, bool, str | None]


@dataclass(slots=True)
class _Entry:
    client: AsyncJobServiceClient
    users: int = 0


_clients: dict[Key, _Entry] = {}


@asynccontextmanager
async def shared_client(
    target: str, *, tls: bool, token: str | None
) -> AsyncIterator[AsyncJobServiceClient]:
    """Lend the loop's client for ``target``, opened if needed, closed after its last user."""
    # grpc.aio channels belong to the loop that made them: the loop is part of the key.
    key: Key = (id(asyncio.get_running_loop()), target, tls, token)
    entry = _clients.get(key)
    if entry is None:
        creds = grpc.access_token_call_credentials(token) if token else None
        entry = _clients[key] = _Entry(
            AsyncJobServiceClient(target, tls=tls, call_credentials=creds)
        )
    entry.users += 1
    try:
        yield entry.client
    finally:
        entry.users -= 1
        if entry.users == 0:
            del _clients[key]
            await entry.client.close()


def open_clients() -> int:
    """How many shared clients are open now (for tests and diagnostics)."""
    return len(_clients)
