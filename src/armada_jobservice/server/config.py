"""The service's settings: one frozen, typed object, and the rules that fill it.

Settings come, in rising priority, from the defaults below, a YAML file, the
environment (``ARMADA_JOBSERVICE_<KEY>``) and command-line flags. Only the CLI
reads argv and the environment; everything else receives a ``Settings``.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from armada_jobservice._wire import DEFAULT_PORT
from armada_jobservice.server.errors import ConfigError

ENV_PREFIX = "ARMADA_JOBSERVICE_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the job service can be configured with; units are in the names."""

    grpc_host: str = field(default="0.0.0.0", metadata=_help("Address the gRPC API listens on."))
    grpc_port: int = field(
        default=DEFAULT_PORT, metadata=_help("Port of the gRPC API (0 picks one).")
    )
    armada_url: str = field(
        default="localhost:50051", metadata=_help("Armada's gRPC API, as host:port.")
    )
    database: str = field(
        default="sqlite:///jobservice.db",
        metadata=_help(
            "Database URL: sqlite:///relative.db, sqlite:////absolute.db "
            "or postgresql://user@host/db."
        ),
    )
    metrics_port: int | None = field(
        default=None,
        metadata=_help("Port of the Prometheus /metrics endpoint; unset turns it off."),
    )
    metrics_host: str = field(
        default="0.0.0.0", metadata=_help("Address the /metrics endpoint listens on.")
    )
    subscription_expiry_s: float = field(
        default=300.0,
        metadata=_help("A job set's event stream is closed after this long without a poll."),
    )
    job_set_retention_s: float = field(
        default=86400.0,
        metadata=_help(
            "A job set's stored data is deleted after this long with neither a poll nor an event."
        ),
    )
    flush_interval_s: float | None = field(
        default=None,
        metadata=_help(
            "How often the cache is written to the database while events keep "
            "arriving; changes are written within about 0.1 s once the streams are quiet. "
            "Unset: 1 s with SQLite, 0.5 s with PostgreSQL (the other replicas of a "
            "fleet see an event once it is written)."
        ),
    )
    max_subscriptions: int = field(
        default=10_000, metadata=_help("Most event streams open at once.")
    )
    connection_error_grace_s: float = field(
        default=30.0,
        metadata=_help(
            "How long a failing event stream may stay down before polls of its "
            "unfinished jobs answer CONNECTION_ERR."
        ),
    )
    replica_name: str | None = field(
        default=None,
        metadata=_help(
            "This replica's name in a fleet sharing one PostgreSQL database "
            "(default: host name and process id)."
        ),
    )
    lease_ttl_s: float = field(
        default=10.0,
        metadata=_help(
            "In a fleet, how long a replica's claim on a job set lasts unless renewed; a "
            "killed replica's job sets move to the others after about this long."
        ),
    )
    reconnect_max_backoff_s: float = field(
        default=30.0, metadata=_help("Cap of the reconnect backoff of a failing event stream.")
    )
    log_level: str = field(default="INFO", metadata=_help("One of " + ", ".join(LOG_LEVELS) + "."))
    armada_tls: bool = field(
        default=False, metadata=_help("Connect to Armada with TLS instead of plain text.")
    )
    armada_ca_file: str | None = field(
        default=None,
        metadata=_help("PEM file of the CA that signs Armada's certificate (implies TLS)."),
    )
    armada_username: str | None = field(
        default=None, metadata=_help("Basic-auth user name for Armada.")
    )
    armada_password: str | None = field(
        default=None, metadata=_help("Basic-auth password for Armada.")
    )
    armada_token: str | None = field(default=None, metadata=_help("Bearer token for Armada."))
    armada_token_file: str | None = field(
        default=None,
        metadata=_help("File holding a bearer token for Armada; re-read when it changes."),
    )

    grpc_tls_cert_file: str | None = field(
        default=None,
        metadata=_help("PEM certificate chain to serve the gRPC API over TLS (with the key)."),
    )
    grpc_tls_key_file: str | None = field(
        default=None, metadata=_help("PEM private key of --grpc-tls-cert-file.")
    )
    client_tokens_file: str | None = field(
        default=None,
        metadata=_help(
            "File of bearer tokens that GetJobStatus callers must present, one per line: "
            "TOKEN [PATTERN[,PATTERN...]] [name=NAME] (no patterns: every queue; "
            "docs/security.md); re-read when it changes. Unset: no token authentication."
        ),
    )
    # Who may ask about what (docs/security.md): client certificates, scopes,
    # Armada-decided access and per-identity limits.
    grpc_tls_client_ca_file: str | None = field(
        default=None,
        metadata=_help(
            "PEM file of the CA that signs callers' client certificates: turns on mutual "
            "TLS (every connection must present a certificate it signed). Needs "
            "grpc_tls_cert_file."
        ),
    )
    client_cert_scopes_file: str | None = field(
        default=None,
        metadata=_help(
            "File mapping client certificate identities (subject CN, DNS or URI SAN) to "
            "queues: IDENTITY [PATTERN[,PATTERN...]] per line; re-read when it changes. "
            "Unset: any certificate the CA signed may ask about every queue."
        ),
    )
    access_check: str = field(
        default="scopes",
        metadata=_help(
            "scopes: the files above decide. armada: also ask Armada, with the caller's "
            "own bearer token, whether it may watch the queue (needs a token per caller)."
        ),
    )
    access_cache_s: float = field(
        default=300.0,
        metadata=_help(
            "With access_check armada, how long Armada's verdict on a (caller, queue) is "
            "kept, allowed or denied."
        ),
    )
    max_subscriptions_per_identity: int | None = field(
        default=None,
        metadata=_help(
            "Most subscriptions one caller identity may have opened and still open; "
            "unset: no per-caller count (max_subscriptions still applies)."
        ),
    )
    new_subscriptions_per_identity_per_minute: float | None = field(
        default=None,
        metadata=_help(
            "Most new subscriptions one caller identity may open per minute, on average; "
            "unset: no rate limit."
        ),
    )
    new_subscriptions_per_identity_burst: int | None = field(
        default=None,
        metadata=_help(
            "How many new subscriptions a caller may open at once before the per-minute "
            "rate applies (unset: the per-minute rate, at least 1)."
        ),
    )

    def __post_init__(self) -> None:
        validate(self)


