"""The Go job service's YAML, read as settings of this service.

Armada's Go job service (removed from Armada in 2024) was configured with a
YAML file of camelCase keys (``grpcPort``, ``apiConnection``...), read by
viper, which ignores the case of keys. ``serve --config`` accepts that file as
it was shipped: ``is_go_config`` recognises it by its keys, and ``translate``
maps each key to one of our settings (the table is in docs/go-config.md).

Keys that have no counterpart here (``httpPort``: this service has no HTTP
gateway; pool sizes; interactive Armada logins) and keys neither service
knows are all named in one warning line, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from armada_jobservice.server.errors import ConfigError

#: Top-level keys (lower case) that only the Go job service's files have.
GO_KEYS = frozenset(
    {
        "grpcport",
        "httpport",
        "metricsport",
        "apiconnection",
        "purgejobsettime",
        "subscribejobsettime",
        "subscriptionexpirysecs",
        "subscriberpoolsize",
        "databasetype",
        "databasepath",
        "postgresconfig",
    }
)

#: Keys read but not honoured, and why (lower-case dotted paths).
NOT_HONOURED = {
    "httpport": "no HTTP gateway here; the gRPC API and grpc.health.v1 serve everything",
    "grpc": "inbound keepalive is fixed here",
    "grpcpool": "no pool of connections to Armada here: one shared channel",
    "subscriberpoolsize": "streams are asyncio tasks here; see max_subscriptions",
    "databaseconfig": "use postgresConfig.connection",
    "postgresconfig.poolmaxconns": "one connection per replica here",
    "postgresconfig.poolminconns": "one connection per replica here",
    "postgresconfig.poolmaxconnlifetime": "one connection per replica here",
    "postgresconfig.maxopenconns": "one connection per replica here",
    "postgresconfig.maxidleconns": "one connection per replica here",
    "postgresconfig.connmaxlifetime": "one connection per replica here",
    "apiconnection.grpckeepalivetime": "the keepalive to Armada is fixed at 5 minutes",
    "apiconnection.grpckeepalivetimeout": "the keepalive to Armada is fixed",
    "apiconnection.openidauth": "interactive (browser) login; use a non-interactive flow",
    "apiconnection.openiddeviceauth": "interactive (device code) login",
    "apiconnection.kerberosauth": "Kerberos is not supported",
    "apiconnection.kubernetesnativeauth": "executor-only; use openIdKubernetesAuth",
    "apiconnection.execauth.interactive": "the service has no terminal",
}

_OIDC_BLOCKS = {
    "openidclientcredentialsauth": "client_credentials",
    "openidpasswordauth": "password",
    "openidkubernetesauth": "kubernetes",
}


def is_go_config(data: Mapping[Any, Any]) -> bool:
    """Whether a YAML mapping is the Go job service's configuration."""
    return any(str(k).lower() in GO_KEYS for k in data)


class _Block(dict[str, Any]):
    """A block of the file keyed by lower-case names, remembering how the file spelled them."""

    def __init__(self, block: Any, path: str) -> None:
        super().__init__()
        self.spelled: dict[str, str] = {}
        if block is None:
            return
        if not isinstance(block, Mapping):
            raise ConfigError(path, "must be a mapping in the Go job service's configuration")
        for key, value in block.items():
            self[str(key).lower()] = value
            self.spelled[str(key).lower()] = str(key)

    def name(self, key: str) -> str:
        """*key* as the file spells it."""
        return self.spelled.get(key, key)


def _lower(block: Any, path: str) -> _Block:
    return _Block(block, path)


def _set(value: Any) -> bool:
    # Go's zero values (empty strings, empty lists) mean "not set".
    return value not in (None, "", [], {})


