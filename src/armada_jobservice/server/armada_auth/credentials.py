"""The ``authorization`` header for calls to Armada, from whichever method is configured.

Basic auth and a fixed token are a header built once; a token file is
re-read when it changes (``WatchedFile``); the OpenID flows and exec
commands have a ``Refresher`` that renews the token in the background.
"""

from __future__ import annotations

import base64
import logging

from armada_jobservice.server.armada_auth import rules
from armada_jobservice.server.armada_auth.base import Secret, TokenSource, need
from armada_jobservice.server.armada_auth.exec import ExecSource
from armada_jobservice.server.armada_auth.oidc import (
    ClientCredentialsSource,
    KubernetesSource,
    OidcFlow,
    PasswordSource,
)
from armada_jobservice.server.armada_auth.refresher import Refresher
from armada_jobservice.server.armada_auth.schedule import RefreshPolicy
from armada_jobservice.server.config import Settings
from armada_jobservice.server.watched_file import WatchedFile

log = logging.getLogger(__name__)

Metadata = tuple[tuple[str, str], ...]


def token_source(settings: Settings) -> TokenSource | None:
    """The renewable source the settings ask for (OpenID flow, exec), or None."""
    method = rules.method_of(settings)
    if method == "exec":
        return ExecSource(
            need(settings.armada_exec_cmd, "armada_exec_cmd"),
            settings.armada_exec_args,
            settings.armada_exec_env,
            token_ttl_s=settings.armada_exec_token_ttl_s,
        )
    if method is None or not method.startswith("oidc-"):
        return None
    secret = None
    if settings.armada_oidc_client_secret or settings.armada_oidc_client_secret_file:
        secret = Secret(
            settings.armada_oidc_client_secret,
            settings.armada_oidc_client_secret_file,
            setting="armada_oidc_client_secret",
        )
    provider_url = need(settings.armada_oidc_provider_url, "armada_oidc_provider_url")
    flow = OidcFlow(
        method,
        provider_url,
        need(settings.armada_oidc_client_id, "armada_oidc_client_id"),
        settings.armada_oidc_scopes,
        secret,
        # Armada's client sends this grant here, without discovery.
        token_endpoint=(
            provider_url.rstrip("/") + "/connect/token" if method == "oidc-kubernetes" else None
        ),
    )
    if method == "oidc-client-credentials":
        return ClientCredentialsSource(flow)
    if method == "oidc-password":
        password = Secret(
            settings.armada_oidc_password,
            settings.armada_oidc_password_file,
            setting="armada_oidc_password",
        )
        return PasswordSource(
            flow, need(settings.armada_oidc_username, "armada_oidc_username"), password
        )
    return KubernetesSource(flow, settings.armada_k8s_token_file)


class Credentials:
    """Produces the ``authorization`` header for calls to Armada, or nothing."""

    def __init__(self, settings: Settings, policy: RefreshPolicy | None = None) -> None:
        """Set up the configured method; files are read now (``ConfigError`` naming them)."""
        self.method = rules.method_of(settings)
        self._static: str | None = None
        self._file: WatchedFile[str] | None = None
        source = token_source(settings)
        #: The background renewal of an OpenID or exec token (None for the other methods).
        self.refresher = Refresher(source, policy) if source is not None else None
        if settings.armada_username is not None:
            raw = f"{settings.armada_username}:{settings.armada_password}".encode()
            self._static = "basic " + base64.b64encode(raw).decode()
        elif settings.armada_token is not None:
            self._static = "bearer " + settings.armada_token
        elif settings.armada_token_file is not None:
            # Read now: an unreadable file stops start-up, naming the setting.
            self._file = WatchedFile(
                settings.armada_token_file, str.strip, setting="armada_token_file"
            )

    @property
    def enabled(self) -> bool:
        """Whether any credentials are configured."""
        return self.method is not None

    async def start(self) -> None:
        """Fetch the first token of a renewable method; ``ArmadaAuthError`` if refused."""
        if self.refresher is not None:
            await self.refresher.start()

    async def stop(self) -> None:
        """Stop renewing tokens; idempotent."""
        if self.refresher is not None:
            await self.refresher.stop()

    def metadata(self) -> Metadata:
        """The header to send now; never waits for a provider."""
        if self._static is not None:
            return (("authorization", self._static),)
        if self._file is not None:
            return (("authorization", "bearer " + self._file.get()),)
        if self.refresher is not None:
            return (("authorization", "bearer " + self.refresher.current),)
        return ()

    def invalidate(self, sent: Metadata | None) -> None:
        """Armada answered UNAUTHENTICATED to a call that carried *sent*: renew that token.

        Only renewable methods can do anything about it; for the others the
        refusal is already logged by the caller.
        """
        if self.refresher is None:
            return
        refused = None
        for key, value in sent or ():
            if key == "authorization" and value.startswith("bearer "):
                refused = value[len("bearer ") :]
        self.refresher.invalidate(refused)
