"""The connection to Armada: plain text or TLS, basic auth or bearer tokens."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.config import Settings

from ..conftest import Client, State
from ..fake_armada import FakeArmada
from ..helpers import eventually

Q, JS = "q", "s"


async def subscribe_and_wait(app: JobServiceApp, armada: FakeArmada, n: int = 1) -> None:
    """Poll once and wait until Armada has seen *n* stream requests."""
    client = Client(app.grpc_port)
    await client.status(Q, JS, "j")
    await eventually(lambda: len(armada.metadata) >= n)
    await client.close()


async def test_basic_auth_header(
    armada: FakeArmada, make_settings: Callable[..., Settings]
) -> None:
    """Basic credentials reach Armada as an ``authorization: basic`` header."""
    settings = make_settings(armada_username="alice", armada_password="s3cret")
    async with JobServiceApp(settings) as app:
        await subscribe_and_wait(app, armada)
    expected = "basic " + base64.b64encode(b"alice:s3cret").decode()
    assert armada.metadata[0]["authorization"] == expected


async def test_token_file_is_reread_when_it_changes(
    armada: FakeArmada, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A rotated token file is picked up by the next stream."""
    token = tmp_path / "token"
    token.write_text("first-token\n")
    async with JobServiceApp(make_settings(armada_token_file=str(token))) as app:
        await subscribe_and_wait(app, armada)
        assert armada.metadata[0]["authorization"] == "bearer first-token"
        token.write_text("second-token-longer\n")
        armada.faults.break_after = 0
        armada.publish(Q, JS, "submitted", "j")  # breaks the stream; it reconnects
        await eventually(lambda: len(armada.metadata) >= 2)
    assert armada.metadata[-1]["authorization"] == "bearer second-token-longer"


async def test_tls_with_ca_file_and_token(
    make_settings: Callable[..., Settings], certificate: tuple[bytes, bytes, Path]
) -> None:
    """Over TLS the token travels as call credentials and events flow."""
    key, cert, ca_file = certificate
    armada = FakeArmada(tls=(key, cert))
    await armada.start()
    try:
        settings = make_settings(
            armada_url=f"127.0.0.1:{armada.port}",
            armada_ca_file=str(ca_file),
            armada_token="tls-token",
        )
        async with JobServiceApp(settings) as app:
            client = Client(app.grpc_port)
            await client.status(Q, JS, "j")
            await eventually(lambda: armada.open_streams == 1)
            armada.publish(Q, JS, "running", "j")
            await eventually(lambda: client.status(Q, JS, "j"), lambda r: r.state == State.RUNNING)
            await client.close()
        assert armada.metadata[0]["authorization"] == "bearer tls-token"
    finally:
        await armada.stop()


async def test_one_channel_for_all_streams(
    armada: FakeArmada, make_settings: Callable[..., Settings]
) -> None:
    """Many job sets' streams share one upstream connection (one client port)."""
    async with JobServiceApp(make_settings()) as app:
        client = Client(app.grpc_port)
        for n in range(20):
            await client.status(Q, f"set-{n}", "j")
        await eventually(lambda: armada.open_streams == 20)
        await client.close()
    assert len(armada.peers) == 20
    assert len(set(armada.peers)) == 1
