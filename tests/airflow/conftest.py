"""Fixtures of the Airflow tests: the simulator and the job service in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _start_stack(*args: str) -> Iterator[dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("stack_server.py")), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        pytest.fail(f"stack_server.py exited with {proc.returncode} before listening")
    try:
        yield json.loads(line)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    """Start stack_server.py and return its addresses: ``armada`` and ``jobservice``."""
    yield from _start_stack()


AUTH_TOKEN = "airflow-test-token"


@pytest.fixture(scope="session")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Like ``stack``, with a job service that requires the bearer token ``AUTH_TOKEN``."""
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text(AUTH_TOKEN + "\n")
    yield from _start_stack(str(tokens))
