"""What the scenarios share: the simulator, a scratch folder, the report, and how to load.

A scenario is a function taking a :class:`Bench`; it starts the servers it
compares, drives them through the load helpers here, and adds its figures
to ``bench.report``.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from armada_jobservice._wire import WireState
from armada_jobservice.bench.load import LoadGroup, split
from armada_jobservice.bench.messages import (
    FirstPolls,
    Poll,
    PollCounts,
    PollLoad,
    Seeded,
    Visibility,
)
from armada_jobservice.bench.procfs import cpu_s
from armada_jobservice.bench.procs import CpuMeter, ServiceProcess
from armada_jobservice.bench.report import Report
from armada_jobservice.bench.simhost import SimHost
from armada_jobservice.bench.sizes import Sizes

#: The events every job of the fleet scenario goes through.
LIFECYCLE = ("submitted", "running", "succeeded")

#: Where the fleet scenario finds PostgreSQL unless told (``bench --postgres``).
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

#: One metered poll run: what the load saw, and the server's CPU meanwhile.
Run = tuple[PollCounts, CpuMeter]


class Bench:
    """The simulator, a scratch folder and the report, shared by every scenario."""

    def __init__(
        self, report: Report, sizes: Sizes, workdir: Path, postgres_url: str = DEFAULT_POSTGRES
    ) -> None:
        self.report = report
        self.sizes = sizes
        self.workdir = workdir
        #: The PostgreSQL server the fleet scenario uses (a fresh schema per run).
        self.postgres_url = postgres_url
        self.sim = SimHost()
        #: Figures later scenarios compare with, by name.
        self.known: dict[str, float] = {}
        self._dbs = 0

    def close(self) -> None:
        """Stop the simulator."""
        self.sim.stop()

    def cpu(self, name: str, seconds: float) -> None:
        """Add to the CPU seconds the report lists per process role."""
        self.report.cpu_s[name] = round(self.report.cpu_s.get(name, 0.0) + seconds, 3)

    def new_database(self) -> Path:
        """A path for a fresh SQLite database in the scratch folder."""
        self._dbs += 1
        return self.workdir / f"service-{self._dbs}.db"

    @contextlib.contextmanager
    def service(
        self, *extra: str, db: Path | None = None, database: str | None = None
    ) -> Iterator[ServiceProcess]:
        """``armada-jobservice serve`` against the simulator, on a fresh SQLite file by default.

        *database*: a database URL instead (the fleet scenario's PostgreSQL).
        """
        if database is None:
            database = f"sqlite:///{self.new_database() if db is None else db}"
        args = ["--armada-url", self.sim.address, "--database", database]
        args += ["--max-subscriptions", "20000", *extra]
        proc = ServiceProcess(args, self.workdir / "service.log").start()
        c0 = cpu_s(proc.pid)
        pid = proc.pid
        try:
            yield proc
        finally:
            with contextlib.suppress(OSError):  # gone already: killed by the scenario
                self.cpu("service", cpu_s(pid) - c0)
            code = proc.stop()
            if code not in (0, None):
                self.report.errors.append(f"service exited with {code}; see service.log")

    def polls(
        self,
        address: str,
        pid: int,
        polls: Sequence[Poll],
        mode: Literal["closed", "open"],
        param: float,
        midway: Callable[[], object] | None = None,
    ) -> Run:
        """Run one poll load for ``poll_s`` seconds and meter process *pid* meanwhile.

        *mode* ``closed``: *param* callers in all, each sending its next poll
        when the last is answered; ``open``: *param* polls a second in all.
        *midway* is called half way through the measured window.
        """
        result, meters = self.spread_polls([(address, pid)], polls, mode, param, midway)
        return result, meters[0]

    def spread_polls(
        self,
        servers: Sequence[tuple[str, int]],
        polls: Sequence[Poll],
        mode: Literal["closed", "open"],
        param: float,
        midway: Callable[[], object] | None = None,
    ) -> tuple[PollCounts, list[CpuMeter]]:
        """As ``polls``, the load processes taking the servers (address, pid) in turn."""
        n = self.sizes.load_processes
        per_process = param if mode == "closed" else param / n
        group = LoadGroup(
            [
                PollLoad(servers[k % len(servers)][0], part, mode, per_process, self.sizes.poll_s)
                for k, part in enumerate(split(polls, n))
            ]
        )
        start = group.go()
        sleep_until(start)
        meters = [CpuMeter(pid).start() for _, pid in servers]
        if midway is None:
            time.sleep(self.sizes.poll_s)
        else:
            time.sleep(self.sizes.poll_s / 2)
            midway()
            sleep_until(start + self.sizes.poll_s)
        for meter in meters:
            meter.stop()
        result = PollCounts.merged(group.results())
        if result.errors or result.wrong:
            where = ", ".join(address for address, _ in servers)
            self.report.errors.append(
                f"poll load on {where}: {result.errors} errors, {result.wrong} wrong answers"
            )
        return result, meters

    def touch(self, address: str, polls: Sequence[Poll], concurrency: int = 32) -> float:
        """Send each poll once, without waiting for its answer's state (subscribes).

        Returns the wall-clock instant the first poll went out (after the load
        processes were spawned and ready).
        """
        n = min(self.sizes.load_processes, max(1, len(polls)))
        group = LoadGroup(
            [FirstPolls(address, part, concurrency, 0.0, 0.0) for part in split(polls, n)]
        )
        start = group.go(0.1)
        group.results()
        return start

    def await_visible(
        self, address: str, polls: Sequence[Poll], concurrency: int = 16, interval_s: float = 0.02
    ) -> Visibility:
        """Poll until each poll's expected state shows; return the merged timings."""
        n = min(self.sizes.load_processes, max(1, len(polls)))
        group = LoadGroup(
            [FirstPolls(address, part, concurrency, 600.0, interval_s) for part in split(polls, n)]
        )
        group.go(0.1)
        merged = Visibility.merged(group.results())
        if merged.errors or merged.missed:
            self.report.errors.append(
                f"waiting on {address}: {merged.errors} errors, {merged.missed} never visible"
            )
        return merged


def sleep_until(wall: float) -> None:
    """Sleep until the wall-clock instant *wall* (``time.time()``)."""
    delay = wall - time.time()
    if delay > 0:
        time.sleep(delay)


def median(values: Iterable[float]) -> float:
    """The median of *values*."""
    return statistics.median(list(values))


def per_cpu(r: PollCounts, m: CpuMeter) -> float:
    """Calls answered per CPU second of the metered server."""
    return r.calls / m.cpu_s if m.cpu_s else float("nan")


def rate(r: PollCounts, m: CpuMeter) -> float:
    """Calls answered per wall-clock second."""
    return r.calls / m.wall_s


def last_polls(seeded: Sequence[Seeded], queue: str, want: WireState | None = None) -> list[Poll]:
    """One poll per job set, of the job whose event came last: visible means all are in.

    *want*: the state every job set's last job ends in (job sets seeded with
    ``seed``); without it, each job set's own (seeded with ``seed_mix``).
    """
    if want is not None:
        return [Poll(queue, s.job_set_id, s.job_ids[-1], want) for s in seeded]
    return [
        Poll(queue, s.job_set_id, s.job_ids[s.last_index], s.wants[s.last_index]) for s in seeded
    ]


def seed_for_polls(bench: Bench, queue: str) -> tuple[list[Seeded], list[Poll]]:
    """Seed the poll scenarios' job sets from the bench's mix, and a poll of each job.

    Every job is polled, whatever its state (errors included), expecting the
    state its events lead to. The polls are shuffled with a fixed seed, so
    consecutive polls hit different job sets and every run sends the same
    sequence.
    """
    sz = bench.sizes
    seeded = bench.sim.seed_mix(queue, queue, sz.poll_sets, sz.poll_jobs_per_set)
    polls = [
        Poll(queue, s.job_set_id, job, want)
        for s in seeded
        for job, want in zip(s.job_ids, s.wants, strict=True)
    ]
    random.Random(1).shuffle(polls)
    return seeded, polls
