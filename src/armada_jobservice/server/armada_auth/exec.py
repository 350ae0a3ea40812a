"""Armada tokens printed by a command: armadactl's ``execAuth``.

The command (``armada_exec_cmd`` with ``armada_exec_args``, its environment
the service's plus ``armada_exec_env``) prints the bearer token on standard
output. armadactl runs it for every call; the service runs it once and
reuses the token until shortly before the ``exp`` claim when the token is a
JWT, else for ``armada_exec_token_ttl_s``, and runs it again at once when
Armada answers UNAUTHENTICATED (see ``schedule``).

The command's output is the secret: it is neither logged nor put in an
error. Nor is its standard error, which may repeat it; a failure says how
the command ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping

from armada_jobservice.server.armada_auth.base import ArmadaAuthError, Token, jwt_lifetime_s

#: Seconds the command may run before it is killed and counted as a failure.
EXEC_TIMEOUT_S = 60.0


class ExecSource:
    """Runs the token command."""

    method = "exec"

    def __init__(
        self,
        cmd: str,
        args: tuple[str, ...],
        env: Mapping[str, str],
        *,
        token_ttl_s: float,
        timeout_s: float = EXEC_TIMEOUT_S,
    ) -> None:
        """Run *cmd* *args* with *env* added; a non-JWT token lives *token_ttl_s*."""
        self.cmd = cmd
        self.args = args
        self.env = dict(env)
        self.token_ttl_s = token_ttl_s
        self.timeout_s = timeout_s
        #: How many times the command has run (for the logs and tests).
        self.runs = 0

    async def fetch(self) -> Token:
        """Run the command; its trimmed standard output is the token."""
        self.runs += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                self.cmd,
                *self.args,
                env={**os.environ, **self.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            raise ArmadaAuthError(
                self.method, f"cannot run {self.cmd} (armada_exec_cmd): {exc.strerror}"
            ) from None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise ArmadaAuthError(
                self.method, f"{self.cmd} did not finish within {self.timeout_s:g} s"
            ) from None
        if proc.returncode != 0:
            raise ArmadaAuthError(self.method, f"{self.cmd} exited with code {proc.returncode}")
        token = out.decode(errors="replace").strip()
        if not token:
            raise ArmadaAuthError(self.method, f"{self.cmd} printed no token")
        lifetime = jwt_lifetime_s(token, time.time())
        return Token(token, self.token_ttl_s if lifetime is None else lifetime)

    async def aclose(self) -> None:
        """Nothing to release: each run is a process of its own."""
