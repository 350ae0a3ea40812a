"""What every way of getting an Armada token shares: the token, the error, the source.

A ``TokenSource`` fetches a fresh bearer token when asked (an OpenID token
POST, a command run); ``Refresher`` decides when to ask. Errors of a source
are ``ArmadaAuthError``: they name the method and carry the provider's own
error text, and never a secret (no request body, no token, no command
output). A secret read from a setting or a file is held by ``Secret``, whose
``repr`` shows nothing of it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Protocol

from armada_jobservice.server.errors import ConfigError, JobServiceError
from armada_jobservice.server.watched_file import WatchedFile


class ArmadaAuthError(JobServiceError):
    """A method could not produce a token: names the method and the provider's answer."""

    def __init__(self, method: str, problem: str) -> None:
        super().__init__(f"Armada credentials ({method}): {problem}")
        self.method = method
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token and how long it lives; ``repr`` never shows the value."""

    value: str = field(repr=False)
    #: Seconds the token lives from when it was fetched; None: unknown.
    lifetime_s: float | None


class TokenSource(Protocol):
    """Fetches a fresh token; raises ``ArmadaAuthError`` when it cannot."""

    #: The method's name in messages (``oidc-client-credentials``, ``exec``...).
    method: str

    async def fetch(self) -> Token:
        """A new token, from the provider or command."""
        ...

    async def aclose(self) -> None:
        """Release connections; idempotent."""
        ...


class Secret:
    """A secret given directly or in a file that is re-read when it changes."""

    def __init__(self, value: str | None, file: str | None, *, setting: str) -> None:
        """Hold *value*, or read *file* now (``ConfigError`` naming *setting* if unreadable)."""
        self._value = value
        self._file = (
            WatchedFile(file, _stripped, setting=setting + "_file") if file is not None else None
        )

    def get(self) -> str:
        """The secret now (the file's current contents)."""
        if self._file is not None:
            return self._file.get()
        return self._value or ""

    def __repr__(self) -> str:
        return "Secret(***)"


def _stripped(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("the file is empty")
    return value


def jwt_lifetime_s(token: str, now_epoch_s: float) -> float | None:
    """Seconds until a JWT's ``exp`` claim, or None when *token* is not a JWT with one.

    The signature is not checked: the service only wants to know when to
    fetch a new token; Armada checks the token itself.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    return float(exp) - now_epoch_s


def need(value: str | None, setting: str) -> str:
    """*value*, known to be set by validation; ``ConfigError`` naming *setting* otherwise."""
    if value is None:
        raise ConfigError(setting, "is required")
    return value
