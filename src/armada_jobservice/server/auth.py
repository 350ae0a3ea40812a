"""Who may ask: bearer-token authentication of the service's own callers.

Without it, anyone who reaches the port can make the service subscribe, with
its own Armada identity, to any queue's job sets. With ``client_tokens_file``
set, ``GetJobStatus`` requires ``authorization: bearer <token>`` with a token
listed in that file (one per line, ``#`` comments); the file is re-read when
it changes. Health checks and reflection stay open for probes and tooling.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from armada_jobservice.server.errors import ConfigError
from armada_jobservice.server.watched_file import WatchedFile

log = logging.getLogger(__name__)

PROTECTED_METHODS = frozenset({"/jobservice.JobService/GetJobStatus"})
RECHECK_S = 1.0


def parse_tokens(text: str) -> tuple[bytes, ...]:
    """The tokens of a tokens file: one per line, blank lines and ``#`` comments skipped."""
    lines = (line.strip() for line in text.splitlines())
    return tuple(line.encode() for line in lines if line and not line.startswith("#"))


class AcceptedTokens:
    """The set of accepted tokens, from a file checked for changes at most once a second."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = WatchedFile(
            path, parse_tokens, setting="client_tokens_file", recheck_s=RECHECK_S
        )
        if not self._file.get():
            raise ConfigError("client_tokens_file", f"{path} holds no token")

    def accepts(self, token: str) -> bool:
        """Whether *token* is one of the accepted tokens (constant time per token)."""
        given = token.encode()
        ok = False
        for accepted in self._file.get():
            ok |= hmac.compare_digest(given, accepted)
        return ok


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses protected calls without an accepted bearer token (UNAUTHENTICATED)."""

    def __init__(self, tokens: AcceptedTokens) -> None:
        self._tokens = tokens

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "a valid 'authorization: bearer <token>' header is required",
            )

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Pass authorised calls on; answer the others with the refusal handler."""
        if handler_call_details.method in PROTECTED_METHODS:
            token = ""
            for key, value in handler_call_details.invocation_metadata or ():
                if key == "authorization" and isinstance(value, str):
                    scheme, _, rest = value.partition(" ")
                    if scheme.lower() == "bearer":
                        token = rest.strip()
            if not token or not self._tokens.accepts(token):
                return self._refusal
        return await continuation(handler_call_details)
