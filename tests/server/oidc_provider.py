"""A real OpenID Connect provider for tests: ``tests/oidc/provider.js`` (npm ``oidc-provider``).

``OidcProvider.start`` writes the provider's settings (clients, users, the
service-account token it accepts), runs it with Node on a free port of
127.0.0.1, and waits until its discovery document answers. ``introspect``
asks the provider itself whether a token is valid (RFC 7662), so tests
check tokens against the provider that issued them.

Tests using it are skipped when ``node`` is not installed; with Node but
without the npm packages they fail, naming the command that installs them
(CI runs it: ``npm ci --prefix tests/oidc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

OIDC_DIR = Path(__file__).resolve().parents[1] / "oidc"

#: The client the tests introspect with (never given to the service).
INTROSPECTOR = ("introspector", "introspector-secret-5b1f")


@dataclass
class Client:
    """A client registered at the provider."""

    client_id: str
    grant_types: list[str]
    client_secret: str | None = None
    #: Lifetime of the tokens it gets, in seconds.
    ttl_s: int = 600


@dataclass
class OidcProvider:
    """A running provider and what it was configured with."""

    workdir: Path
    clients: list[Client]
    users: dict[str, str] = field(default_factory=dict)
    #: The service-account token the kubernetes grant accepts (a file: tests rotate it).
    assertion_file: Path | None = None
    issuer: str = ""
    log: list[str] = field(default_factory=list)
    _proc: asyncio.subprocess.Process | None = None

    @staticmethod
    def require_node() -> str:
        """The node binary; skips the test where Node.js is not installed."""
        node = shutil.which("node")
        if node is None:
            pytest.skip("Node.js is not installed: the OpenID provider of these tests needs it")
        if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
            raise AssertionError(
                "the OpenID provider's npm packages are missing: run npm ci --prefix tests/oidc"
            )
        return node

    async def start(self) -> None:
        """Run the provider and wait until its discovery document answers."""
        node = self.require_node()
        settings = {
            "clients": [
                {
                    "client_id": c.client_id,
                    "client_secret": c.client_secret,
                    "grant_types": c.grant_types,
                    "ttl_s": c.ttl_s,
                }
                for c in [
                    *self.clients,
                    Client(INTROSPECTOR[0], ["client_credentials"], INTROSPECTOR[1]),
                ]
            ],
            "users": self.users,
            "kubernetes_assertion_file": str(self.assertion_file or "/nonexistent"),
        }
        path = self.workdir / "oidc-settings.json"
        path.write_text(json.dumps(settings))
        self._proc = await asyncio.create_subprocess_exec(
            node,
            str(OIDC_DIR / "provider.js"),
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        try:
            first = await asyncio.wait_for(self._proc.stdout.readline(), 30)
            self.issuer = json.loads(first)["issuer"]
        except (TimeoutError, ValueError, KeyError) as exc:
            await self.stop()
            raise AssertionError(f"the OpenID provider did not start: {self.log}") from exc
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            while True:
                try:
                    answer = await http.get(self.issuer + "/.well-known/openid-configuration")
                    if answer.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("the OpenID provider's discovery document never answered")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Stop the provider (idempotent) and keep what it wrote on stderr."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        _, err = await proc.communicate()
        self.log.extend(err.decode().splitlines())

    async def introspect(self, token: str) -> dict[str, Any]:
        """The provider's own verdict on *token* (``active``, ``client_id``, ``exp``...)."""
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                self.issuer + "/token/introspection", data={"token": token}, auth=INTROSPECTOR
            )
        answer.raise_for_status()
        verdict: dict[str, Any] = answer.json()
        return verdict
