"""Telling a supervisor that a server is ready: a small JSON file written once it listens.

``serve --ready-file FILE`` and ``armada-sim --ready-file FILE`` write
``{"pid": ..., "address": "host:port", "grpc_port": ..., "metrics_port": ...}``
once their gRPC port accepts calls, and remove the file when they stop. The
file appears whole (written beside it, then renamed), so a reader never sees
half of it. Tests and the bench start servers on port 0 and learn the port
from it; a supervisor can wait for it instead of probing the port.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

#: How often ``wait_for_ready_file`` looks for the file.
POLL_S = 0.02


class NotReady(RuntimeError):
    """The server exited, or did not write its ready file in time."""


@dataclass(frozen=True, slots=True)
class Ready:
    """What a ready server tells about itself."""

    pid: int
    """Its process id."""
    address: str
    """``host:port`` its gRPC API listens on."""
    grpc_port: int
    """The port of its gRPC API (the one chosen when asked for port 0)."""
    metrics_port: int | None = None
    """The port of its ``/metrics`` endpoint, when it serves one."""


def write_ready_file(path: str | os.PathLike[str], ready: Ready) -> None:
    """Write *ready* to *path* atomically."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(asdict(ready)) + "\n")
    os.replace(partial, target)


def remove_ready_file(path: str | os.PathLike[str]) -> None:
    """Remove the ready file, if it is there."""
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()


def read_ready_file(path: str | os.PathLike[str]) -> Ready | None:
    """The ready file's contents, or None while there is none."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    return Ready(**data)


def wait_for_ready_file(
    path: str | os.PathLike[str],
    process: subprocess.Popen[bytes] | subprocess.Popen[str] | None = None,
    timeout_s: float = 60.0,
) -> Ready:
    """Wait until the server writes its ready file; raise ``NotReady`` if it exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready = read_ready_file(path)
        if ready is not None:
            return ready
        if process is not None and process.poll() is not None:
            raise NotReady(f"the server exited with {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise NotReady(f"no ready file at {path} after {timeout_s:.0f} s")
        time.sleep(POLL_S)
