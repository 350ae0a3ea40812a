"""What the simulated Armada does during a chaos run: new job sets, cancellations, preemptions.

The mix (``CHAOS_MIX``) gives the full lifecycle: successes, failures with
reasons and exit codes, cancellations and preemptions by the simulator, and
lease returns. On top of it the workload cancels and preempts running jobs
through the simulator's API, as users and Armada's scheduler do. One job set
in ten is dark: nobody asks about it until the simulator has dropped its
events (``EVENT_RETENTION_S`` after its last one), so the service can answer
it only from Armada's query API. Every draw comes from the run's seed.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Mapping

from armada_jobservice.chaos.truth import JobKey, SetKey
from armada_jobservice.sim import ArmadaSimulator, JobPhase, Mix

#: The realistic mix of a chaos run, in simulated (here: real) seconds.
CHAOS_MIX = Mix(
    fail_ratio=0.15,
    cancel_ratio=0.08,
    preempt_ratio=0.05,
    lease_return_ratio=0.15,
    queue_s=(0.2, 3.0),
    pending_s=(0.2, 2.0),
    run_s=(1.0, 12.0),
)

#: The queues jobs are spread over; a refusal fault denies one of them.
QUEUES = ("chaos-a", "chaos-b")
#: The simulator drops a job set's events this long after its last one, as
#: Armada's event store does (there, a day or so by default).
EVENT_RETENTION_S = 45.0
#: Job sets nobody asks about until their events are gone: the service must
#: answer them from Armada's query API.
DARK_SET_RATIO = 0.1


class Workload:
    """Submits job sets and intervenes in jobs until stopped."""

    def __init__(self, sim: ArmadaSimulator, rng: random.Random) -> None:
        """Drive *sim* with draws from *rng*."""
        self.sim = sim
        self.rng = rng
        self.jobs: list[JobKey] = []
        self.sets: list[SetKey] = []
        #: Job sets kept from the pollers until their events have expired.
        self.dark: dict[SetKey, list[JobKey]] = {}
        #: Dark job sets whose events are gone, in the order they were found so.
        self.expired: list[SetKey] = []
        self.cancelled = 0
        self.preempted = 0
        self._tasks: list[asyncio.Task[None]] = []
        for queue in QUEUES:
            if queue not in sim.queues:
                sim.create_queue(queue)

    def submit_set(
        self,
        queue: str,
        job_set_id: str,
        count: int,
        annotations: Mapping[str, str] | None = None,
    ) -> list[JobKey]:
        """Submit *count* jobs of the mix (or as *annotations* script them) to a job set."""
        ids = self.sim.submit(queue, job_set_id, annotations, count=count)
        keys = [(queue, job_set_id, job_id) for job_id in ids]
        self._add(keys)
        return keys

    def submit_dark_set(self, queue: str, job_set_id: str, count: int) -> None:
        """Submit a job set that is shown to the pollers only once its events have expired."""
        ids = self.sim.submit(queue, job_set_id, count=count)
        self.dark[(queue, job_set_id)] = [(queue, job_set_id, job_id) for job_id in ids]

    def reveal_expired(self) -> None:
        """Show the pollers every dark job set whose events the simulator has dropped."""
        gone = [key for key in self.dark if not self.sim.event_log.exists(*key)]
        for key in gone:
            self._add(self.dark.pop(key))
            self.expired.append(key)

    def reveal_all(self) -> None:
        """Show the pollers every dark job set, expired or not (for the final check)."""
        self.reveal_expired()
        for keys in self.dark.values():
            self._add(keys)
        self.dark.clear()

    def _add(self, keys: list[JobKey]) -> None:
        if not keys:
            return
        queue, job_set_id, _ = keys[0]
        if (queue, job_set_id) not in self.sets[-50:]:
            self.sets.append((queue, job_set_id))
        self.jobs.extend(keys)

    def start(self) -> None:
        """Begin submitting and intervening."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._submit()), loop.create_task(self._intervene())]

    async def stop(self) -> None:
        """Stop submitting and intervening; jobs already submitted run to their end."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _submit(self) -> None:
        number = 0
        while True:
            number += 1
            queue = self.rng.choice(QUEUES)
            count = self.rng.randint(2, 10)
            if self.rng.random() < DARK_SET_RATIO:
                self.submit_dark_set(queue, f"set-{number:05d}", count)
            else:
                self.submit_set(queue, f"set-{number:05d}", count)
            self.reveal_expired()
            await asyncio.sleep(self.rng.uniform(1.0, 4.0))

    async def _intervene(self) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(2.0, 6.0))
            running = [
                key for key in self.jobs[-200:] if self.sim.job_phase(key[2]) is JobPhase.RUNNING
            ]
            if not running:
                continue
            key = self.rng.choice(running)
            if self.rng.random() < 0.5:
                self.cancelled += self.sim.cancel(key[2], "chaos", "cancelled by the chaos run")
            else:
                self.preempted += self.sim.preempt(key[2], "chaos", "preempted by the chaos run")

    def all_ended(self) -> bool:
        """Whether every submitted job has reached a terminal phase."""
        dark = (key for keys in self.dark.values() for key in keys)
        return all(
            (phase := self.sim.job_phase(key[2])) is not None and phase.terminal
            for key in itertools.chain(self.jobs, dark)
        )
