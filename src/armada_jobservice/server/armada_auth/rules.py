"""Which Armada credentials a ``Settings`` asks for, and whether they can work.

Exactly one method may be configured: basic auth, a token, a token file, an
OpenID Connect flow or an exec command. A method with a missing piece is
refused at start-up with a ``ConfigError`` naming the setting that is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from armada_jobservice.server.errors import ConfigError

if TYPE_CHECKING:
    from armada_jobservice.server.config import Settings

#: The OpenID Connect flows, as ``armada_oidc_flow`` names them.
OIDC_FLOWS = ("client_credentials", "password", "kubernetes")


def method_of(settings: Settings) -> str | None:
    """The name of the configured method (``oidc-password``, ``exec``...), or None."""
    if settings.armada_username is not None:
        return "basic"
    if settings.armada_token is not None:
        return "token"
    if settings.armada_token_file is not None:
        return "token-file"
    if settings.armada_oidc_flow is not None:
        return "oidc-" + settings.armada_oidc_flow.replace("_", "-")
    if settings.armada_exec_cmd is not None:
        return "exec"
    return None


def validate_armada_auth(settings: Settings) -> None:
    """Raise ``ConfigError`` naming the first Armada credential setting that cannot work."""
    if (settings.armada_username is None) != (settings.armada_password is None):
        raise ConfigError("armada_username", "basic auth needs both a user name and a password")
    chosen = [
        name
        for name, on in (
            ("armada_username", settings.armada_username is not None),
            ("armada_token", settings.armada_token is not None),
            ("armada_token_file", settings.armada_token_file is not None),
            ("armada_oidc_flow", settings.armada_oidc_flow is not None),
            ("armada_exec_cmd", settings.armada_exec_cmd is not None),
        )
        if on
    ]
    if len(chosen) > 1:
        first = "armada_token" if "armada_token" in chosen else chosen[1]
        raise ConfigError(
            first,
            "choose one way to reach Armada: basic auth, a token, a token file, "
            f"an OpenID flow or an exec command (set: {', '.join(chosen)})",
        )
    if settings.armada_oidc_flow is not None:
        _validate_oidc(settings)
    else:
        _refuse_strays(settings)
    if settings.armada_exec_token_ttl_s <= 0:
        raise ConfigError("armada_exec_token_ttl_s", "must be greater than 0")
    if settings.armada_exec_cmd is None and (settings.armada_exec_args or settings.armada_exec_env):
        raise ConfigError("armada_exec_cmd", "armada_exec_args/env are set without a command")


def _refuse_strays(settings: Settings) -> None:
    # An OpenID setting without a flow is a mistake (a flow name forgotten),
    # not something to ignore silently.
    for name in (
        "armada_oidc_provider_url",
        "armada_oidc_client_id",
        "armada_oidc_client_secret",
        "armada_oidc_client_secret_file",
        "armada_oidc_username",
        "armada_oidc_password",
        "armada_oidc_password_file",
    ):
        if getattr(settings, name) is not None:
            raise ConfigError("armada_oidc_flow", f"{name} is set but no flow is chosen")


def _validate_oidc(settings: Settings) -> None:
    flow = settings.armada_oidc_flow
    if flow not in OIDC_FLOWS:
        raise ConfigError("armada_oidc_flow", f"must be one of {', '.join(OIDC_FLOWS)}")
    url = settings.armada_oidc_provider_url
    if url is None:
        raise ConfigError("armada_oidc_provider_url", f"the {flow} flow needs the provider's URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("armada_oidc_provider_url", f"must be an http(s) URL, got {url!r}")
    if settings.armada_oidc_client_id is None:
        raise ConfigError("armada_oidc_client_id", f"the {flow} flow needs a client id")
    secret = settings.armada_oidc_client_secret, settings.armada_oidc_client_secret_file
    password = settings.armada_oidc_password, settings.armada_oidc_password_file
    if all(v is not None for v in secret):
        raise ConfigError("armada_oidc_client_secret", "set the secret or its file, not both")
    if all(v is not None for v in password):
        raise ConfigError("armada_oidc_password", "set the password or its file, not both")
    if flow == "client_credentials" and all(v is None for v in secret):
        raise ConfigError(
            "armada_oidc_client_secret",
            "the client_credentials flow needs armada_oidc_client_secret or its _file",
        )
    if flow == "password":
        if settings.armada_oidc_username is None:
            raise ConfigError("armada_oidc_username", "the password flow needs a user name")
        if all(v is None for v in password):
            raise ConfigError(
                "armada_oidc_password",
                "the password flow needs armada_oidc_password or armada_oidc_password_file",
            )
    if flow != "password" and any(
        v is not None for v in (settings.armada_oidc_username, *password)
    ):
        raise ConfigError("armada_oidc_username", f"the {flow} flow takes no user name or password")
