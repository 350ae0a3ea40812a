"""Settings: defaults, then YAML, then the environment, then flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from armada_jobservice.server import config
from armada_jobservice.server.errors import ConfigError


def test_defaults() -> None:
    """The documented defaults."""
    s = config.load(environ={})
    assert (s.grpc_port, s.armada_url, s.database) == (
        60003,
        "localhost:50051",
        "sqlite:///jobservice.db",
    )
    assert (s.subscription_expiry_s, config.flush_interval_of(s), s.max_subscriptions) == (
        300.0,
        1.0,
        10_000,
    )
    assert s.metrics_port is None
    assert (s.lease_ttl_s, s.replica_name) == (10.0, None)
    assert (s.max_concurrent_calls, s.max_queued_calls) == (4096, 2000)


@pytest.mark.parametrize(
    ("database", "given", "expected"),
    [
        ("sqlite:///js.db", None, 1.0),
        ("postgresql://db/js", None, 0.5),
        ("postgres://db/js", None, 0.5),
        ("postgresql://db/js", 2.0, 2.0),
        ("sqlite:///js.db", 0.25, 0.25),
    ],
)
def test_flush_interval_defaults_by_database(
    database: str, given: float | None, expected: float
) -> None:
    """Unset, a fleet on PostgreSQL flushes twice as often (followers see flushed events)."""
    s = config.load(environ={}, overrides={"database": database, "flush_interval_s": given})
    assert config.flush_interval_of(s) == expected


def test_precedence(tmp_path: Path) -> None:
    """Each source overrides the ones before it, key by key."""
    path = tmp_path / "s.yaml"
    path.write_text("grpc_port: 1111\nflush-interval-s: 2.5\nmax_subscriptions: 7\n")
    env = {"ARMADA_JOBSERVICE_GRPC_PORT": "2222", "ARMADA_JOBSERVICE_ARMADA_TLS": "true"}
    s = config.load(path, environ=env, overrides={"max_subscriptions": 9})
    assert s.grpc_port == 2222
    assert s.flush_interval_s == 2.5
    assert s.max_subscriptions == 9
    assert s.armada_tls is True


@pytest.mark.parametrize(
    ("raw", "setting"),
    [
        ({"grpc_port": "x"}, "grpc_port"),
        ({"grpc_port": 70000}, "grpc_port"),
        ({"unknown": 1}, "unknown"),
        ({"armada_tls": "maybe"}, "armada_tls"),
        ({"max_subscriptions": 1.5}, "max_subscriptions"),
        ({"job_set_retention_s": 10, "subscription_expiry_s": 20}, "job_set_retention_s"),
        ({"armada_username": "u"}, "armada_username"),
        ({"armada_token": "t", "armada_token_file": "/f"}, "armada_token"),
        ({"armada_url": "nohostport"}, "armada_url"),
    ],
)
def test_bad_settings_name_the_setting(raw: dict[str, object], setting: str) -> None:
    """A bad value raises ConfigError naming the setting."""
    with pytest.raises(ConfigError) as info:
        config.Settings(**config.from_mapping(raw, "test"))
    assert info.value.setting == setting


def test_yaml_must_be_a_mapping(tmp_path: Path) -> None:
    """A YAML file that is not a mapping is refused."""
    path = tmp_path / "s.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        config.load(path, environ={})


def test_readme_documents_every_setting() -> None:
    """The README's configuration table names every setting."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name in config.field_names():
        assert f"`{name}`" in table, name


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://js:s3cr%40t@db:5432/js?sslmode=require",
            "postgresql://js:***@db:5432/js?sslmode=require",
        ),
        ("postgresql://js@db/js", "postgresql://js@db/js"),
        ("postgresql://db/js", "postgresql://db/js"),
        ("sqlite:///jobservice.db", "sqlite:///jobservice.db"),
    ],
)
def test_a_database_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert config.redact_url(url) == shown


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"access_check": "ldap"}, "access_check"),
        ({"access_cache_s": 0}, "access_cache_s"),
        ({"max_subscriptions_per_identity": 0}, "max_subscriptions_per_identity"),
        (
            {"new_subscriptions_per_identity_per_minute": -1},
            "new_subscriptions_per_identity_per_minute",
        ),
        ({"new_subscriptions_per_identity_burst": 5}, "new_subscriptions_per_identity_burst"),
        (
            {
                "new_subscriptions_per_identity_per_minute": 6,
                "new_subscriptions_per_identity_burst": 0,
            },
            "new_subscriptions_per_identity_burst",
        ),
        ({"grpc_tls_client_ca_file": "ca.pem"}, "grpc_tls_client_ca_file"),
        ({"client_cert_scopes_file": "scopes"}, "client_cert_scopes_file"),
    ],
)
def test_access_settings_that_cannot_work_name_themselves(
    overrides: dict[str, object], setting: str
) -> None:
    """Each access or per-identity setting that cannot work is refused by its name."""
    with pytest.raises(ConfigError) as caught:
        config.Settings(**overrides)  # type: ignore[arg-type]
    assert caught.value.setting == setting
