"""OpenID Connect tokens for Armada: the client-credentials, password and kubernetes flows.

The flows armadactl offers without a person at a browser. Each is one token
POST (RFC 6749) to the provider, made with httpx:

- client_credentials: ``grant_type=client_credentials`` with the client
  authenticated by HTTP basic auth (``client_secret_basic``, which every
  provider supports), at the token endpoint named by the provider's discovery
  document (``PROVIDER/.well-known/openid-configuration``);
- password: ``grant_type=password`` with ``username`` and ``password``, the
  client authenticated as above when a secret is configured, else by its
  ``client_id`` alone (a public client, as armadactl's);
- kubernetes: ``grant_type=kubernetes`` with ``client_id``, ``scope`` and the
  pod's service-account token as ``client_assertion``, at
  ``PROVIDER/connect/token`` (where Armada's own client sends it). The
  service-account token is read at each exchange: kubelet rotates it.

An answer other than a token becomes ``ArmadaAuthError`` with the provider's
``error`` and ``error_description``; nothing of what was sent is repeated.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus

import httpx

from armada_jobservice.server.armada_auth.base import (
    ArmadaAuthError,
    Secret,
    Token,
    jwt_lifetime_s,
)

log = logging.getLogger(__name__)

#: Seconds one request to the provider may take, connecting included.
HTTP_TIMEOUT_S = 15.0
#: Where a pod's service-account token comes from before the file.
K8S_TOKEN_ENV = "K8S_SERVICEACCOUNT_TOKEN"


class OidcFlow:
    """One OpenID flow: finds the token endpoint, POSTs its grant, reads the answer."""

    def __init__(
        self,
        method: str,
        provider_url: str,
        client_id: str,
        scopes: tuple[str, ...],
        client_secret: Secret | None,
        *,
        token_endpoint: str | None = None,
    ) -> None:
        """A flow named *method*; *token_endpoint* None means: discover it."""
        self.method = method
        self.provider_url = provider_url.rstrip("/")
        self.client_id = client_id
        self.scopes = scopes
        self.client_secret = client_secret
        self._token_endpoint = token_endpoint
        # The system's CAs (as Armada's Go client uses), not httpx's bundled
        # ones: a provider signed by a company CA installed on the host works,
        # and SSL_CERT_FILE / SSL_CERT_DIR point OpenSSL elsewhere.
        self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, verify=ssl.create_default_context())

    async def aclose(self) -> None:
        """Close the HTTP connections; idempotent."""
        await self._http.aclose()

    async def token_endpoint(self) -> str:
        """The provider's token endpoint, from its discovery document (fetched once)."""
        if self._token_endpoint is None:
            url = self.provider_url + "/.well-known/openid-configuration"
            document = await self._request("GET", url)
            endpoint = document.get("token_endpoint")
            if not isinstance(endpoint, str) or not endpoint:
                raise ArmadaAuthError(self.method, f"{url} names no token_endpoint")
            self._token_endpoint = endpoint
        return self._token_endpoint

    async def post_grant(self, form: dict[str, str]) -> Token:
        """POST *form* (a grant) to the token endpoint; the token of the answer."""
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        headers: dict[str, str] = {}
        if self.client_secret is not None:
            # RFC 6749 2.3.1: both halves form-encoded before the basic-auth pairing.
            pair = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret.get())}"
            headers["authorization"] = "Basic " + _b64(pair)
        else:
            form["client_id"] = self.client_id
        endpoint = await self.token_endpoint()
        answer = await self._request("POST", endpoint, data=form, headers=headers)
        value = answer.get("access_token")
        if not isinstance(value, str) or not value:
            raise ArmadaAuthError(self.method, f"{endpoint} answered without an access_token")
        expires_in = answer.get("expires_in")
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            lifetime: float | None = float(expires_in)
        else:
            lifetime = jwt_lifetime_s(value, time.time())
        log.debug("%s: token fetched from %s, lifetime %s s", self.method, endpoint, lifetime)
        return Token(value, lifetime)

    async def _request(self, verb: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(verb, url, **kwargs)
        except httpx.HTTPError as exc:
            # The exception's text names the URL and the socket error, not the body.
            raise ArmadaAuthError(
                self.method, f"cannot reach the provider at {url}: {type(exc).__name__}: {exc}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            raise ArmadaAuthError(self.method, _refusal(url, response.status_code, body))
        if not isinstance(body, dict):
            raise ArmadaAuthError(self.method, f"{url} answered something other than JSON")
        return body


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _refusal(url: str, status: int, body: object) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text = f"the provider refused (HTTP {status}): {body['error']}"
        description = body.get("error_description")
        if isinstance(description, str) and description:
            text += f": {description[:300]}"
        return text + f" ({url})"
    return f"the provider answered HTTP {status} ({url})"


class ClientCredentialsSource:
    """Tokens of the client-credentials flow."""

    def __init__(self, flow: OidcFlow) -> None:
        """Fetch through *flow* (which holds the client secret)."""
        self.flow = flow
        self.method = flow.method

    async def fetch(self) -> Token:
        """A new token for the client itself."""
        return await self.flow.post_grant({"grant_type": "client_credentials"})

    async def aclose(self) -> None:
        """Close the flow's connections."""
        await self.flow.aclose()


class PasswordSource:
    """Tokens of the resource-owner password flow."""

    def __init__(self, flow: OidcFlow, username: str, password: Secret) -> None:
        """Fetch through *flow* for *username*, whose *password* may live in a file."""
        self.flow = flow
        self.method = flow.method
        self.username = username
        self.password = password

    async def fetch(self) -> Token:
        """A new token for the user."""
        form = {"grant_type": "password", "username": self.username}
        form["password"] = self.password.get()
        return await self.flow.post_grant(form)

    async def aclose(self) -> None:
        """Close the flow's connections."""
        await self.flow.aclose()


class KubernetesSource:
    """Tokens for the pod's service account, exchanged with ``grant_type=kubernetes``."""

    def __init__(
        self, flow: OidcFlow, token_file: str, environ: Mapping[str, str] | None = None
    ) -> None:
        """Exchange the token of ``K8S_SERVICEACCOUNT_TOKEN`` in *environ*, else of *token_file*."""
        self.flow = flow
        self.method = flow.method
        self.token_file = token_file
        self._environ = os.environ if environ is None else environ

    def service_account_token(self) -> str:
        """The pod's token now: from the environment, else the file (re-read each time)."""
        from_env = self._environ.get(K8S_TOKEN_ENV, "").strip()
        if from_env:
            return from_env
        try:
            with open(self.token_file) as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise ArmadaAuthError(
                self.method,
                f"cannot read the service-account token {self.token_file} "
                f"(armada_k8s_token_file): {exc.strerror}",
            ) from None
        if not token:
            raise ArmadaAuthError(
                self.method, f"the service-account token {self.token_file} is empty"
            )
        return token

    async def fetch(self) -> Token:
        """A new token for the service account."""
        form = {
            "grant_type": "kubernetes",
            "client_id": self.flow.client_id,
            "client_assertion": self.service_account_token(),
        }
        return await self.flow.post_grant(form)

    async def aclose(self) -> None:
        """Close the flow's connections."""
        await self.flow.aclose()
