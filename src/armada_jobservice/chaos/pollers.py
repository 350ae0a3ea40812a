"""The clients of a chaos run: pollers that ask about jobs in every state, and each answer judged.

A poller picks a job (one of a job set nobody has asked about yet, one of the
newest job sets, or any job at all) and a replica, asks, and hands the
answer to the checker after bringing the truth up to that moment. The
simulator runs in the same event loop, so nothing it publishes after the
answer arrives can be mistaken for something the service knew.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

from armada_jobservice import AsyncJobServiceClient, JobServiceError, JobState
from armada_jobservice.chaos.processes import Replica
from armada_jobservice.chaos.truth import Checker, JobKey, SetKey, Truth
from armada_jobservice.chaos.workload import Workload
from armada_jobservice.sim import ArmadaSimulator

#: How long one poll may take before it counts as unanswered (a fault, not a verdict).
CALL_TIMEOUT_S = 5.0


class Clients:
    """One client per running replica address; a restarted replica gets a new one."""

    def __init__(self) -> None:
        """Hold no client yet."""
        self._by_address: dict[str, AsyncJobServiceClient] = {}

    def get(self, address: str) -> AsyncJobServiceClient:
        """The client of *address*."""
        client = self._by_address.get(address)
        if client is None:
            client = AsyncJobServiceClient(address, call_timeout_s=CALL_TIMEOUT_S)
            self._by_address[address] = client
        return client

    async def close(self) -> None:
        """Close every client."""
        clients, self._by_address = list(self._by_address.values()), {}
        for client in clients:
            await client.close()


class Asker:
    """Asks one poll through one replica and has the answer judged."""

    def __init__(
        self,
        sim: ArmadaSimulator,
        truth: Truth,
        checker: Checker,
        replicas: Sequence[Replica],
        clients: Clients,
        started: float,
    ) -> None:
        """Judge answers of *replicas* with *checker*; times count from *started*."""
        self.sim = sim
        self.truth = truth
        self.checker = checker
        self.replicas = replicas
        self.clients = clients
        self.started = started
        self.unanswered = 0

    def now_s(self) -> float:
        """Seconds since the run began."""
        return time.monotonic() - self.started

    async def ask(self, key: JobKey, replica: Replica) -> JobState | None:
        """Poll *key* through *replica*; the judged answer, or None when none came."""
        address = replica.address
        if address is None:
            return None
        incarnation = replica.incarnation
        try:
            status = await self.clients.get(address).get_job_status(*key)
        except JobServiceError:
            self.unanswered += 1
            return None
        log = self.sim.event_log.get(key[0], key[1])
        if log is not None:
            self.truth.catch_up(log)
        self.checker.answer(key, status.state, replica.index, incarnation, self.now_s())
        return status.state

    def pick_replica(self, rng: random.Random) -> Replica | None:
        """A running replica, or None while none runs."""
        running = [r for r in self.replicas if r.address is not None]
        return rng.choice(running) if running else None


class Pollers:
    """Several poll loops over the workload's jobs."""

    def __init__(self, asker: Asker, workload: Workload, rng: random.Random, count: int) -> None:
        """Run *count* loops drawing from *rng*."""
        self.asker = asker
        self.workload = workload
        self.rng = rng
        self.count = count
        self.asked_sets: set[SetKey] = set()
        self.first_polls = 0
        #: First polls of job sets whose events had expired before anyone asked.
        self.expired_first_polls = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Begin polling."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._loop()) for _ in range(self.count)]

    async def stop(self) -> None:
        """Stop polling."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def pick_job(self) -> JobKey | None:
        """A job of a never asked job set (some with expired events), of the newest, or any."""
        jobs = self.workload.jobs
        if not jobs:
            return None
        draw = self.rng.random()
        if draw < 0.05:
            expired = [s for s in self.workload.expired if s not in self.asked_sets]
            if expired:
                queue, job_set_id = expired[0]
                self.first_polls += 1
                self.expired_first_polls += 1
                job_ids = self.workload.sim.job_ids(queue, job_set_id)
                return (queue, job_set_id, self.rng.choice(job_ids))
        if draw < 0.15:
            fresh = [s for s in self.workload.sets[-20:] if s not in self.asked_sets]
            if fresh:
                queue, job_set_id = self.rng.choice(fresh)
                self.first_polls += 1
                job_ids = self.workload.sim.job_ids(queue, job_set_id)
                return (queue, job_set_id, self.rng.choice(job_ids))
        if draw < 0.65:
            return self.rng.choice(jobs[-60:])
        return self.rng.choice(jobs)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(0.02, 0.15))
            key = self.pick_job()
            replica = self.asker.pick_replica(self.rng)
            if key is None or replica is None:
                continue
            self.asked_sets.add((key[0], key[1]))
            await self.asker.ask(key, replica)
