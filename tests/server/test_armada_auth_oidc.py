"""Reaching Armada with OpenID Connect tokens from a real provider (npm ``oidc-provider``).

Each test starts the provider, the fake Armada and the service; the token
that reaches Armada is checked with the provider's introspection endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.errors import ConfigError

from ..fake_armada import FakeArmada
from ..helpers import Connect, Serve, armada_token_fetches, eventually
from .oidc_provider import Client, OidcProvider

Q, JS = "q", "s"
CC_SECRET = "cc-secret-0f3a9d71"
USER, PASSWORD = "airflow", "pw-secret-77c2e410"
SA_TOKEN = "sa-token-4be1c9e2"


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[OidcProvider]:
    """A provider with a client per flow; the kubernetes grant accepts ``SA_TOKEN``."""
    assertion = tmp_path / "accepted-sa-token"
    assertion.write_text(SA_TOKEN)
    oidc = OidcProvider(
        tmp_path,
        [
            Client("cc", ["client_credentials"], CC_SECRET),
            Client("cc-short", ["client_credentials"], CC_SECRET, ttl_s=4),
            Client("pw", ["password"]),
            Client("k8s", ["kubernetes"]),
        ],
        users={USER: PASSWORD},
        assertion_file=assertion,
    )
    await oidc.start()
    yield oidc
    await oidc.stop()


async def token_at_armada(app: JobServiceApp, armada: FakeArmada, connect: Connect) -> str:
    """Poll once; the bearer token of the event stream that the poll opened."""
    await connect(app).get_job_status(Q, JS, "j")
    await eventually(lambda: len(armada.metadata) >= 1)
    header = armada.metadata[-1]["authorization"]
    assert header.startswith("bearer ")
    return header[len("bearer ") :]


async def test_client_credentials_token_is_valid_at_the_provider(
    provider: OidcProvider, armada: FakeArmada, serve: Serve, connect: Connect, tmp_path: Path
) -> None:
    """The client-credentials token found through discovery reaches Armada, and is valid."""
    secret = tmp_path / "client-secret"
    secret.write_text(CC_SECRET + "\n")
    app = await serve(
        armada_oidc_flow="client_credentials",
        armada_oidc_provider_url=provider.issuer,
        armada_oidc_client_id="cc",
        armada_oidc_client_secret_file=str(secret),
        armada_oidc_scopes=("armada",),
    )
    verdict = await provider.introspect(await token_at_armada(app, armada, connect))
    assert (verdict["active"], verdict["client_id"], verdict["scope"]) == (True, "cc", "armada")


async def test_password_token_is_the_users(
    provider: OidcProvider, armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """The password flow's token reaches Armada and was issued for the configured user."""
    app = await serve(
        armada_oidc_flow="password",
        armada_oidc_provider_url=provider.issuer,
        armada_oidc_client_id="pw",
        armada_oidc_username=USER,
        armada_oidc_password=PASSWORD,
        armada_oidc_scopes=("armada",),
    )
    verdict = await provider.introspect(await token_at_armada(app, armada, connect))
    assert (verdict["active"], verdict["client_id"]) == (True, "pw")
    assert verdict["armada_subject"] == f"user:{USER}"


async def test_kubernetes_token_file_is_exchanged(
    provider: OidcProvider, armada: FakeArmada, serve: Serve, connect: Connect, tmp_path: Path
) -> None:
    """The service-account token is exchanged at /connect/token for a valid token."""
    sa = tmp_path / "sa-token"
    sa.write_text(SA_TOKEN + "\n")
    app = await serve(
        armada_oidc_flow="kubernetes",
        armada_oidc_provider_url=provider.issuer,
        armada_oidc_client_id="k8s",
        armada_k8s_token_file=str(sa),
    )
    verdict = await provider.introspect(await token_at_armada(app, armada, connect))
    assert (verdict["active"], verdict["client_id"]) == (True, "k8s")
    assert verdict["armada_subject"] == "serviceaccount"


