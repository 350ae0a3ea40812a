"""Processes under test: start them, stop them, meter their CPU time.

Every server runs in a process of its own so that its CPU time is its own
(read from ``/proc`` by :mod:`armada_jobservice.bench.procfs`). Python
children talk to the parent over one pipe in the typed messages of
:mod:`armada_jobservice.bench.messages`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from armada_jobservice._ready import NotReady, wait_for_ready_file
from armada_jobservice.bench.messages import Done, Failed, Listening, Stop
from armada_jobservice.bench.procfs import cpu_s

#: Children are spawned, not forked: gRPC's threads do not survive a fork.
SPAWN = multiprocessing.get_context("spawn")


class BenchError(RuntimeError):
    """A process under test did not start or answer as expected."""


class CpuMeter:
    """CPU seconds a process spends between ``start()`` and ``stop()``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._t0 = 0.0
        self._c0 = 0.0
        self.cpu_s = 0.0
        self.wall_s = 0.0

    def start(self) -> CpuMeter:
        """Take the starting reading; returns self."""
        self._c0 = cpu_s(self.pid)
        self._t0 = time.perf_counter()
        return self

    def stop(self) -> float:
        """Take the closing reading; return the CPU seconds in between."""
        self.cpu_s = cpu_s(self.pid) - self._c0
        self.wall_s = time.perf_counter() - self._t0
        return self.cpu_s


class ServiceProcess:
    """``armada-jobservice serve`` as a child process, with its log in a file."""

    def __init__(self, args: Sequence[str], log_path: Path) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.port = 0
        self.started_at = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None
        self.ready_file = log_path.with_suffix(".ready.json")

    @property
    def pid(self) -> int:
        """The process id of the service."""
        if self._proc is None:
            raise BenchError("service not started")
        return self._proc.pid

    @property
    def address(self) -> str:
        """``host:port`` of its gRPC API."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ServiceProcess:
        """Spawn it and wait for its ready file, which names its port; returns self."""
        cmd = [sys.executable, "-m", "armada_jobservice.cli", "serve"]
        cmd += ["--grpc-host", "127.0.0.1", "--grpc-port", "0"]
        cmd += ["--ready-file", str(self.ready_file), *self.args]
        self.ready_file.unlink(missing_ok=True)
        self.started_at = time.perf_counter()
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(cmd, stderr=self._log, stdin=subprocess.DEVNULL)
        try:
            ready = wait_for_ready_file(self.ready_file, self._proc, timeout_s)
        except NotReady as exc:
            self.stop()
            raise BenchError(f"the service did not start ({exc}); see {self.log_path}") from exc
        self.port = ready.grpc_port
        return self

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM it and wait for it to exit; return its exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def kill(self) -> int | None:
        """SIGKILL it (no flush, no goodbye) and wait for it to be gone; return its exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        proc.kill()
        code = proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def signal(self, signum: int) -> None:
        """Send it a signal."""
        if self._proc is None:
            raise BenchError("service not running")
        self._proc.send_signal(signum)

    def wait(self, timeout_s: float = 60.0) -> int | None:
        """Wait for it to exit by itself; return its exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        code = proc.wait(timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Child:
    """A spawned Python child that talks to the parent over one pipe."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.conn, child_end = SPAWN.Pipe()
        self.proc = SPAWN.Process(target=target, args=(child_end, *args), daemon=True)
        self.proc.start()
        child_end.close()

    @property
    def pid(self) -> int:
        """The child's process id."""
        pid = self.proc.pid
        assert pid is not None
        return pid

    def recv(self, timeout_s: float = 120.0) -> Any:
        """The child's next message; raise ``BenchError`` if none comes or it failed."""
        if not self.conn.poll(timeout_s):
            raise BenchError(f"child {self.proc.name} did not answer within {timeout_s} s")
        try:
            message = self.conn.recv()
        except EOFError as exc:
            raise BenchError(f"child {self.proc.name} exited") from exc
        if isinstance(message, Failed):
            raise BenchError(f"child {self.proc.name} failed: {message.error}")
        return message

    def call(self, request: Any, timeout_s: float = 120.0) -> Any:
        """Send a request and return the value of the child's :class:`Done` answer."""
        self.conn.send(request)
        answer = self.recv(timeout_s)
        if not isinstance(answer, Done):
            raise BenchError(f"child {self.proc.name} answered {answer!r} to {request!r}")
        return answer.value

    def stop(self, timeout_s: float = 20.0) -> None:
        """Ask it to end (SIGTERM), then kill it if it lingers."""
        if self.proc.is_alive():
            os.kill(self.pid, signal.SIGTERM)
            self.proc.join(timeout_s)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


class ServingChild:
    """Parent-side handle of a child that serves gRPC on 127.0.0.1 and answers requests.

    The child sends :class:`Listening` once it listens and ends on
    :class:`Stop`.
    """

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.child = Child(target, *args)
        listening = self.child.recv()
        if not isinstance(listening, Listening):
            self.child.stop()
            raise BenchError(f"child {self.child.proc.name} sent {listening!r} before listening")
        self.port = listening.port

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.child.pid

    @property
    def address(self) -> str:
        """``host:port`` of its gRPC API."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Ask the child to end, then make sure it has."""
        with contextlib.suppress(Exception):
            self.child.call(Stop(), timeout_s=10)
        self.child.stop()
