"""Reaching Armada with a token printed by a command (armadactl's ``execAuth``).

The commands are real processes: a Python one-liner that counts its runs in
a file and prints a token numbered by the count.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from armada_jobservice.server.armada_auth.exec import ExecSource
from armada_jobservice.server.config import Settings
from armada_jobservice.server.errors import ConfigError

from ..fake_armada import FakeArmada
from ..helpers import Connect, Serve, eventually

Q, JS = "q", "s"

#: Prints $PREFIX + the number of this run (counted in the file argv[1]).
COUNTING = """
import os, sys
path = sys.argv[1]
n = int(open(path).read()) + 1 if os.path.exists(path) else 1
open(path, "w").write(str(n))
print(os.environ["TOKEN_PREFIX"] + str(n))
"""


def runs(counter: Path) -> int:
    """How many times the counting command has run."""
    return int(counter.read_text()) if counter.exists() else 0


async def test_command_runs_again_when_armada_refuses_its_token(
    armada: FakeArmada, serve: Serve, connect: Connect, tmp_path: Path
) -> None:
    """UNAUTHENTICATED makes the service run the command again, once; then events flow."""
    counter = tmp_path / "runs"
    armada.faults.refuse_authorization = {"bearer exec-token-1"}
    app = await serve(
        armada_exec_cmd=sys.executable,
        armada_exec_args=("-c", COUNTING, str(counter)),
        armada_exec_env={"TOKEN_PREFIX": "exec-token-"},
    )
    assert runs(counter) == 1  # at start-up, before any poll
    await connect(app).get_job_status(Q, JS, "j")
    await eventually(lambda: armada.open_streams == 1)
    sent = [m["authorization"] for m in armada.metadata]
    assert sent[0] == "bearer exec-token-1"
    assert sent[-1] == "bearer exec-token-2"
    assert runs(counter) == 2


async def test_a_token_is_reused_across_calls(
    armada: FakeArmada, serve: Serve, connect: Connect, tmp_path: Path
) -> None:
    """Unlike armadactl, the service does not run the command for every call."""
    counter = tmp_path / "runs"
    app = await serve(
        armada_exec_cmd=sys.executable,
        armada_exec_args=("-c", COUNTING, str(counter)),
        armada_exec_env={"TOKEN_PREFIX": "t-"},
    )
    client = connect(app)
    for n in range(5):
        await client.get_job_status(Q, f"set-{n}", "j")
    await eventually(lambda: armada.open_streams == 5)
    assert {m["authorization"] for m in armada.metadata} == {"bearer t-1"}
    assert runs(counter) == 1


def jwt(claims: dict[str, object]) -> str:
    """An unsigned JWT with *claims* (the service reads ``exp`` only)."""

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


@pytest.mark.parametrize(
    ("printed", "longer_than", "shorter_than"),
    [
        # A JWT lives until its exp claim, whatever the TTL setting says.
        (jwt({"exp": int(time.time()) + 7200}), 3600, 7300),
        # Anything else lives the configured TTL.
        ("opaque-token", 99, 101),
        (jwt({"sub": "no-exp"}), 99, 101),
    ],
)
async def test_token_lifetime_comes_from_the_jwt_or_the_ttl(
    printed: str, longer_than: float, shorter_than: float
) -> None:
    """The lifetime of an exec token: the JWT's exp when there is one, else the TTL."""
    source = ExecSource(sys.executable, ("-c", f"print({printed!r})"), {}, token_ttl_s=100.0)
    token = await source.fetch()
    assert token.value == printed
    assert token.lifetime_s is not None
    assert longer_than < token.lifetime_s < shorter_than


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import sys; print('leaked-secret-1'); sys.exit(3)", "exited with code 3"),
        ("print('   ')", "printed no token"),
    ],
)
async def test_a_failing_command_stops_start_up_without_its_output(
    serve: Serve, code: str, expected: str
) -> None:
    """A command that fails at start-up is a bad setting; what it printed is not shown."""
    with pytest.raises(ConfigError) as info:
        await serve(armada_exec_cmd=sys.executable, armada_exec_args=("-c", code))
    assert info.value.setting == "armada_exec_cmd"
    assert "Armada credentials (exec)" in str(info.value)
    assert expected in str(info.value)
    assert "leaked-secret-1" not in str(info.value)


async def test_a_missing_command_is_named(serve: Serve, tmp_path: Path) -> None:
    """A command that cannot be run is named with the reason."""
    missing = str(tmp_path / "no-such-command")
    with pytest.raises(ConfigError, match=r"cannot run .*no-such-command.*No such file"):
        await serve(armada_exec_cmd=missing)


async def test_over_tls_a_refused_token_is_renewed_too(
    make_settings: Callable[..., Settings],
    serve: Serve,
    connect: Connect,
    certificate: tuple[bytes, bytes, Path],
    tmp_path: Path,
) -> None:
    """With TLS the token travels as call credentials, and a refusal still renews it."""
    key, cert, ca_file = certificate
    armada = FakeArmada(tls=(key, cert))
    await armada.start()
    try:
        counter = tmp_path / "runs"
        armada.faults.refuse_authorization = {"bearer tls-token-1"}
        settings = make_settings(
            armada_url=f"127.0.0.1:{armada.port}",
            armada_ca_file=str(ca_file),
            armada_exec_cmd=sys.executable,
            armada_exec_args=("-c", COUNTING, str(counter)),
            armada_exec_env={"TOKEN_PREFIX": "tls-token-"},
        )
        await connect(await serve(settings)).get_job_status(Q, JS, "j")
        await eventually(lambda: armada.open_streams == 1)
        assert armada.metadata[0]["authorization"] == "bearer tls-token-1"
        assert armada.metadata[-1]["authorization"] == "bearer tls-token-2"
    finally:
        await armada.stop()