async def test_kubernetes_token_from_the_environment_wins(
    provider: OidcProvider,
    armada: FakeArmada,
    serve: Serve,
    connect: Connect,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``K8S_SERVICEACCOUNT_TOKEN``, when set, is exchanged instead of the file."""
    monkeypatch.setenv("K8S_SERVICEACCOUNT_TOKEN", SA_TOKEN)
    sa = tmp_path / "sa-token"
    sa.write_text("not-the-accepted-token")
    app = await serve(
        armada_oidc_flow="kubernetes",
        armada_oidc_provider_url=provider.issuer,
        armada_oidc_client_id="k8s",
        armada_k8s_token_file=str(sa),
    )
    verdict = await provider.introspect(await token_at_armada(app, armada, connect))
    assert verdict["active"] is True


async def test_token_is_renewed_in_the_background_before_it_expires(
    provider: OidcProvider, armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """A 4 s token is replaced while the stream stays open; a reconnect sends the new one."""
    app = await serve(
        armada_oidc_flow="client_credentials",
        armada_oidc_provider_url=provider.issuer,
        armada_oidc_client_id="cc-short",
        armada_oidc_client_secret=CC_SECRET,
    )
    first = await token_at_armada(app, armada, connect)
    await eventually(lambda: armada_token_fetches(app) >= 2)
    assert len(armada.streams) == 1
    assert armada.streams[0].closed is None, "renewing the token must not reopen the stream"
    armada.faults.break_after = 0
    armada.publish(Q, JS, "submitted", "j")  # breaks the stream; it reconnects at once
    await eventually(lambda: len(armada.metadata) >= 2)
    second = armada.metadata[-1]["authorization"][len("bearer ") :]
    assert second != first
    assert (await provider.introspect(second))["active"] is True


async def test_a_provider_lost_later_keeps_the_last_token(
    provider: OidcProvider,
    armada: FakeArmada,
    serve: Serve,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the provider goes away, the failure is logged naming the method; the token stays."""
    app = await serve(
        armada_oidc_flow="client_credentials",
        armada_oidc_provider_url=provider.issuer,
        armada_oidc_client_id="cc-short",
        armada_oidc_client_secret=CC_SECRET,
    )
    token = await token_at_armada(app, armada, connect)
    await provider.stop()
    caplog.set_level(logging.ERROR, "armada_jobservice.server.armada_auth")

    def failures() -> list[str]:
        return [r.getMessage() for r in caplog.records if "cannot reach the provider" in r.message]

    await eventually(failures)
    assert "Armada credentials (oidc-client-credentials)" in failures()[0]
    assert "keeping the previous token" in failures()[0]
    assert app.upstream.credentials.metadata() == (("authorization", "bearer " + token),)


async def test_wrong_secret_stops_start_up_naming_the_method(
    provider: OidcProvider, serve: Serve
) -> None:
    """A provider refusing at start-up is a bad setting: the method and its error, no secret."""
    with pytest.raises(ConfigError) as info:
        await serve(
            armada_oidc_flow="client_credentials",
            armada_oidc_provider_url=provider.issuer,
            armada_oidc_client_id="cc",
            armada_oidc_client_secret="wrong-secret-e81d",
        )
    assert info.value.setting == "armada_oidc_flow"
    text = str(info.value)
    assert "oidc-client-credentials" in text
    assert "invalid_client" in text
    assert "wrong-secret-e81d" not in text
    assert "wrong-secret-e81d" not in repr(info.value)


async def test_a_rotated_secret_file_is_read_at_the_next_fetch(
    provider: OidcProvider,
    armada: FakeArmada,
    serve: Serve,
    connect: Connect,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The secret file is re-read when it changes: a wrong secret is refused, the right one used."""
    secret = tmp_path / "client-secret"
    secret.write_text(CC_SECRET)
    app = await serve(
        armada_oidc_flow="client_credentials",
        armada_oidc_provider_url=provider.issuer,
        armada_oidc_client_id="cc",
        armada_oidc_client_secret_file=str(secret),
    )
    first = await token_at_armada(app, armada, connect)
    caplog.set_level(logging.ERROR, "armada_jobservice.server.armada_auth")
    secret.write_text("rotated-but-wrong-secret")
    # Armada refuses the token on the next stream: the service fetches with the file's secret.
    armada.faults.refuse_authorization = {"bearer " + first}
    armada.faults.break_after = 0
    armada.publish(Q, JS, "submitted", "j")
    await eventually(lambda: [r for r in caplog.records if "invalid_client" in r.getMessage()])
    secret.write_text(CC_SECRET)
    armada.faults.break_after = None
    await eventually(lambda: armada.open_streams == 1)
    latest = armada.metadata[-1]["authorization"][len("bearer ") :]
    assert latest != first
    assert (await provider.introspect(latest))["active"] is True
    assert "rotated-but-wrong-secret" not in caplog.text
