"""Keeps a fresh Armada token at hand, fetched in the background.

``start()`` fetches the first token (a refusal then stops start-up, naming
the method and the provider's answer) and starts a task that fetches the
next one when ``RefreshSchedule`` says so. Calls to Armada only read the
token held (``current``), so no poll and no stream reconnect ever waits for a
provider. A later refusal is logged, naming the method; the previous token
stays in use until it expires, and the fetch is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from armada_jobservice.server.armada_auth.base import ArmadaAuthError, Token, TokenSource
from armada_jobservice.server.armada_auth.schedule import RefreshPolicy, RefreshSchedule

log = logging.getLogger(__name__)


class Refresher:
    """Owns a token source's current token and the task that renews it."""

    def __init__(
        self,
        source: TokenSource,
        policy: RefreshPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Renew tokens of *source* on the schedule of *policy*, timed by *clock*."""
        self.source = source
        self.method = source.method
        self.schedule = RefreshSchedule(policy)
        self._clock = clock
        self._token: Token | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        #: Tokens fetched since start (for the logs and tests).
        self.fetches = 0

    @property
    def current(self) -> str:
        """The token to send now (the last one fetched, even if it has expired)."""
        if self._token is None:
            raise ArmadaAuthError(self.method, "no token yet: the service has not started")
        return self._token.value

    async def start(self) -> None:
        """Fetch the first token (``ArmadaAuthError`` if refused), then renew in the background."""
        if self._task is not None:
            return
        await self._fetch_once()
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"armada credentials ({self.method})"
        )

    async def stop(self) -> None:
        """Stop renewing and close the source's connections; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.source.aclose()

    def invalidate(self, refused: str | None = None) -> None:
        """Armada refused *refused* (the token sent): fetch a new one soon.

        A refusal of a token already replaced changes nothing: many streams
        refused at once cause one fetch.
        """
        if self._token is None or (refused is not None and refused != self._token.value):
            return
        log.info("Armada refused the %s token; fetching a new one", self.method)
        self.schedule.invalidate(self._clock())
        if self._wake is not None:
            self._wake.set()

    async def _fetch_once(self) -> None:
        token = await self.source.fetch()
        self._token = token
        self.fetches += 1
        self.schedule.on_token(self._clock(), token.lifetime_s)
        lifetime = "unknown" if token.lifetime_s is None else f"{token.lifetime_s:.0f} s"
        log.info("Armada credentials (%s): new token, lifetime %s", self.method, lifetime)

    async def _run(self) -> None:
        assert self._wake is not None
        expired_logged = False
        while True:
            delay = self.schedule.step(self._clock())
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            try:
                await self._fetch_once()
                expired_logged = False
            except ArmadaAuthError as exc:
                now = self._clock()
                retry = self.schedule.on_failure(now)
                log.error("%s; keeping the previous token, retrying in %.1f s", exc, retry)
                if self.schedule.expired(now) and not expired_logged:
                    expired_logged = True
                    log.error(
                        "Armada credentials (%s): the previous token has expired; "
                        "Armada will refuse calls until a new one is fetched",
                        self.method,
                    )
            except Exception as exc:  # a bug in a source must not end renewal for good
                retry = self.schedule.on_failure(self._clock())
                log.exception(
                    "Armada credentials (%s): %s; retrying in %.1f s",
                    self.method,
                    type(exc).__name__,
                    retry,
                )
