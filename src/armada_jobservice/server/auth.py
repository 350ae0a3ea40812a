"""Who may ask about what: the callers of ``GetJobStatus``, identified and scoped.

Without it, anyone who reaches the port can make the service watch any
queue's job sets with the service's own Armada identity (a confused deputy).
``Access`` identifies a caller by a bearer token listed in
``client_tokens_file`` or by a client certificate (``grpc_tls_client_ca_file``,
scoped by ``client_cert_scopes_file``), and checks the queue against the
caller's scope and, with ``access_check: armada``, against Armada's verdict
on the caller's own token. A token, when the call carries one and tokens are
checked, is what identifies the caller; otherwise the certificate does.

It runs inside the servicer rather than as an interceptor because the
servicer needs the caller's identity (for the per-identity limits) and an
interceptor cannot hand it a per-call value. Health checks and reflection
never reach it. The fast path (``decide``) is synchronous: an allowed caller
polling a queue it asked about before costs a metadata scan, one SHA-256,
a constant-time comparison and two dictionary lookups (about 1.5 us, see
``scripts/probes/access_cost.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, NoReturn

from armada_jobservice._scopes import (
    IdentityScopes,
    Scope,
    TokenScopes,
    bearer_token,
    parse_identity_scopes,
    parse_token_scopes,
)
from armada_jobservice.server.armada_check import ArmadaAccessCheck, ArmadaUnavailable, Verdict
from armada_jobservice.server.config import Settings
from armada_jobservice.server.errors import ConfigError
from armada_jobservice.server.refusals import STATUS, Reason, Refusals
from armada_jobservice.server.watched_file import WatchedFile

#: How often, at most, the scope files are looked at for changes.
RECHECK_S = 1.0
#: The identity of every caller when no client authentication is configured.
ANONYMOUS = "anonymous"
#: The certificate fields that can identify a caller, in this order.
CERT_NAME_KEYS = ("x509_common_name", "peer_dns", "peer_uri")
GET_JOB_STATUS = "/jobservice.JobService/GetJobStatus"


@dataclass(frozen=True, slots=True)
class Denied:
    """A refusal decided without asking anyone."""

    reason: Reason
    identity: str
    detail: str


@dataclass(frozen=True, slots=True)
class AskArmada:
    """A caller, identified by a token, whose queue Armada has to rule on."""

    identity: str
    token: str
    """Kept only to show it to Armada."""
    digest: bytes


def certificate_names(auth_context: Any) -> list[str]:
    """The names a verified client certificate carries: its CN, then DNS and URI SANs."""
    names = []
    for key in CERT_NAME_KEYS:
        for raw in auth_context.get(key, ()):
            names.append(raw.decode("utf-8", "replace"))
    return names


class Access:
    """Identifies ``GetJobStatus`` callers and decides which queues they may ask about."""

    def __init__(
        self,
        *,
        tokens_file: str | None,
        client_certs: bool,
        cert_scopes_file: str | None,
        armada: ArmadaAccessCheck | None,
        refusals: Refusals,
    ) -> None:
        self._tokens: WatchedFile[TokenScopes] | None = None
        self._cert_scopes: WatchedFile[IdentityScopes] | None = None
        if tokens_file is not None:
            self._tokens = _watch(tokens_file, parse_token_scopes, "client_tokens_file", "token")
        if cert_scopes_file is not None:
            self._cert_scopes = _watch(
                cert_scopes_file, parse_identity_scopes, "client_cert_scopes_file", "identity"
            )
        self._client_certs = client_certs
        self.armada = armada
        self.refusals = refusals
        self._by_bearer = tokens_file is not None or armada is not None
        wanted = ["a valid 'authorization: bearer <token>' header"] if self._by_bearer else []
        if client_certs:
            listed = " listed in client_cert_scopes_file" if cert_scopes_file is not None else ""
            wanted.append("a client certificate" + listed)
        self._unauthenticated_text = " or ".join(wanted) + " is required"

    def refresh(self) -> None:
        """Look at the scope files for changes now rather than within ``RECHECK_S``."""
        for watched in (self._tokens, self._cert_scopes):
            if watched is not None:
                watched.refresh()

    def decide(self, context: Any, queue: str | None) -> str | Denied | AskArmada:
        """Allow (the caller's identity), refuse, or defer to Armada; without awaiting.

        ``queue`` None authenticates only (the request is invalid and will be
        refused as such). The allowed path creates no object besides the
        token's bytes and hash.
        """
        token = bearer_token(context.invocation_metadata()) if self._by_bearer else None
        if token is not None:
            given = token.encode()
            digest = hashlib.sha256(given).digest()
            scope: Scope | None = None
            if self._tokens is not None:
                scope = self._tokens.get().by_digest(digest, given)
                if scope is None:
                    return Denied(Reason.UNAUTHENTICATED, "unidentified", "unknown token")
                identity = scope.identity
            else:
                identity = "token:" + digest.hex()[:8]
            if queue is None:
                return identity
            if scope is not None and not scope.allows(queue):
                return Denied(Reason.OUT_OF_SCOPE, identity, "outside the caller's scope")
            armada = self.armada
            if armada is not None and armada.cached(digest, queue) is not Verdict.ALLOWED:
                return AskArmada(identity, token, digest)
            return identity
        if self._client_certs:
            names = certificate_names(context.auth_context())
            if not names:
                return Denied(Reason.UNAUTHENTICATED, "unidentified", "no client certificate")
            if self._cert_scopes is None:
                return "cert:" + names[0]
            scope = self._cert_scopes.get().lookup(names)
            if scope is None:
                return Denied(Reason.UNAUTHENTICATED, "cert:" + names[0], "certificate not listed")
            if queue is not None and not scope.allows(queue):
                return Denied(Reason.OUT_OF_SCOPE, scope.identity, "outside the caller's scope")
            return scope.identity
        return Denied(Reason.UNAUTHENTICATED, "unidentified", "no credentials")

    async def settle(
        self, outcome: Denied | AskArmada, context: Any, queue: str, method: str = GET_JOB_STATUS
    ) -> str:
        """Ask Armada when needed; abort the call (with its audit line) when refused."""
        if isinstance(outcome, Denied):
            await self.refuse(outcome, context, queue, method)
        identity = outcome.identity
        assert self.armada is not None
        try:
            verdict = await self.armada.verdict(outcome.token, outcome.digest, queue)
        except ArmadaUnavailable as exc:
            await self.refuse(
                Denied(Reason.ARMADA_UNAVAILABLE, identity, str(exc)), context, queue, method
            )
        if verdict is Verdict.UNAUTHENTICATED:
            denied = Denied(Reason.UNAUTHENTICATED, identity, "Armada did not accept the token")
            await self.refuse(denied, context, queue, method)
        if verdict is Verdict.DENIED:
            denied = Denied(Reason.ARMADA_DENIED, identity, "Armada denied it")
            await self.refuse(denied, context, queue, method)
        return identity

    async def refuse(self, denied: Denied, context: Any, queue: str, method: str) -> NoReturn:
        """Log and count the refusal, then abort the call with its status."""
        self.refusals.record(
            denied.reason,
            identity=denied.identity,
            method=method,
            queue=queue,
            peer=context.peer(),
            detail=denied.detail,
        )
        await context.abort(STATUS[denied.reason], self.message(denied, queue))
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

    def message(self, denied: Denied, queue: str) -> str:
        """What the caller is told: the same whether or not the job set exists."""
        if denied.reason is Reason.UNAUTHENTICATED:
            return self._unauthenticated_text
        if denied.reason is Reason.ARMADA_UNAVAILABLE:
            return f"cannot check permissions with Armada now ({denied.detail}); retry later"
        return f"permission denied: {denied.identity} may not ask about queue {queue!r}"


ACCESS_CHECKS = ("scopes", "armada")


def validate_access(settings: Settings) -> None:
    """Raise ``ConfigError`` naming the first access or per-identity setting that cannot work."""
    if settings.grpc_tls_client_ca_file is not None and settings.grpc_tls_cert_file is None:
        raise ConfigError(
            "grpc_tls_client_ca_file", "client certificates need TLS: set grpc_tls_cert_file"
        )
    if settings.client_cert_scopes_file is not None and settings.grpc_tls_client_ca_file is None:
        raise ConfigError(
            "client_cert_scopes_file", "certificate scopes need grpc_tls_client_ca_file"
        )
    if settings.access_check not in ACCESS_CHECKS:
        raise ConfigError("access_check", f"must be one of {', '.join(ACCESS_CHECKS)}")
    for name in ("max_subscriptions_per_identity", "new_subscriptions_per_identity_burst"):
        value = getattr(settings, name)
        if value is not None and value < 1:
            raise ConfigError(name, f"must be at least 1, got {value}")
    rate = settings.new_subscriptions_per_identity_per_minute
    if settings.new_subscriptions_per_identity_burst is not None and rate is None:
        raise ConfigError(
            "new_subscriptions_per_identity_burst",
            "needs new_subscriptions_per_identity_per_minute",
        )


def _watch(path: str, parse: Any, setting: str, what: str) -> Any:
    watched = WatchedFile(path, parse, setting=setting, recheck_s=RECHECK_S)
    if not len(watched.get()):
        raise ConfigError(setting, f"{path} holds no {what}")
    return watched


def make_access(
    settings: Settings, refusals: Refusals, armada: ArmadaAccessCheck | None
) -> Access | None:
    """The ``Access`` the settings ask for, or None when anyone may ask about anything."""
    client_certs = settings.grpc_tls_client_ca_file is not None
    if settings.client_tokens_file is None and not client_certs and armada is None:
        return None
    return Access(
        tokens_file=settings.client_tokens_file,
        client_certs=client_certs,
        cert_scopes_file=settings.client_cert_scopes_file,
        armada=armada,
        refusals=refusals,
    )
