"""What the simulated Armada does during a chaos run: new job sets, cancellations, preemptions.

The mix (``CHAOS_MIX``) gives the full lifecycle: successes, failures with
reasons and exit codes, cancellations and preemptions by the simulator, and
lease returns. On top of it the workload cancels and preempts running jobs
through the simulator's API, as users and Armada's scheduler do. Every draw
comes from the run's seed.
"""

from __future__ import annotations

import asyncio
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


class Workload:
    """Submits job sets and intervenes in jobs until stopped."""

    def __init__(self, sim: ArmadaSimulator, rng: random.Random) -> None:
        """Drive *sim* with draws from *rng*."""
        self.sim = sim
        self.rng = rng
        self.jobs: list[JobKey] = []
        self.sets: list[SetKey] = []
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
        if (queue, job_set_id) not in self.sets[-50:]:
            self.sets.append((queue, job_set_id))
        self.jobs.extend(keys)
        return keys

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
            self.submit_set(queue, f"set-{number:05d}", self.rng.randint(2, 10))
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
        return all(
            (phase := self.sim.job_phase(key[2])) is not None and phase.terminal
            for key in self.jobs
        )
