"""The Armada credential settings: validation, lists and mappings, the Go job service's YAML."""

from __future__ import annotations

import base64
import dataclasses
import signal
from pathlib import Path
from typing import Any

import pytest

from armada_jobservice import JobState
from armada_jobservice.server import config
from armada_jobservice.server.errors import ConfigError

from ..fake_armada import FakeArmada
from ..helpers import Connect, eventually
from .test_process import Spawn, spawn  # noqa: F401  (the fixture)

GO = Path(__file__).parent / "go_config"
OIDC = {
    "armada_oidc_provider_url": "https://login.example.com",
    "armada_oidc_client_id": "js",
}


@pytest.mark.parametrize(
    ("raw", "setting"),
    [
        ({"armada_oidc_flow": "device"}, "armada_oidc_flow"),
        ({"armada_oidc_flow": "client_credentials"}, "armada_oidc_provider_url"),
        (
            {"armada_oidc_flow": "client_credentials", "armada_oidc_provider_url": "login:443"},
            "armada_oidc_provider_url",
        ),
        (
            {"armada_oidc_flow": "password", "armada_oidc_provider_url": "https://x"},
            "armada_oidc_client_id",
        ),
        ({"armada_oidc_flow": "client_credentials", **OIDC}, "armada_oidc_client_secret"),
        (
            {
                "armada_oidc_flow": "client_credentials",
                **OIDC,
                "armada_oidc_client_secret": "a",
                "armada_oidc_client_secret_file": "/f",
            },
            "armada_oidc_client_secret",
        ),
        ({"armada_oidc_flow": "password", **OIDC}, "armada_oidc_username"),
        (
            {"armada_oidc_flow": "password", **OIDC, "armada_oidc_username": "u"},
            "armada_oidc_password",
        ),
        (
            {"armada_oidc_flow": "kubernetes", **OIDC, "armada_oidc_password": "p"},
            "armada_oidc_username",
        ),
        ({"armada_oidc_client_id": "js"}, "armada_oidc_flow"),
        ({"armada_token": "t", "armada_exec_cmd": "/bin/tok"}, "armada_token"),
        ({"armada_oidc_flow": "kubernetes", **OIDC, "armada_exec_cmd": "x"}, "armada_exec_cmd"),
        ({"armada_exec_args": ["x"]}, "armada_exec_cmd"),
        ({"armada_exec_cmd": "x", "armada_exec_token_ttl_s": 0}, "armada_exec_token_ttl_s"),
        ({"armada_oidc_scopes": "[1"}, "armada_oidc_scopes"),
        ({"armada_oidc_scopes": [["nested"]]}, "armada_oidc_scopes"),
        ({"armada_exec_env": ["not", "a", "mapping"]}, "armada_exec_env"),
        ({"armada_exec_env": {"A": {"nested": 1}}}, "armada_exec_env"),
    ],
)
def test_bad_credential_settings_name_the_setting(raw: dict[str, Any], setting: str) -> None:
    """A missing or conflicting piece raises ConfigError naming the setting to fix."""
    with pytest.raises(ConfigError) as info:
        config.Settings(**config.from_mapping(raw, "test"))
    assert info.value.setting == setting


def test_a_bad_secret_value_is_not_repeated() -> None:
    """An exec environment (it may hold secrets) that cannot be parsed is not shown."""
    with pytest.raises(ConfigError) as info:
        config.from_env({"ARMADA_JOBSERVICE_ARMADA_EXEC_ENV": '{"KEY": "hunter2"'})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("env", "scopes", "args", "exec_env"),
    [
        ({"SCOPES": '["a", "b c"]'}, ("a", "b c"), (), {}),
        ({"SCOPES": "a, b,,c"}, ("a", "b", "c"), (), {}),
        ({"EXEC_ARGS": '["--aud", "armada"]'}, (), ("--aud", "armada"), {}),
        ({"EXEC_ENV": '{"PROFILE": "prod", "N": 3}'}, (), (), {"PROFILE": "prod", "N": "3"}),
    ],
)
def test_lists_and_mappings_from_the_environment(
    env: dict[str, str], scopes: tuple[str, ...], args: tuple[str, ...], exec_env: dict[str, str]
) -> None:
    """Lists and mappings arrive as JSON (a list also comma-separated) in the environment."""
    names = {"SCOPES": "ARMADA_OIDC_SCOPES", "EXEC_ARGS": "ARMADA_EXEC_ARGS"}
    names["EXEC_ENV"] = "ARMADA_EXEC_ENV"
    environ = {"ARMADA_JOBSERVICE_" + names[k]: v for k, v in env.items()}
    if args or exec_env:
        environ["ARMADA_JOBSERVICE_ARMADA_EXEC_CMD"] = "/bin/tok"
    s = config.load(environ=environ)
    assert (s.armada_oidc_scopes, s.armada_exec_args, dict(s.armada_exec_env)) == (
        scopes,
        args,
        exec_env,
    )


def test_lists_and_mappings_from_yaml(tmp_path: Path) -> None:
    """In YAML they are plain YAML lists and mappings."""
    path = tmp_path / "s.yaml"
    path.write_text(
        "armada_exec_cmd: /bin/tok\narmada_exec_args: [--aud, armada]\n"
        "armada_exec_env: {PROFILE: prod}\n"
    )
    s = config.load(path, environ={})
    assert (s.armada_exec_args, dict(s.armada_exec_env)) == (
        ("--aud", "armada"),
        {"PROFILE": "prod"},
    )


