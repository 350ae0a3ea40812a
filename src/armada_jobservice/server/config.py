"""The service's settings: one frozen, typed object, and the rules that fill it.

Settings come, in rising priority, from the defaults below, a YAML file, the
environment (``ARMADA_JOBSERVICE_<KEY>``) and command-line flags. Only the CLI
reads argv and the environment; everything else receives a ``Settings``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from armada_jobservice._wire import DEFAULT_PORT
from armada_jobservice.server.config_values import coerce_as
from armada_jobservice.server.errors import ConfigError

log = logging.getLogger(__name__)

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
    max_concurrent_calls: int = field(
        default=4096,
        metadata=_help(
            "Most gRPC calls in progress at once, open WatchJobs streams included; "
            "a call beyond it is answered RESOURCE_EXHAUSTED at once instead of "
            "queueing (load shedding)."
        ),
    )
    max_queued_calls: int = field(
        default=2_000,
        metadata=_help(
            "Most calls waiting in gRPC for the service to take them (the event loop "
            "is busy); beyond it gRPC refuses a call at once with CANCELLED. Bounds "
            "the wait of a queued poll and the memory a flood of polls takes."
        ),
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
    # Answers from Armada's query API for jobs whose events are gone: docs/operations.md.
    backfill_queries_per_s: float = field(
        default=2.0,
        metadata=_help(
            "Most query-API calls a second (GetJobDetails, GetJobErrors) asking Armada about "
            "jobs still unknown once their job set's stream caught up; 0 turns this off."
        ),
    )
    backfill_batch_size: int = field(
        default=100, metadata=_help("Most job ids asked about in one query-API call.")
    )
    backfill_max_pending: int = field(
        default=10_000,
        metadata=_help(
            "Most unknown jobs waiting to be asked about; polls of more answer "
            "JOB_ID_NOT_FOUND and are queued by a later poll."
        ),
    )
    backfill_quiet_s: float = field(
        default=2.0,
        metadata=_help("A job set's stream counts as caught up once open this long with no event."),
    )
    backfill_not_found_s: float = field(
        default=60.0,
        metadata=_help(
            "How long a job Armada does not know (or that a failed query asked about) is "
            "not asked about again."
        ),
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
    armada_oidc_flow: str | None = field(
        default=None,
        metadata=_help(
            "Reach Armada with an OpenID Connect token of this flow: client_credentials, "
            "password or kubernetes (docs/security.md)."
        ),
    )
    armada_oidc_provider_url: str | None = field(
        default=None,
        metadata=_help("The OpenID provider's URL (its discovery document is below it)."),
    )
    armada_oidc_client_id: str | None = field(
        default=None, metadata=_help("OpenID client id of the job service.")
    )
    armada_oidc_client_secret: str | None = field(
        default=None, metadata=_help("OpenID client secret (client_credentials flow).")
    )
    armada_oidc_client_secret_file: str | None = field(
        default=None,
        metadata=_help("File holding the OpenID client secret; re-read when it changes."),
    )
    armada_oidc_scopes: tuple[str, ...] = field(
        default=(),
        metadata=_help(
            "OpenID scopes to ask for: a YAML list, or JSON / comma-separated in the "
            "environment and flags."
        ),
    )
    armada_oidc_username: str | None = field(
        default=None, metadata=_help("User name of the OpenID password flow.")
    )
    armada_oidc_password: str | None = field(
        default=None, metadata=_help("Password of the OpenID password flow.")
    )
    armada_oidc_password_file: str | None = field(
        default=None,
        metadata=_help("File holding the password of the OpenID password flow; re-read."),
    )
    armada_k8s_token_file: str = field(
        default="/var/run/secrets/kubernetes.io/serviceaccount/token",
        metadata=_help(
            "Service-account token the OpenID kubernetes flow exchanges, read at each "
            "exchange (env K8S_SERVICEACCOUNT_TOKEN, when set, wins)."
        ),
    )
    armada_exec_cmd: str | None = field(
        default=None,
        metadata=_help("Command whose standard output is Armada's bearer token (exec auth)."),
    )
    armada_exec_args: tuple[str, ...] = field(
        default=(), metadata=_help("Arguments of armada_exec_cmd: a YAML list or JSON.")
    )
    armada_exec_env: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}),
        metadata=_help(
            "Variables added to armada_exec_cmd's environment: a YAML mapping or JSON object."
        ),
    )
    armada_exec_token_ttl_s: float = field(
        default=300.0,
        metadata=_help(
            "How long an exec token is used when it is not a JWT with an exp claim "
            "(it is also run again when Armada answers UNAUTHENTICATED)."
        ),
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
    # Who may ask about what, and how fast: docs/security.md.
    grpc_tls_client_ca_file: str | None = field(
        default=None, metadata=_help("PEM CA of callers' certificates: mutual TLS; re-read.")
    )
    client_cert_scopes_file: str | None = field(
        default=None, metadata=_help("IDENTITY [PATTERN,...] lines for client certificates.")
    )
    access_check: str = field(
        default="scopes", metadata=_help("scopes, or armada: Armada decides too, per caller.")
    )
    access_cache_s: float = field(
        default=300.0, metadata=_help("How long an Armada verdict on (caller, queue) is kept.")
    )
    max_subscriptions_per_identity: int | None = field(
        default=None, metadata=_help("Most open subscriptions one caller opened; unset: no cap.")
    )
    new_subscriptions_per_identity_per_minute: float | None = field(
        default=None, metadata=_help("Most new subscriptions per caller and minute; unset: any.")
    )
    new_subscriptions_per_identity_burst: int | None = field(
        default=None, metadata=_help("New subscriptions at once (default: the per-minute rate).")
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
        "backfill_quiet_s",
        "backfill_not_found_s",
    ):
        if getattr(settings, name) is not None and getattr(settings, name) <= 0:
            raise ConfigError(name, f"must be greater than 0, got {getattr(settings, name)}")
    if settings.connection_error_grace_s < 0:
        raise ConfigError("connection_error_grace_s", "must not be negative")
    if settings.backfill_queries_per_s < 0:
        raise ConfigError("backfill_queries_per_s", "must not be negative (0 turns it off)")
    for name in ("backfill_batch_size", "backfill_max_pending"):
        if getattr(settings, name) < 1:
            raise ConfigError(name, "must be at least 1")
    for name in ("max_subscriptions", "max_concurrent_calls", "max_queued_calls"):
        if getattr(settings, name) < 1:
            raise ConfigError(name, "must be at least 1")
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
    from armada_jobservice.server.armada_auth.rules import validate_armada_auth

    validate_armada_auth(settings)
    if (settings.grpc_tls_cert_file is None) != (settings.grpc_tls_key_file is None):
        raise ConfigError("grpc_tls_cert_file", "serving TLS needs both a certificate and a key")
    from armada_jobservice.server.auth import validate_access

    validate_access(settings)
    if not settings.database.startswith(("sqlite://", "postgresql://", "postgres://")):
        raise ConfigError(
            "database", f"must be a sqlite:/// or postgresql:// URL, got {settings.database!r}"
        )


def is_secret(name: str) -> bool:
    """Whether a setting holds a secret, which no message may show."""
    # The exec command's arguments and environment may carry keys of its own.
    secret_names = ("armada_token", "armada_exec_args", "armada_exec_env")
    return name in secret_names or name.endswith(("_password", "_secret"))


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
    f = next(f for f in dataclasses.fields(Settings) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def coerce(name: str, value: Any) -> Any:
    """Turn a raw value (YAML, an environment string, a flag) into the setting's type.

    Lists and mappings come as YAML lists and mappings, or as JSON text in the
    environment and flags (a list also as comma-separated text).
    """
    return coerce_as(field_type(name), name, value, secret=is_secret(name))


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


def from_yaml(path: str | Path, notes: list[str] | None = None) -> dict[str, Any]:
    """Read settings from a YAML file of ``key: value`` pairs, or the Go job service's YAML.

    A Go job service file (``goconfig``) is translated; its warning (keys that
    cannot be honoured) is appended to *notes*, or logged when *notes* is None.
    """
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
    from armada_jobservice.server.goconfig import is_go_config, translate

    if is_go_config(data):
        data, warning = translate(data, str(path))
        if warning is not None:
            if notes is None:
                log.warning("%s", warning)
            else:
                notes.append(warning)
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
    notes: list[str] | None = None,
) -> Settings:
    """Merge defaults, a YAML file, the environment and explicit overrides, in that order.

    Warnings about the file (see ``from_yaml``) go to *notes*, or to the log.
    """
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(from_yaml(config_file, notes))
    merged.update(from_env(environ))
    if overrides:
        merged.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**merged)
