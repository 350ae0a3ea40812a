"""The connection to Armada: plain text or TLS, basic auth or bearer tokens."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from armada_jobservice import AsyncJobServiceClient, JobState
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.config import Settings

from ..fake_armada import FakeArmada
from ..helpers import Connect, Serve, eventually

Q, JS = "q", "s"


async def subscribe_and_wait(
    app: JobServiceApp, armada: FakeArmada, connect: Connect, n: int = 1
) -> None:
    """Poll once and wait until Armada has seen *n* stream requests."""
    await connect(app).get_job_status(Q, JS, "j")
    await eventually(lambda: len(armada.metadata) >= n)


async def test_basic_auth_header(armada: FakeArmada, serve: Serve, connect: Connect) -> None:
    """Basic credentials reach Armada as an ``authorization: basic`` header."""
    app = await serve(armada_username="alice", armada_password="s3cret")
    await subscribe_and_wait(app, armada, connect)
    expected = "basic " + base64.b64encode(b"alice:s3cret").decode()
    assert armada.metadata[0]["authorization"] == expected


async def test_token_file_is_reread_when_it_changes(
    armada: FakeArmada, serve: Serve, connect: Connect, tmp_path: Path
) -> None:
    """A rotated token file is picked up by the next stream."""
    token = tmp_path / "token"
    token.write_text("first-token\n")
    app = await serve(armada_token_file=str(token))
    await subscribe_and_wait(app, armada, connect)
    assert armada.metadata[0]["authorization"] == "bearer first-token"
    token.write_text("second-token-longer\n")
    armada.faults.break_after = 0
    armada.publish(Q, JS, "submitted", "j")  # breaks the stream; it reconnects
    await eventually(lambda: len(armada.metadata) >= 2)
    assert armada.metadata[-1]["authorization"] == "bearer second-token-longer"


async def test_tls_with_ca_file_and_token(
    make_settings: Callable[..., Settings],
    serve: Serve,
    connect: Connect,
    certificate: tuple[bytes, bytes, Path],
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
        client = connect(await serve(settings))
        await client.get_job_status(Q, JS, "j")
        await eventually(lambda: armada.open_streams == 1)
        armada.publish(Q, JS, "running", "j")
        await eventually(
            lambda: client.get_job_status(Q, JS, "j"), lambda r: r.state == JobState.RUNNING
        )
        assert armada.metadata[0]["authorization"] == "bearer tls-token"
    finally:
        await armada.stop()


async def test_one_channel_for_all_streams(
    armada: FakeArmada, service: JobServiceApp, client: AsyncJobServiceClient
) -> None:
    """Many job sets' streams share one upstream connection (one client port)."""
    for n in range(20):
        await client.get_job_status(Q, f"set-{n}", "j")
    await eventually(lambda: armada.open_streams == 20)
    assert len(armada.peers) == 20
    assert len(set(armada.peers)) == 1
