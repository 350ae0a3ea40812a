"""The service processes of a chaos run: start, kill -9, SIGTERM, restart, and their /proc figures.

Each replica is ``armada-jobservice serve`` in a child process (the bench's
``ServiceProcess``), started again after every fault that stops it. Every
start is a new *incarnation*; the checker judges answers by the incarnation
that gave them. The blocking parts (waiting for the ready file, for an exit)
run in a thread so that the simulator, in the run's event loop, keeps serving.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from armada_jobservice.bench.procfs import rss_bytes
from armada_jobservice.bench.procs import ServiceProcess

#: Samples this soon after a start are warm-up (imports, first connections), not growth.
WARM_UP_S = 5.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a service process from /proc."""

    at: float
    fds: int
    threads: int
    rss_mib: float


def read_sample(pid: int) -> Sample | None:
    """Open fds, threads and resident MiB of *pid*, or None once it is gone."""
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        threads = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
        rss = rss_bytes(pid) / (1 << 20)
    except (OSError, LookupError):
        return None
    return Sample(time.monotonic(), fds, threads, round(rss, 1))


#: Growth a quarter may show beyond the first quarter's highest reading before it counts
#: as unbounded: (factor, absolute slack). The slack covers the working set of the
#: job sets a run adds (each job is some hundred bytes) and a stream's few threads.
BOUNDS = {"fds": (1.5, 16.0), "threads": (1.5, 8.0), "rss_mib": (1.5, 64.0)}


def unbounded(samples: Sequence[Sample], name: str) -> list[str]:
    """Figures whose last quarter rose past the first quarter's bound; empty when bounded."""
    if len(samples) < 8:
        return []
    quarter = len(samples) // 4
    first, last = samples[:quarter], samples[-quarter:]
    findings = []
    for figure, (factor, slack) in BOUNDS.items():
        start = max(float(getattr(s, figure)) for s in first)
        end = max(float(getattr(s, figure)) for s in last)
        if end > start * factor + slack:
            findings.append(
                f"{name}: {figure} rose from at most {start:g} in the first quarter "
                f"to {end:g} in the last"
            )
    return findings


@dataclass(slots=True)
class Replica:
    """One ``serve`` process, restarted as often as the run needs."""

    index: int
    args: list[str]
    log_path: Path
    incarnation: int = 0
    started_at: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    _proc: ServiceProcess | None = None

    @property
    def name(self) -> str:
        """``replica-<index>``."""
        return f"replica-{self.index}"

    @property
    def address(self) -> str | None:
        """``host:port`` while it runs, else None."""
        return self._proc.address if self._proc is not None else None

    @property
    def pid(self) -> int | None:
        """Its process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Start a new incarnation and wait until it is ready."""
        proc = ServiceProcess(self.args, self.log_path)
        await asyncio.to_thread(proc.start, 120.0)
        self._proc = proc
        self.incarnation += 1
        self.started_at = time.monotonic()

    async def kill(self) -> None:
        """SIGKILL it and wait until it is gone."""
        proc, self._proc = self._proc, None
        if proc is not None:
            await asyncio.to_thread(proc.kill)

    async def terminate(self) -> int | None:
        """SIGTERM it and wait for its graceful exit; return its exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        return await asyncio.to_thread(proc.stop, 60.0)

    def sample(self) -> None:
        """Read /proc once, unless it is warming up or down."""
        pid = self.pid
        if pid is None or time.monotonic() - self.started_at < WARM_UP_S:
            return
        found = read_sample(pid)
        if found is not None:
            self.samples.append(found)


def serve_args(database: str, armada: str, name: str | None) -> list[str]:
    """The ``serve`` flags of a chaos run's replica.

    Short subscription expiry so that streams close and reopen from their
    stored position during the run; a modest reconnect backoff cap so that
    recovery is measured, not waited out.
    """
    args = ["--armada-url", armada, "--database", database, "--log-level", "WARNING"]
    args += ["--subscription-expiry-s", "60", "--reconnect-max-backoff-s", "5"]
    if name is not None:
        args += ["--replica-name", name]
    return args


def resource_findings(replicas: Sequence[Replica]) -> list[str]:
    """Every replica's unbounded figures."""
    found = []
    for replica in replicas:
        found += unbounded(replica.samples, replica.name)
    return found


def resource_summary(replicas: Sequence[Replica]) -> dict[str, dict[str, float]]:
    """Median and highest reading of each figure, per replica, for the report."""
    summary = {}
    for replica in replicas:
        if not replica.samples:
            continue
        figures: dict[str, float] = {"samples": float(len(replica.samples))}
        for figure in BOUNDS:
            values = [float(getattr(s, figure)) for s in replica.samples]
            figures[f"{figure}_median"] = statistics.median(values)
            figures[f"{figure}_max"] = max(values)
        summary[replica.name] = figures
    return summary