def redact_url(url: str) -> str:
    """*url* with the password of its user part (``user:password@``) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    user, at, host = authority.rpartition("@")
    if not at or ":" not in user:
        return url
    return f"{scheme}://{user.split(':', 1)[0]}:***@{host}{slash}{path}"


def flush_interval_of(settings: Settings) -> float:
    """``flush_interval_s``, or its default for the database when unset."""
    if settings.flush_interval_s is not None:
        return settings.flush_interval_s
    return 0.5 if settings.database.startswith(("postgresql://", "postgres://")) else 1.0


def validate(settings: Settings) -> None:
    """Raise ``ConfigError`` naming the first setting that cannot work."""
    for name in ("grpc_port", "metrics_port"):
        value = getattr(settings, name)
        if value is not None and not 0 <= value <= 65535:
            raise ConfigError(name, f"must be a port number 0-65535, got {value}")
    for name in (
        "subscription_expiry_s",
        "job_set_retention_s",
        "flush_interval_s",
        "reconnect_max_backoff_s",
        "lease_ttl_s",
        "access_cache_s",
        "new_subscriptions_per_identity_per_minute",
    ):
        if getattr(settings, name) is not None and getattr(settings, name) <= 0:
            raise ConfigError(name, f"must be greater than 0, got {getattr(settings, name)}")
    if settings.connection_error_grace_s < 0:
        raise ConfigError("connection_error_grace_s", "must not be negative")
    if settings.max_subscriptions < 1:
        raise ConfigError("max_subscriptions", "must be at least 1")
    if settings.job_set_retention_s <= settings.subscription_expiry_s:
        raise ConfigError(
            "job_set_retention_s",
            f"must be longer than subscription_expiry_s ({settings.subscription_expiry_s} s), "
            "or a subscribed job set could be deleted",
        )
    if settings.log_level.upper() not in LOG_LEVELS:
        raise ConfigError("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    if ":" not in settings.armada_url:
        raise ConfigError("armada_url", f"must be host:port, got {settings.armada_url!r}")
    if (settings.armada_username is None) != (settings.armada_password is None):
        raise ConfigError("armada_username", "basic auth needs both a user name and a password")
    auth_kinds = [
        settings.armada_username is not None,
        settings.armada_token is not None,
        settings.armada_token_file is not None,
    ]
    if sum(auth_kinds) > 1:
        raise ConfigError("armada_token", "choose one of basic auth, a token or a token file")
    if (settings.grpc_tls_cert_file is None) != (settings.grpc_tls_key_file is None):
        raise ConfigError("grpc_tls_cert_file", "serving TLS needs both a certificate and a key")
    _validate_access(settings)
    if not settings.database.startswith(("sqlite://", "postgresql://", "postgres://")):
        raise ConfigError(
            "database", f"must be a sqlite:/// or postgresql:// URL, got {settings.database!r}"
        )


ACCESS_CHECKS = ("scopes", "armada")


def _validate_access(settings: Settings) -> None:
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


def field_names() -> list[str]:
    """The names of all settings, in declaration order."""
    return [f.name for f in dataclasses.fields(Settings)]


def field_help(name: str) -> str:
    """The help text of one setting."""
    return str(next(f for f in dataclasses.fields(Settings) if f.name == name).metadata["help"])


def field_type(name: str) -> type:
    """The base type of one setting (``int`` for ``int | None``)."""
    hints = typing.get_type_hints(Settings)
    hint = hints[name]
    if isinstance(hint, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return typing.cast(type, args[0])
    return typing.cast(type, hint)


def default_of(name: str) -> Any:
    """The default value of one setting."""
    return next(f for f in dataclasses.fields(Settings) if f.name == name).default


def coerce(name: str, value: Any) -> Any:
    """Turn a raw value (a YAML scalar or an environment string) into the setting's type."""
    kind = field_type(name)
    if value is None:
        return None
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if not isinstance(value, str | int | float):
            raise ValueError(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(name, f"expected {kind.__name__}, got {value!r}") from exc


def _normalise_key(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def from_mapping(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check and convert a mapping of setting names to raw values."""
    known = set(field_names())
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = _normalise_key(str(key))
        if name not in known:
            raise ConfigError(str(key), f"unknown setting in {source}")
        out[name] = coerce(name, value)
    return out


def from_yaml(path: str | Path) -> dict[str, Any]:
    """Read settings from a YAML file of ``key: value`` pairs."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("config", f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping of settings")
    return from_mapping(data, str(path))


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read settings from ``ARMADA_JOBSERVICE_<KEY>`` variables."""
    env = os.environ if environ is None else environ
    raw = {k[len(ENV_PREFIX) :]: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    return from_mapping(raw, "the environment (" + ENV_PREFIX + "*)")


def load(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge defaults, a YAML file, the environment and explicit overrides, in that order."""
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(from_yaml(config_file))
    merged.update(from_env(environ))
    if overrides:
        merged.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**merged)