class _Translation:
    def __init__(self, source: str) -> None:
        self.source = source
        self.out: dict[str, Any] = {}
        self.ignored: list[str] = []
        self.unknown: list[str] = []

    def skip(self, path: str, value: Any) -> None:
        if not _set(value) or value is False:
            return
        if path.lower() in NOT_HONOURED:
            self.ignored.append(f"{path} ({NOT_HONOURED[path.lower()]})")
        else:
            self.unknown.append(path)

    def top(self, data: Mapping[Any, Any]) -> None:
        simple = {
            "grpcport": "grpc_port",
            "metricsport": "metrics_port",
            "purgejobsettime": "job_set_retention_s",
            "subscribejobsettime": "subscription_expiry_s",
            "subscriptionexpirysecs": "subscription_expiry_s",
        }
        keys = {str(k).lower(): str(k) for k in data}
        for low, name in sorted(keys.items()):
            value = data[name]
            if low in simple:
                # subscriptionExpirySecs (the later name) wins over subscribeJobSetTime.
                if low == "subscribejobsettime" and "subscriptionexpirysecs" in keys:
                    continue
                if _set(value) and value != 0:
                    self.out[simple[low]] = value
            elif low in ("databasetype", "databasepath", "postgresconfig"):
                continue
            elif low == "apiconnection":
                self.api(_lower(value, name), name)
            else:
                self.skip(name, value)
        self.database({k: data[v] for k, v in keys.items()})

    def database(self, data: dict[str, Any]) -> None:
        kind = str(data.get("databasetype") or "sqlite").lower()
        pg = _lower(data.get("postgresconfig"), "postgresConfig")
        for key, value in pg.items():
            if key != "connection":
                self.skip(f"postgresConfig.{pg.name(key)}", value)
        if kind == "sqlite":
            if _set(data.get("databasepath")):
                self.out["database"] = "sqlite:///" + str(data["databasepath"])
        elif kind == "postgres":
            self.out["database"] = postgres_url(_lower(pg.get("connection"), "connection"))
        else:
            raise ConfigError("databaseType", f"must be sqlite or postgres, got {kind!r}")

    def api(self, api: _Block, name: str) -> None:
        for key, value in api.items():
            path = f"{name}.{api.name(key)}"
            if key == "armadaurl":
                if _set(value):
                    self.out["armada_url"] = str(value)
            elif key == "forcenotls":
                pass
            elif key == "basicauth":
                basic = _lower(value, path)
                if _set(basic.get("username")) or _set(basic.get("password")):
                    self.out["armada_username"] = basic.get("username") or ""
                    self.out["armada_password"] = basic.get("password") or ""
            elif key in _OIDC_BLOCKS:
                self.oidc(_OIDC_BLOCKS[key], _lower(value, path), path)
            elif key == "execauth":
                self.exec(_lower(value, path), path)
            else:
                self.skip(path, value)
        # Go dials with TLS unless forceNoTls is true.
        self.out["armada_tls"] = not bool(api.get("forcenotls", False))

    def oidc(self, flow: str, block: _Block, path: str) -> None:
        if not any(_set(v) for v in block.values()):
            return
        fields = {
            "providerurl": "armada_oidc_provider_url",
            "clientid": "armada_oidc_client_id",
            "clientsecret": "armada_oidc_client_secret",
            "scopes": "armada_oidc_scopes",
            "username": "armada_oidc_username",
            "password": "armada_oidc_password",
        }
        if "armada_oidc_flow" in self.out:
            raise ConfigError(path, "only one authentication block may be filled in")
        self.out["armada_oidc_flow"] = flow
        for key, value in block.items():
            if key in fields and _set(value):
                self.out[fields[key]] = value
            elif key not in fields:
                self.skip(f"{path}.{block.name(key)}", value)

    def exec(self, block: _Block, path: str) -> None:
        if _set(block.get("cmd")):
            self.out["armada_exec_cmd"] = block["cmd"]
        if _set(block.get("args")):
            self.out["armada_exec_args"] = block["args"]
        env = block.get("env") or []
        if not isinstance(env, list):
            raise ConfigError(f"{path}.env", "must be a list of {name, value}")
        pairs = {}
        for item in env:
            entry = _lower(item, f"{path}.env")
            pairs[str(entry.get("name", ""))] = str(entry.get("value", ""))
        if pairs:
            self.out["armada_exec_env"] = pairs
        for key, value in block.items():
            if key not in ("cmd", "args", "env"):
                self.skip(f"{path}.{block.name(key)}", value)


def postgres_url(conn: Mapping[str, Any]) -> str:
    """A ``postgresql://`` URL from the Go config's ``postgresConfig.connection`` map."""
    rest = {
        k: str(v)
        for k, v in conn.items()
        if k not in ("host", "port", "user", "password", "dbname")
    }
    user = quote(str(conn.get("user") or ""), safe="")
    password = quote(str(conn.get("password") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = str(conn.get("host") or "localhost")
    port = f":{conn['port']}" if _set(conn.get("port")) else ""
    dbname = quote(str(conn.get("dbname") or ""), safe="")
    query = "?" + urlencode(sorted(rest.items())) if rest else ""
    return f"postgresql://{auth}{host}{port}/{dbname}{query}"


def translate(data: Mapping[Any, Any], source: str) -> tuple[dict[str, Any], str | None]:
    """Our settings for a Go job service file, and one warning line (None: nothing ignored)."""
    t = _Translation(source)
    t.top(data)
    parts = []
    if t.ignored:
        parts.append("keys this service cannot honour: " + ", ".join(t.ignored))
    if t.unknown:
        parts.append("unknown keys: " + ", ".join(t.unknown))
    warning = None
    if parts:
        warning = f"{source} (Go job service configuration): ignoring " + "; ".join(parts)
    return t.out, warning
