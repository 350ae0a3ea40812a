"""``access_check: armada``: Armada itself decides which queues a caller may ask about.

The caller's own bearer token is shown to Armada in the one call Armada
authorises per queue for exactly what the service would do on the caller's
behalf: ``GetJobSetEvents`` (Armada's queue "watch" permission), with
``watch=false`` on a job set id nobody uses, so the answer is an empty
stream or an error and costs Armada one permission check. Armada answers a
missing queue with NOT_FOUND before it checks permissions; that is a denial
here too, so no stream is opened for it.

Each verdict is kept for ``access_cache_s`` per (token, queue), refusals as
well as permissions; a failure to reach Armada is not kept and answers
UNAVAILABLE, so the caller retries. Concurrent first polls of one (token,
queue) share one call to Armada. The check uses a channel of its own without
the service's credentials: gRPC would send the channel's call credentials
alongside the caller's, and Armada must see the caller's alone.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from armada_client.armada import event_pb2, event_pb2_grpc

from armada_jobservice.server.config import Settings
from armada_jobservice.server.errors import ConfigError

log = logging.getLogger(__name__)

#: The job set the check asks about; any id will do, Armada checks the queue.
PROBE_JOB_SET = "armada-jobservice-access-check"
CHECK_TIMEOUT_S = 10.0
#: Verdicts kept at most; the oldest go first past this.
CACHE_LIMIT = 100_000


class Verdict(enum.Enum):
    """What Armada said about one caller's token and one queue."""

    ALLOWED = "allowed"
    DENIED = "denied"
    UNAUTHENTICATED = "unauthenticated"


class ArmadaUnavailable(Exception):
    """Armada could not be asked; the text says why (never the token)."""


class ArmadaAccessCheck:
    """Asks Armada whether a token may watch a queue, and remembers the answer."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache_s = settings.access_cache_s
        self._target = settings.armada_url
        self._tls = settings.armada_tls or settings.armada_ca_file is not None
        self._ca_file = settings.armada_ca_file
        #: The clock verdicts expire by; tests step their own.
        self.clock = clock
        self._channel: grpc.aio.Channel | None = None
        self._verdicts: dict[tuple[bytes, str], tuple[Verdict, float]] = {}
        self._pending: dict[tuple[bytes, str], asyncio.Task[Verdict]] = {}
        #: Calls made to Armada (the tests and the probe read it).
        self.calls = 0

    def cached(self, digest: bytes, queue: str) -> Verdict | None:
        """The verdict kept for (token digest, queue), if it has not expired."""
        kept = self._verdicts.get((digest, queue))
        if kept is None:
            return None
        verdict, until = kept
        if self.clock() >= until:
            del self._verdicts[(digest, queue)]
            return None
        return verdict

    async def verdict(self, token: str, digest: bytes, queue: str) -> Verdict:
        """Armada's verdict on *token* and *queue*, from the cache or asked now.

        Raises ``ArmadaUnavailable`` when Armada cannot be asked.
        """
        kept = self.cached(digest, queue)
        if kept is not None:
            return kept
        key = (digest, queue)
        check = self._pending.get(key)
        if check is None:
            # A task of its own: a caller who gives up does not end the check
            # for the others waiting on it.
            check = asyncio.get_running_loop().create_task(
                self._ask(token, queue), name="armada access check"
            )
            self._pending[key] = check
            check.add_done_callback(functools.partial(self._keep, key))
        return await asyncio.shield(check)

    def _keep(self, key: tuple[bytes, str], check: asyncio.Task[Verdict]) -> None:
        del self._pending[key]
        # exception() also marks a failure as seen when nobody waits any more.
        if check.cancelled() or check.exception() is not None:
            return
        if len(self._verdicts) >= CACHE_LIMIT:
            del self._verdicts[next(iter(self._verdicts))]
        self._verdicts[key] = (check.result(), self.clock() + self.cache_s)

    async def _ask(self, token: str, queue: str) -> Verdict:
        self.calls += 1
        stub = event_pb2_grpc.EventStub(self.channel)  # type: ignore[no-untyped-call]
        request = event_pb2.JobSetRequest(id=PROBE_JOB_SET, queue=queue, watch=False)
        call: Any = stub.GetJobSetEvents(
            request, metadata=(("authorization", "bearer " + token),), timeout=CHECK_TIMEOUT_S
        )
        try:
            first = await call.read()
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND):
                return Verdict.DENIED
            if code == grpc.StatusCode.UNAUTHENTICATED:
                return Verdict.UNAUTHENTICATED
            raise ArmadaUnavailable(f"Armada answered {code.name}: {exc.details()}") from exc
        if first is not grpc.aio.EOF:
            # Someone did use the id: the permission is what matters, not the events.
            call.cancel()
        return Verdict.ALLOWED

    @property
    def channel(self) -> grpc.aio.Channel:
        """The check's own channel to Armada, opened on first use."""
        if self._channel is None:
            if not self._tls:
                self._channel = grpc.aio.insecure_channel(self._target)
            else:
                root = None
                if self._ca_file is not None:
                    try:
                        with open(self._ca_file, "rb") as fh:
                            root = fh.read()
                    except OSError as exc:
                        raise ConfigError(
                            "armada_ca_file", f"cannot read {self._ca_file}: {exc}"
                        ) from exc
                creds = grpc.ssl_channel_credentials(root_certificates=root)
                self._channel = grpc.aio.secure_channel(self._target, creds)
        return self._channel

    async def close(self) -> None:
        """End the checks in flight and close the channel; idempotent."""
        checks = list(self._pending.values())
        for check in checks:
            check.cancel()
        await asyncio.gather(*checks, return_exceptions=True)
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close(grace=None)
