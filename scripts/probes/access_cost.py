"""What deciding who may ask costs a poll: ns per GetJobStatus, with and without access rules.

For each mode (no client auth; a flat tokens file; a scoped tokens file of
100 tokens with patterns; client-certificate scopes; ``access_check: armada``
with its verdict kept) it starts the real service in front of the simulator,
subscribes one job set, then:

- calls the servicer's ``GetJobStatus`` in-process N times with a minimal
  context (what the handler itself costs: the figure the access rules move);
- polls over a real socket with the real client, M times in sequence (what
  a caller sees, gRPC included; for scale).

The in-process context hands back the certificate fields as a dict: the cost
of grpc building ``auth_context()`` on a real TLS call is in the socket figure
only when measured over TLS, which this probe does not do.

Usage: python scripts/probes/access_cost.py [N] [M]
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from armada_jobservice import AsyncJobServiceClient
from armada_jobservice._gen import jobservice_pb2
from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.auth import Access
from armada_jobservice.server.config import Settings
from armada_jobservice.server.refusals import Refusals
from armada_jobservice.server.servicer import JobServiceServicer
from armada_jobservice.sim import ArmadaSimulator

QUEUE, JOB_SET, JOB = "team-a-7", "s", "j"
TOKEN = "probe-token-0123456789abcdef"


class Context:
    """The parts of a grpc.aio context the handler reads."""

    # Method names are grpc's.

    def __init__(self, token: str | None, cert_names: dict[str, list[bytes]]) -> None:
        self._metadata = (
            ("user-agent", "grpc-python-asyncio/1.84.0 grpc-c/56.0.0 (linux; chttp2)"),
            *((("authorization", f"Bearer {token}"),) if token else ()),
        )
        self._auth = cert_names

    def invocation_metadata(self) -> Any:
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise RuntimeError(f"refused: {code.name} {details}")


def scoped_tokens(flat: bool) -> str:
    """100 tokens; the probe's own is the last one looked at, with patterns or not."""
    lines = [f"other-token-{n:03d} team-{n}-*,shared-{n}" for n in range(99)]
    lines.append(TOKEN if flat else f"{TOKEN} team-b-*,team-a-?,batch name=probe")
    return "\n".join(lines) + "\n"


async def handler_ns(
    app: JobServiceApp, access: Access | None, context: Context, n: int
) -> list[float]:
    """ns per in-process GetJobStatus of a subscribed job set, five runs of *n*."""
    servicer = JobServiceServicer(
        app.subscriptions,
        app.loader,
        app.metrics,
        app.is_serving,
        app.settings.connection_error_grace_s,
        access=access,
        limits=app.limits,
        refusals=app.refusals,
    )
    request = jobservice_pb2.JobServiceRequest(queue=QUEUE, job_set_id=JOB_SET, job_id=JOB)
    await servicer.GetJobStatus(request, context)
    js = app.subscriptions.job_sets[(QUEUE, JOB_SET)]  # type: ignore[index]
    await app.loader.ensure_loaded(js)
    runs = []
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(n):
            await servicer.GetJobStatus(request, context)
        runs.append((time.perf_counter_ns() - start) / n)
    return runs


async def socket_us(app: JobServiceApp, token: str | None, m: int) -> float:
    """us per poll over a real socket with the real client, *m* in sequence."""
    creds = grpc.access_token_call_credentials(token) if token else None
    async with AsyncJobServiceClient(
        f"127.0.0.1:{app.grpc_port}", call_credentials=creds
    ) as client:
        await client.get_job_status(QUEUE, JOB_SET, JOB)
        start = time.perf_counter_ns()
        for _ in range(m):
            await client.get_job_status(QUEUE, JOB_SET, JOB)
        return (time.perf_counter_ns() - start) / m / 1000


async def measure(
    name: str, settings: Settings, context: Context, n: int, m: int, certs: Path | None = None
) -> None:
    """Print the handler's and (without certificates) the socket's cost in one mode."""
    app = JobServiceApp(settings)
    if app.armada_check is not None:
        app.armada_check.cache_s = 3600.0
    await app.start()
    try:
        access = app.access
        if certs is not None:
            # Certificate scopes need a TLS listener; the handler is measured alone.
            access = Access(
                tokens_file=None,
                client_certs=True,
                cert_scopes_file=str(certs),
                armada=None,
                refusals=Refusals(),
            )
        runs = await handler_ns(app, access, context, n)
        over_socket = "(not measured: needs TLS)"
        if certs is None:
            # Always with the token: the client's call credentials cost the
            # client the same whether or not the service looks at them.
            over_socket = f"{await socket_us(app, TOKEN, m):6.1f} us/poll"
        print(
            f"{name:30s} handler {statistics.median(runs):6.0f} ns/poll "
            f"(min {min(runs):6.0f}); socket {over_socket}",
            flush=True,
        )
    finally:
        await app.stop()


async def main(n: int, m: int) -> None:
    """Measure every mode in turn against one simulator."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "flat").write_text(scoped_tokens(flat=True))
        (d / "scoped").write_text(scoped_tokens(flat=False))
        (d / "certs").write_text("probe-client team-a-?\n")
        async with ArmadaSimulator(queues=[QUEUE], time_scale=0.0) as sim:
            base = Settings(
                grpc_host="127.0.0.1",
                grpc_port=0,
                armada_url=sim.address,
                database=f"sqlite:///{d / 'db'}",
            )
            token = Context(TOKEN, {})
            cert = Context(None, {"x509_common_name": [b"probe-client"]})
            await measure("no client auth", base, Context(None, {}), n, m)
            flat = _with(base, client_tokens_file=d / "flat")
            await measure("flat tokens file (100)", flat, token, n, m)
            scoped = _with(base, client_tokens_file=d / "scoped")
            await measure("scoped tokens file (100)", scoped, token, n, m)
            await measure("certificate scopes", base, cert, n, m, certs=d / "certs")
            armada = _with(base, access_check="armada")
            await measure("access_check armada (kept)", armada, token, n, m)


def _with(base: Settings, **changes: Any) -> Settings:
    fixed: dict[str, Any] = {k: str(v) if isinstance(v, Path) else v for k, v in changes.items()}
    return dataclasses.replace(base, **fixed)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 2_000))  # fmt: skip
