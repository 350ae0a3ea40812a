"""No secret in the logs: the real ``serve`` at DEBUG, once with each way of reaching Armada.

Each run fetches tokens, is refused by Armada once (UNAUTHENTICATED) and
renews what it can, then stops. The whole of its log output is then searched
for every secret it was given or fetched: client secrets, passwords,
service-account tokens, the exec command's output and environment, access
tokens, basic-auth headers.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ..fake_armada import FakeArmada
from ..helpers import Connect, eventually
from .oidc_provider import Client, OidcProvider
from .test_process import Spawn, spawn  # noqa: F401  (the fixture)

CC_SECRET = "cc-secret-log-91ab"
PASSWORD = "pw-secret-log-2c7d"
SA_TOKEN = "sa-token-log-5e3f"
EXEC_ENV_SECRET = "exec-env-secret-8a0b"
PRINTS_TOKEN = "import os, secrets; print('exec-token-' + secrets.token_hex(8))"


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[OidcProvider]:
    """A provider with a client per OpenID flow."""
    assertion = tmp_path / "accepted-sa-token"
    assertion.write_text(SA_TOKEN)
    oidc = OidcProvider(
        tmp_path,
        [
            Client("cc", ["client_credentials"], CC_SECRET),
            Client("pw", ["password"]),
            Client("k8s", ["kubernetes"]),
        ],
        users={"airflow": PASSWORD},
        assertion_file=assertion,
    )
    await oidc.start()
    yield oidc
    await oidc.stop()


def method_settings(method: str, tmp_path: Path, provider: OidcProvider | None) -> dict[str, Any]:
    """The settings of one method, its secrets in files where the method allows."""
    if method == "basic":
        return {"armada_username": "airflow", "armada_password": PASSWORD}
    if method == "token":
        return {"armada_token": SA_TOKEN}
    if method == "token-file":
        (tmp_path / "token").write_text(SA_TOKEN)
        return {"armada_token_file": str(tmp_path / "token")}
    if method == "exec":
        return {
            "armada_exec_cmd": sys.executable,
            "armada_exec_args": ["-c", PRINTS_TOKEN],
            "armada_exec_env": {"TOKEN_TOOL_KEY": EXEC_ENV_SECRET},
        }
    assert provider is not None
    common = {"armada_oidc_provider_url": provider.issuer, "armada_oidc_scopes": ["armada"]}
    if method == "oidc-client-credentials":
        (tmp_path / "secret").write_text(CC_SECRET)
        return {
            **common,
            "armada_oidc_flow": "client_credentials",
            "armada_oidc_client_id": "cc",
            "armada_oidc_client_secret_file": str(tmp_path / "secret"),
        }
    if method == "oidc-password":
        return {
            **common,
            "armada_oidc_flow": "password",
            "armada_oidc_client_id": "pw",
            "armada_oidc_username": "airflow",
            "armada_oidc_password": PASSWORD,
        }
    (tmp_path / "sa").write_text(SA_TOKEN)
    return {
        **common,
        "armada_oidc_flow": "kubernetes",
        "armada_oidc_client_id": "k8s",
        "armada_k8s_token_file": str(tmp_path / "sa"),
    }


RENEWED = {"exec", "oidc-client-credentials", "oidc-password", "oidc-kubernetes"}


async def run_and_grep(
    method: str,
    settings: dict[str, Any],
    armada: FakeArmada,
    spawn: Spawn,  # noqa: F811
    connect: Connect,
    tmp_path: Path,
) -> None:
    """Run ``serve`` at DEBUG with *settings* through a refusal; no secret may be in its log."""
    cfg = tmp_path / "settings.yaml"
    cfg.write_text(json.dumps(settings))  # JSON is YAML
    armada.faults.refuse = grpc.StatusCode.UNAUTHENTICATED
    proc = await spawn(
        "--config", str(cfg), "--armada-url", f"127.0.0.1:{armada.port}",
        "--database", f"sqlite:///{tmp_path / 'js.db'}", "--log-level", "DEBUG",
        "--reconnect-max-backoff-s", "0.2",
    )  # fmt: skip
    await connect(proc.port).get_job_status("q", "s", "j")
    await eventually(lambda: len(armada.metadata) >= 2)
    if method in RENEWED:
        # The refusal made the service fetch a new token for the next attempt.
        await eventually(lambda: armada.metadata[-1] != armada.metadata[0])
    armada.faults.refuse = None
    await eventually(lambda: armada.open_streams == 1)
    proc.proc.send_signal(signal.SIGTERM)
    assert await proc.wait() == 0
    log = "".join(proc.log)
    assert " DEBUG " in log
    assert "UNAUTHENTICATED" in log
    if method in RENEWED:
        assert f"Armada credentials ({method}): new token" in log
    secrets = {CC_SECRET, PASSWORD, SA_TOKEN, EXEC_ENV_SECRET}
    for metadata in armada.metadata:
        header = metadata["authorization"]
        secrets |= {header, header.split(" ", 1)[1]}
    for secret in secrets:
        assert secret not in log, f"a secret is in the log of {method}"


@pytest.mark.parametrize("method", ["basic", "token", "token-file", "exec"])
async def test_no_secret_in_the_debug_log(
    method: str,
    armada: FakeArmada,
    spawn: Spawn,  # noqa: F811
    connect: Connect,
    tmp_path: Path,
) -> None:
    """A whole run at DEBUG, refusal and renewal included, logs no secret."""
    settings = method_settings(method, tmp_path, None)
    await run_and_grep(method, settings, armada, spawn, connect, tmp_path)


@pytest.mark.parametrize("method", ["oidc-client-credentials", "oidc-password", "oidc-kubernetes"])
async def test_no_openid_secret_in_the_debug_log(
    method: str,
    provider: OidcProvider,
    armada: FakeArmada,
    spawn: Spawn,  # noqa: F811
    connect: Connect,
    tmp_path: Path,
) -> None:
    """The same with each OpenID flow against the real provider."""
    settings = method_settings(method, tmp_path, provider)
    await run_and_grep(method, settings, armada, spawn, connect, tmp_path)


async def test_no_secret_when_the_provider_refuses_at_start(
    provider: OidcProvider, armada: FakeArmada, tmp_path: Path
) -> None:
    """A refused client secret: exit code 2, the method and the provider's error, no secret."""
    cfg = tmp_path / "settings.yaml"
    wrong = "wrong-secret-log-4d1e"
    cfg.write_text(
        json.dumps(
            {
                "armada_oidc_flow": "client_credentials",
                "armada_oidc_provider_url": provider.issuer,
                "armada_oidc_client_id": "cc",
                "armada_oidc_client_secret": wrong,
            }
        )
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "armada_jobservice.cli", "serve", "--config", str(cfg),
        "--grpc-host", "127.0.0.1", "--grpc-port", "0", "--log-level", "DEBUG",
        "--armada-url", f"127.0.0.1:{armada.port}", "--database", f"sqlite:///{tmp_path / 'js.db'}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    text = (out + err).decode()
    last = text.strip().splitlines()[-1]
    assert last.startswith("armada-jobservice: bad setting armada_oidc_flow: ")
    assert "Armada credentials (oidc-client-credentials)" in last
    assert "invalid_client" in last
    assert wrong not in text