def load_go(name: str) -> tuple[config.Settings, list[str]]:
    """Settings of one sample Go job service file, and the warnings it produced."""
    notes: list[str] = []
    return config.load(GO / name, environ={}, notes=notes), notes


def test_go_config_with_postgres() -> None:
    """The shipped layout: ports, times in seconds, a PostgreSQL URL, plain text to Armada."""
    s, notes = load_go("postgres.yaml")
    assert (s.grpc_port, s.metrics_port) == (60003, 9093)
    assert (s.job_set_retention_s, s.subscription_expiry_s) == (1000.0, 100.0)
    assert (
        s.database == "postgresql://postgres:p%40ss%20word@postgres:5432/postgres?sslmode=disable"
    )
    assert (s.armada_url, s.armada_tls) == ("server:50051", False)
    assert len(notes) == 1
    for key in ("httpPort", "grpc", "postgresConfig.poolMaxConns", "postgresConfig.poolMinConns"):
        assert key in notes[0]
    assert "p@ss word" not in notes[0]


def test_go_config_with_openid_client_credentials() -> None:
    """TLS unless forceNoTls; an OpenID block becomes our flow; empty blocks are unset."""
    s, notes = load_go("oidc.yaml")
    assert (s.armada_url, s.armada_tls) == ("armada.example.com:443", True)
    assert s.database == "sqlite:////data/jobservice.db"
    assert (s.subscription_expiry_s, s.job_set_retention_s) == (600.0, 7200.0)
    expected = ("client_credentials", "https://login.example.com/realms/armada", "jobservice")
    assert (s.armada_oidc_flow, s.armada_oidc_provider_url, s.armada_oidc_client_id) == expected
    assert (s.armada_oidc_client_secret, s.armada_oidc_scopes) == ("s3cret", ("armada", "openid"))
    assert s.armada_username is None
    assert len(notes) == 1
    assert "subscriberPoolSize" in notes[0]


def test_go_config_with_exec_and_an_unknown_key() -> None:
    """execAuth's env list becomes a mapping; keys of any case; unknown keys are warned."""
    s, notes = load_go("exec.yaml")
    assert s.grpc_port == 60005
    assert s.database == "sqlite:///jobservice.db"
    assert (s.armada_exec_cmd, s.armada_exec_args) == (
        "/usr/local/bin/armada-token",
        ("--audience", "armada"),
    )
    assert dict(s.armada_exec_env) == {"TOKEN_PROFILE": "production"}
    assert notes == [
        f"{GO / 'exec.yaml'} (Go job service configuration): ignoring unknown keys: colour"
    ]


def test_go_config_refuses_two_auth_blocks(tmp_path: Path) -> None:
    """Two filled authentication blocks are refused, as two methods are."""
    path = tmp_path / "go.yaml"
    path.write_text(
        "grpcPort: 1\napiConnection:\n  armadaUrl: a:1\n"
        "  basicAuth: {username: u, password: p}\n"
        "  execAuth: {cmd: /bin/tok}\n"
    )
    with pytest.raises(ConfigError, match="choose one way to reach Armada"):
        config.load(path, environ={})


def test_environment_still_overrides_a_go_config() -> None:
    """Our environment variables apply on top of a Go file, as on top of ours."""
    s = config.load(GO / "postgres.yaml", environ={"ARMADA_JOBSERVICE_GRPC_PORT": "7"})
    assert s.grpc_port == 7


async def test_serve_runs_from_a_go_config(
    armada: FakeArmada,
    tmp_path: Path,
    spawn: Spawn,  # noqa: F811
    connect: Connect,
) -> None:
    """``serve --config`` with a Go file: one warning line, its database, Armada and basic auth."""
    db = tmp_path / "go-js.db"
    path = tmp_path / "config.yaml"
    path.write_text(
        f"grpcPort: 60003\nhttpPort: 8090\npurgeJobSetTime: 1000\nsubscribeJobSetTime: 100\n"
        f"databaseType: sqlite\ndatabasePath: {db}\n"
        f"apiConnection:\n  armadaUrl: 127.0.0.1:{armada.port}\n  forceNoTls: true\n"
        f"  basicAuth:\n    username: airflow\n    password: go-pass-3e9\n"
    )
    proc = await spawn("--config", str(path))  # --grpc-port 0 on top, as tests need
    client = connect(proc.port)
    assert (await client.get_job_status("q", "s", "j")).state == JobState.JOB_ID_NOT_FOUND
    await eventually(lambda: armada.open_streams == 1)
    armada.publish("q", "s", "running", "j")
    await eventually(
        lambda: client.get_job_status("q", "s", "j"), lambda r: r.state == JobState.RUNNING
    )
    expected = "basic " + base64.b64encode(b"airflow:go-pass-3e9").decode()
    assert armada.metadata[0]["authorization"] == expected
    assert db.exists()
    proc.proc.send_signal(signal.SIGTERM)
    assert await proc.wait() == 0
    warnings = [line for line in proc.log if "Go job service configuration" in line]
    assert len(warnings) == 1, proc.log
    assert "WARNING" in warnings[0]
    assert "httpPort (no HTTP gateway" in warnings[0]


def test_settings_stay_comparable() -> None:
    """Settings with a mapping default still compare and copy like the others."""
    a = config.Settings()
    assert dataclasses.replace(a) == a
