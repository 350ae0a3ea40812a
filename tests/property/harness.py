"""The fake Armada and the job service on an event loop of their own thread.

Hypothesis drives plain functions, so the property tests are synchronous:
they call the service with the real blocking client over a real socket while
the servers run here, started once per module. ``Running.call`` runs a
function on the servers' loop (the fake's ``publish`` must run there).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import settings

from armada_jobservice import JobServiceClient
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.config import Settings

from ..fake_armada import FakeArmada
from .cut_proxy import CutProxy

T = TypeVar("T")

#: Bound of any one wait on the servers; reaching it fails the test.
WAIT_S = 30.0


def service_settings(armada_port: int, directory: Path, **overrides: Any) -> Settings:
    """Test settings for a service reading Armada at *armada_port*, its SQLite in *directory*."""
    base = Settings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        armada_url=f"127.0.0.1:{armada_port}",
        database=f"sqlite:///{directory / 'jobservice.db'}",
        flush_interval_s=0.05,
        reconnect_max_backoff_s=0.2,
    )
    return dataclasses.replace(base, **overrides)


def examples(share: float) -> int:
    """A share of the profile's examples, for properties whose examples cost more."""
    return max(5, int(settings.default.max_examples * share))


class Running:
    """A fake Armada, optionally a ``CutProxy`` in front of it, and a job service reading it."""

    def __init__(self, directory: Path, *, cut_proxy: bool = False, **overrides: Any) -> None:
        self.directory = directory
        self.overrides = overrides
        self.armada = FakeArmada()
        self.proxy: CutProxy | None = None
        self._use_proxy = cut_proxy
        self.app: JobServiceApp | None = None
        self.client: JobServiceClient | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="servers", daemon=True)

    def start(self) -> None:
        """Start the loop's thread, then the servers on it, then a client."""
        self._thread.start()
        self.run(self._start())
        assert self.app is not None
        self.client = JobServiceClient(f"127.0.0.1:{self.app.grpc_port}", call_timeout_s=10)

    async def _start(self) -> None:
        await self.armada.start()
        port = self.armada.port
        if self._use_proxy:
            self.proxy = CutProxy(port)
            await self.proxy.start()
            port = self.proxy.port
        self.app = JobServiceApp(service_settings(port, self.directory, **self.overrides))
        await self.app.start()

    def stop(self) -> None:
        """Stop the client, the servers and the loop's thread."""
        if self.client is not None:
            self.client.close()
        self.run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT_S)
        self._loop.close()

    async def _stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
        if self.proxy is not None:
            await self.proxy.stop()
        await self.armada.stop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run *coro* on the servers' loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(WAIT_S)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the servers' loop and return its result."""

        async def on_loop() -> T:
            return fn(*args, **kwargs)

        return self.run(on_loop())


def wait_until(probe: Callable[[], T], until: Callable[[T], bool], timeout: float = WAIT_S) -> T:
    """Call *probe* until *until* holds for its result; fail with the last result at *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout} s; last value: {value!r}")
        time.sleep(0.01)
