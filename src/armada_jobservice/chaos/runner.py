"""One chaos run: set everything up, inject the seeded faults, settle, judge, tear down.

The simulator, the workload, the pollers and the checker share this
process's event loop; the service runs as one or more ``serve`` processes.
Faults come one at a time: each is held, undone, and followed by a canary
(a new job set with one quick job) whose first right answer measures the
recovery. After the fault period the workload stops, every job runs to its
end, and every job is asked through every replica until all answers equal
the truth or the settle limit passes.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from armada_jobservice._types import JobState
from armada_jobservice.chaos.databases import (
    CannotFault,
    DbProxy,
    SmallDisk,
    drop_schema,
    fresh_schema,
    read_snapshot,
)
from armada_jobservice.chaos.inject import Injector
from armada_jobservice.chaos.plan import FaultKind, kinds_for, make_plan
from armada_jobservice.chaos.pollers import Asker, Clients, Pollers
from armada_jobservice.chaos.processes import Replica, resource_findings, resource_summary
from armada_jobservice.chaos.processes import serve_args as make_serve_args
from armada_jobservice.chaos.recording import RecordingSimulator
from armada_jobservice.chaos.report import Report, fault_line, progress_line
from armada_jobservice.chaos.truth import Checker, JobKey, Truth, Violation
from armada_jobservice.chaos.workload import CHAOS_MIX, EVENT_RETENTION_S, QUEUES, Workload

#: A canary not answered right within this long counts as not recovered (not a violation:
#: the final check after the settle period judges whether the service got there).
RECOVERY_LIMIT_S = 120.0
#: Violations printed as they are found (all are in the report).
SHOWN_VIOLATIONS = 20
CANARY = {
    "armada-sim/outcome": "succeeded",
    "armada-sim/queue-seconds": "0",
    "armada-sim/pending-seconds": "0",
    "armada-sim/run-seconds": "0",
}


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    """What to run; the CLI builds it from its flags."""

    duration_s: float
    """How long faults are injected; the settle period comes after."""
    seed: int
    database: str = "sqlite"
    """``sqlite`` or a PostgreSQL URL (each run uses a fresh schema in it)."""
    replicas: int = 1
    pollers: int = 4
    event_retention_s: float = EVENT_RETENTION_S
    """The simulator drops a job set's events this long after its last one."""
    settle_limit_s: float = 300.0
    """Longest the settle period may take before the final answers are judged as they are."""
    skip: tuple[FaultKind, ...] = ()
    fault_count: int | None = None
    """Inject exactly this many faults, however long they take (``duration_s`` is ignored)."""
    workdir: Path | None = None
    command: str = ""
    line: Callable[[str], None] = field(default=print)
    """Receives one line per fault, skip and phase."""
    status: Callable[[str], None] = field(default=lambda _: None)
    """Receives the progress line about once a second."""

    @property
    def postgres(self) -> bool:
        """Whether the run is on PostgreSQL."""
        return self.database != "sqlite"


