"""The one shared connection to Armada, and the credentials sent on it.

Credentials are those armadactl uses (``armada_auth``): HTTP basic
(``authorization: basic base64(user:password)``) or a bearer token
(``authorization: bearer TOKEN``) given directly, read from a file, or
fetched and renewed in the background (OpenID Connect flows, an exec
command). On a TLS channel they travel as gRPC call credentials; gRPC refuses
call credentials on a plain-text channel, so there the same header is
attached to each call. ``start()`` fetches the first token; ``close()`` stops
the renewal and closes the channel.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from armada_jobservice.server.armada_auth import ArmadaAuthError, Credentials, Metadata
from armada_jobservice.server.config import Settings
from armada_jobservice.server.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["CHANNEL_OPTIONS", "Credentials", "Metadata", "Upstream"]

# Long-lived watch streams sit idle for hours: keepalive pings find a dead
# connection. Armada (Go gRPC) refuses pings more often than every 5 minutes.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 300_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


class _AuthPlugin(grpc.AuthMetadataPlugin):  # type: ignore[misc]
    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def __call__(
        self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        try:
            callback(self._credentials.metadata(), None)
        except Exception as exc:  # gRPC wants errors through the callback
            callback((), exc)


class Upstream:
    """The shared ``grpc.aio`` channel to Armada and the per-call metadata it needs."""

    def __init__(self, settings: Settings) -> None:
        self.target = settings.armada_url
        self.credentials = Credentials(settings)
        self.tls = settings.armada_tls or settings.armada_ca_file is not None
        self._ca_file = settings.armada_ca_file
        self._channel: grpc.aio.Channel | None = None

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel, opened on first use."""
        if self._channel is None:
            self._channel = self._open()
        return self._channel

    def _open(self) -> grpc.aio.Channel:
        if not self.tls:
            return grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        root = None
        if self._ca_file is not None:
            try:
                with open(self._ca_file, "rb") as fh:
                    root = fh.read()
            except OSError as exc:
                raise ConfigError("armada_ca_file", f"cannot read {self._ca_file}: {exc}") from exc
        creds = grpc.ssl_channel_credentials(root_certificates=root)
        if self.credentials.enabled:
            creds = grpc.composite_channel_credentials(
                creds, grpc.metadata_call_credentials(_AuthPlugin(self.credentials))
            )
        return grpc.aio.secure_channel(self.target, creds, options=CHANNEL_OPTIONS)

    async def start(self) -> None:
        """Fetch the first token of a renewed method.

        A provider or command that refuses at start-up is a setting that cannot
        work: ``ConfigError`` naming the method's setting and the refusal (the
        service then exits with the code of a bad setting, for its supervisor to
        restart it, rather than serving polls it cannot answer).
        """
        try:
            await self.credentials.start()
        except ArmadaAuthError as exc:
            setting = "armada_exec_cmd" if exc.method == "exec" else "armada_oidc_flow"
            raise ConfigError(setting, str(exc)) from None

    def refused(self, sent: Metadata | None) -> None:
        """Armada answered UNAUTHENTICATED to a call that carried *sent*: renew the token."""
        self.credentials.invalidate(sent)

    def call_metadata(self) -> Metadata | None:
        """Metadata to pass on each call (plain text with credentials only)."""
        if self.tls or not self.credentials.enabled:
            return None
        return self.credentials.metadata()

    async def close(self) -> None:
        """Stop renewing tokens and close the channel; idempotent."""
        await self.credentials.stop()
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close(grace=None)