class ChaosRun:
    """A chaos run; ``await ChaosRun(config).run()`` returns its report."""

    def __init__(self, config: ChaosConfig) -> None:
        """Prepare a run of *config*."""
        self.config = config
        db_name = "postgresql" if config.postgres else "sqlite"
        self.report = Report(
            config.seed, db_name, config.replicas, config.duration_s, config.command
        )
        self.rng = random.Random(config.seed)
        self.truth = Truth()
        self.checker = Checker(self.truth, self._violation)
        self.started = time.monotonic()
        self.phase = "setup"
        self.replicas: list[Replica] = []
        self._canaries = 0

    def now_s(self) -> float:
        """Seconds since the run began."""
        return time.monotonic() - self.started

    def _violation(self, violation: Violation) -> None:
        # The first few as they happen, so a long run can be looked into while it goes.
        if len(self.checker.violations) <= SHOWN_VIOLATIONS:
            self.config.line(
                f"  VIOLATION {violation.rule} at {violation.at_s:.1f} s: {violation.detail}"
            )

    async def run(self) -> Report:
        """Run it all and return the report."""
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            workdir = self.config.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            await self._run_in(workdir)
        return self.report

    async def _run_in(self, workdir: Path) -> None:
        config = self.config
        skip = set(config.skip)
        disk: SmallDisk | None = None
        proxy: DbProxy | None = None
        schema = ""
        sim = RecordingSimulator(
            self.checker,
            self.now_s,
            mix=CHAOS_MIX,
            seed=config.seed,
            event_retention_s=config.event_retention_s,
        )
        await sim.start()
        try:
            if config.postgres:
                schema, direct = await asyncio.to_thread(fresh_schema, config.database)
                proxy = DbProxy(direct)
                await proxy.start()
                urls = [proxy.url] + [direct] * (config.replicas - 1)
            else:
                disk = SmallDisk(workdir / "small-disk")
                try:
                    await asyncio.to_thread(disk.mount)
                    direct = f"sqlite:///{disk.path / 'jobservice.db'}"
                except CannotFault as exc:
                    skip.add(FaultKind.DISK_FULL)
                    self._skipped(f"disk_full: {exc}; the database lives on the ordinary disk")
                    disk = None
                    direct = f"sqlite:///{workdir / 'jobservice.db'}"
                urls = [direct]
                self._skipped("slow writes: not feasible under SQLite here (no slow block device)")
            for index, url in enumerate(urls):
                name = f"chaos-{index}" if config.postgres else None
                args = make_serve_args(url, sim.address, name)
                self.replicas.append(Replica(index, args, workdir / f"replica-{index}.log"))
            await asyncio.gather(*(r.start() for r in self.replicas))
            injector = Injector(sim, self.replicas, self.checker, direct, proxy=proxy, disk=disk)
            await self._faults_and_settle(sim, injector, skip, direct)
        finally:
            for replica in self.replicas:
                await replica.terminate()
            if proxy is not None:
                await proxy.stop()
            await sim.stop()
            if disk is not None:
                await asyncio.to_thread(disk.unmount)
            if schema:
                await asyncio.to_thread(drop_schema, config.database, schema)

    def _skipped(self, text: str) -> None:
        self.report.skipped_faults.append(text)
        self.config.line(f"skipped: {text}")

    async def _faults_and_settle(
        self, sim: RecordingSimulator, injector: Injector, skip: set[FaultKind], direct: str
    ) -> None:
        config = self.config
        clients = Clients()
        asker = Asker(sim, self.truth, self.checker, self.replicas, clients, self.started)
        workload = Workload(sim, random.Random(self.rng.getrandbits(64)))
        pollers = Pollers(asker, workload, random.Random(self.rng.getrandbits(64)), config.pollers)
        kinds = kinds_for(config.postgres, skip)
        plan = make_plan(config.seed, config.fault_count or 100_000, kinds, config.replicas)
        background = [
            asyncio.get_running_loop().create_task(self._watch(sim, asker, workload, direct))
        ]
        workload.start()
        pollers.start()
        try:
            self.phase = "faults"
            for fault in plan:
                late = self.now_s() + fault.gap_s + fault.hold_s > config.duration_s
                if late and config.fault_count is None:
                    break
                await asyncio.sleep(fault.gap_s)
                entry = await injector.inject(fault, self.now_s())
                recovered_s = await self._recovery(workload, pollers, asker, self.now_s())
                self.report.fault_done(entry, recovered_s)
                config.line(fault_line(entry, recovered_s))
            self.phase = "settle"
            config.line(f"faults over at {self.now_s():.1f} s; settling")
            await workload.stop()
            settle_start = self.now_s()
            await self._settle(sim, workload, asker)
            self.report.settle_s = round(self.now_s() - settle_start, 2)
        finally:
            await pollers.stop()
            await workload.stop()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await clients.close()
        self._fill_report(sim, workload, pollers, asker)

    async def _recovery(
        self, workload: Workload, pollers: Pollers, asker: Asker, since_s: float
    ) -> float | None:
        """Seconds from *since_s* until two canaries are answered SUCCEEDED.

        One quick job goes into a new job set (a first poll, a new stream),
        one into the newest job set already asked about (its stream, perhaps
        reconnecting after the fault, must bring it).
        """
        self._canaries += 1
        queue = QUEUES[self._canaries % len(QUEUES)]
        job_set_id = f"canary-{self._canaries:04d}"
        canaries = [workload.submit_set(queue, job_set_id, 1, CANARY)[0]]
        followed = [s for s in workload.sets[-50:] if s in pollers.asked_sets]
        followed = [s for s in followed if not s[1].startswith("canary-")]
        if followed:
            canaries += workload.submit_set(*followed[-1], 1, CANARY)
        while self.now_s() - since_s < RECOVERY_LIMIT_S:
            for job in list(canaries):
                replica = asker.pick_replica(self.rng)
                if replica is not None and await asker.ask(job, replica) is JobState.SUCCEEDED:
                    canaries.remove(job)
            if not canaries:
                return round(self.now_s() - since_s, 3)
            await asyncio.sleep(0.1)
        return None

    async def _settle(self, sim: RecordingSimulator, workload: Workload, asker: Asker) -> None:
        """Wait for every job to end, then ask every job through every replica until right."""
        limit = self.config.settle_limit_s
        deadline = self.now_s() + limit
        try:
            await sim.wait_for(workload.all_ended, timeout_s=limit)
        except TimeoutError:
            self.config.line("settle: the simulator's jobs did not all end")
        workload.reveal_all()
        for log in sim.event_log:
            self.truth.catch_up(log)
        pending = {(key, r.index) for key in workload.jobs for r in self.replicas}
        last: dict[JobKey, JobState | None] = {}
        limiter = asyncio.Semaphore(16)

        async def ask(key: JobKey, index: int) -> None:
            async with limiter:
                state = await asker.ask(key, self.replicas[index])
            if state is not None and state == self.truth.of(key).answer:
                pending.discard((key, index))
                last.pop(key, None)
            else:
                last[key] = state if state is not None else last.get(key)

        while pending:
            await asyncio.gather(*(ask(key, index) for key, index in sorted(pending)))
            if not pending or self.now_s() > deadline:
                break
            await asyncio.sleep(1.0)
        self.report.settled = not pending
        self.report.final_answers_checked = len(workload.jobs) * len(self.replicas)
        wrong = {key: last.get(key) for key, _ in pending}
        self.report.events_lost = self.checker.final(wrong, self.now_s())

    async def _watch(
        self, sim: RecordingSimulator, asker: Asker, workload: Workload, direct: str
    ) -> None:
        """Sample /proc, note flushed positions, and report progress, until cancelled."""
        tick = 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            # Read every event into the truth well before the simulator drops it.
            for log in sim.event_log:
                self.truth.catch_up(log)
            if tick % 2 == 0:
                for replica in self.replicas:
                    replica.sample()
            if tick % 10 == 0:
                try:
                    snapshot = await asyncio.to_thread(read_snapshot, direct)
                except Exception:  # a database under a fault may not answer; ask next time
                    snapshot = None
                if snapshot is not None:
                    self.checker.positions(snapshot)
            self.report.polls_checked = self.checker.polls_checked
            self.report.jobs = len(workload.jobs)
            self.report.unanswered = asker.unanswered
            self.report.violations = self.checker.violations
            self.config.status(progress_line(self.report, self.now_s(), self.phase))

    def _fill_report(
        self, sim: RecordingSimulator, workload: Workload, pollers: Pollers, asker: Asker
    ) -> None:
        report = self.report
        self.checker.resources(resource_findings(self.replicas), self.now_s())
        report.resources = resource_summary(self.replicas)
        report.violations = self.checker.violations
        report.polls_checked = self.checker.polls_checked
        report.answers = dict(sorted(self.checker.answers.items()))
        report.unanswered = asker.unanswered
        report.first_polls = pollers.first_polls
        report.expired_first_polls = pollers.expired_first_polls
        report.events_expired = sum(log.base for log in sim.event_log)
        report.events_unread_by_truth = self.truth.expired_unread
        report.jobs = len(workload.jobs)
        report.job_sets = len(workload.sets)
        report.events = sum(log.end for log in sim.event_log)
        report.streams_opened = sim.streams_opened
        report.cancelled_by_run = workload.cancelled
        report.preempted_by_run = workload.preempted
        report.terminal_answers_lost_to_kill_9 = self.checker.terminal_answers_lost
        report.follower_lag_answers = self.checker.follower_lag_answers
        report.connection_err_after_restart = self.checker.connection_err_after_restart
        report.wall_s = round(self.now_s(), 2)
        report.finished_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
