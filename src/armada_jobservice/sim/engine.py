"""The simulated cluster: queues, jobs, and the lifecycle that drives them.

The engine owns no sockets. Servicers and the Python API call into it; every
event it emits goes through ``publish``, which appends to the job set's log,
moves the job's state and wakes whoever is waiting. Each job's next step is a
scheduler entry tagged with the job's generation; cancelling, preempting or a
published terminal event bumps the generation, which voids the stale entries
without searching the heap.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from armada_client.armada import event_pb2, submit_pb2

from armada_jobservice.sim import events
from armada_jobservice.sim.eventlog import EventLog
from armada_jobservice.sim.lifecycle import JobPhase, JobPlan, Mix, Outcome, plan_job, state_after
from armada_jobservice.sim.scheduler import Scheduler

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"

Step = Callable[["Job"], None]


def new_job_id(rng: random.Random) -> str:
    """Return a new 26-character, time-ordered ULID-style id, like Armada's job ids."""
    value = (time.time_ns() // 1_000_000) << 80 | rng.getrandbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


@dataclass(slots=True, eq=False)
class Job:
    """One simulated job and where it is in its plan."""

    job_id: str
    queue: str
    job_set_id: str
    plan: JobPlan
    state: JobPhase | None = None
    generation: int = 0
    attempt: int = 0
    lease_returns_left: int = 0
    cancel_requested: bool = False
    error: str = ""
    #: Why and by whom the job was cancelled (the query API's JobDetails).
    cancel_reason: str = ""
    cancel_user: str = ""
    held: tuple[Step, float] | None = None
    hold_done: bool = False
    annotations: dict[str, str] = field(default_factory=dict)


class Engine:
    """Queues, jobs and their lifecycle, on top of an event log and a scheduler."""

    def __init__(
        self,
        event_log: EventLog,
        scheduler: Scheduler,
        mix: Mix,
        seed: int | None,
        requestor: str = "anonymous",
    ) -> None:
        """Create an engine; ``seed`` makes the mix (not the job ids' time part) repeatable."""
        self.event_log = event_log
        self.scheduler = scheduler
        self.mix = mix
        self.rng = random.Random(seed if seed is not None else int.from_bytes(os.urandom(8)))
        self._id_rng = random.Random(self.rng.getrandbits(64))
        self.requestor = requestor
        self.queues: dict[str, submit_pb2.Queue] = {}
        self.jobs: dict[str, Job] = {}
        self.cancel_delay_s = 0.05
        self._changed: asyncio.Event | None = None

    # -- change notification -------------------------------------------------

    def notify(self) -> None:
        """Wake every ``wait_changed`` caller."""
        if self._changed is not None:
            changed, self._changed = self._changed, None
            changed.set()

    async def wait_changed(self) -> None:
        """Wait until the next event, job change or stream change."""
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()

    # -- queues ----------------------------------------------------------------

    def create_queue(self, queue: submit_pb2.Queue | str) -> submit_pb2.Queue:
        """Create (or replace) a queue and return it."""
        if isinstance(queue, str):
            queue = submit_pb2.Queue(name=queue, priority_factor=1.0)
        stored = submit_pb2.Queue()
        stored.CopyFrom(queue)
        if stored.priority_factor == 0:
            stored.priority_factor = 1.0
        self.queues[stored.name] = stored
        return stored

    def delete_queue(self, name: str) -> None:
        """Delete a queue; jobs already in it carry on."""
        self.queues.pop(name, None)

    # -- events ----------------------------------------------------------------

    def publish(self, queue: str, job_set_id: str, message: event_pb2.EventMessage) -> str:
        """Append ``message`` to the job set, apply it to its job, and return its id."""
        message_id = self.event_log.append(queue, job_set_id, message)
        kind = events.event_kind(message)
        job = self.jobs.get(events.event_job_id(message))
        if job is not None:
            before = job.state
            job.state = state_after(job.state, kind)
            if job.state is not None and job.state.terminal and before != job.state:
                job.generation += 1
                job.held = None
                if kind == "failed":
                    job.error = message.failed.reason
                elif kind == "cancelled":
                    job.cancel_reason = message.cancelled.reason
                    job.cancel_user = message.cancelled.requestor
        elif kind == "submitted":
            # A scripted job appears in the query API like a simulated one,
            # but nothing drives it: the script does.
            inner = message.submitted
            self.jobs[inner.job_id] = Job(
                inner.job_id, queue, job_set_id, JobPlan(), state=JobPhase.SUBMITTED, hold_done=True
            )
        self.notify()
        return message_id

    def emit(self, job: Job, kind: str, /, **fields: Any) -> str:
        """Publish a ``kind`` event for ``job`` with the given member fields."""
        return self.publish(
            job.queue,
            job.job_set_id,
            events.build_event(kind, job.queue, job.job_set_id, job.job_id, **fields),
        )

    # -- submission and lifecycle ---------------------------------------------

    def plan(self, annotations: Mapping[str, str]) -> JobPlan:
        """Decide a plan for a job with these annotations (may raise ``PlanError``)."""
        return plan_job(annotations, self.mix, self.rng)

    def submit(
        self,
        queue: str,
        job_set_id: str,
        plan: JobPlan,
        item: submit_pb2.JobSubmitRequestItem | None = None,
        owner: str = "",
    ) -> Job:
        """Create a job that follows ``plan``; emits submitted and queued now."""
        job_id = new_job_id(self._id_rng)
        annotations = dict(item.annotations) if item is not None else {}
        job = Job(
            job_id,
            queue,
            job_set_id,
            plan,
            lease_returns_left=plan.lease_returns,
            annotations=annotations,
        )
        self.jobs[job_id] = job
        created = events.now_timestamp()
        api_job = submit_pb2.Job(
            id=job_id,
            job_set_id=job_set_id,
            queue=queue,
            owner=owner or self.requestor,
            created=created,
        )
        if item is not None:
            api_job.client_id = item.client_id
            api_job.namespace = item.namespace or events.NAMESPACE
            api_job.priority = item.priority
            api_job.labels.update(item.labels)
            api_job.annotations.update(item.annotations)
            api_job.required_node_labels.update(item.required_node_labels)
            if item.HasField("pod_spec"):
                api_job.pod_spec.CopyFrom(item.pod_spec)
            api_job.pod_specs.extend(item.pod_specs)
        else:
            api_job.namespace = events.NAMESPACE

        def acknowledge(j: Job) -> None:
            self.emit(j, "submitted", job=api_job, created=created)
            self._enter(j, "queued", {}, self._lease, plan.queue_s)

        if plan.unacknowledged:
            # Armada has taken the job but not ingested it: no event, and the
            # query API answers UNKNOWN (state None) until ``release``.
            job.held = (acknowledge, 0.0)
            return job
        acknowledge(job)
        return job

    def _schedule(self, job: Job, delay_s: float, step: Step) -> None:
        generation = job.generation

        def run() -> None:
            if job.generation == generation and not (job.state and job.state.terminal):
                step(job)

        self.scheduler.call_later(delay_s, run)

    def _enter(
        self, job: Job, kind: str, fields: dict[str, Any], then: Step, delay_s: float
    ) -> None:
        self.emit(job, kind, **fields)
        if job.plan.hold_at is not None and not job.hold_done and job.state == job.plan.hold_at:
            job.held = (then, delay_s)
            return
        self._schedule(job, delay_s, then)

    def release(self, job_id: str) -> bool:
        """Let a job held by ``armada-sim/hold-at`` carry on; False if it was not held."""
        job = self.jobs.get(job_id)
        if job is None or job.held is None:
            return False
        then, delay_s = job.held
        job.held = None
        job.hold_done = True
        self._schedule(job, delay_s, then)
        return True

    def _lease(self, job: Job) -> None:
        job.attempt += 1
        nxt = self._return_lease if job.lease_returns_left > 0 else self._pending
        self._enter(
            job,
            "leased",
            events.run_fields("leased", job.job_id, job.attempt),
            nxt,
            job.plan.pending_s / 2,
        )

    def _return_lease(self, job: Job) -> None:
        job.lease_returns_left -= 1
        self.emit(
            job,
            "lease_returned",
            cluster_id=events.CLUSTER_ID,
            reason="pod could not be scheduled on the leased node",
            run_attempted=False,
            kubernetes_id=f"armada-{job.job_id}-{job.attempt}",
        )
        self._schedule(job, 0.0, self._requeue)

    def _requeue(self, job: Job) -> None:
        self.emit(job, "queued")
        self._schedule(job, job.plan.queue_s, self._lease)

    def _pending(self, job: Job) -> None:
        self._enter(
            job,
            "pending",
            events.run_fields("pending", job.job_id, job.attempt),
            self._running,
            job.plan.pending_s / 2,
        )

    def _running(self, job: Job) -> None:
        self._enter(
            job,
            "running",
            events.run_fields("running", job.job_id, job.attempt),
            self._finish,
            job.plan.run_s,
        )

    def _finish(self, job: Job) -> None:
        plan = job.plan
        if plan.outcome is Outcome.SUCCEEDED:
            self.emit(job, "succeeded", **events.run_fields("succeeded", job.job_id, job.attempt))
        elif plan.outcome is Outcome.FAILED:
            fields = events.failure_fields(plan.failure_reason, plan.exit_code, plan.failure_cause)
            fields["pod_name"] = f"armada-{job.job_id}-{job.attempt}"
            self.emit(job, "failed", **fields)
        elif plan.outcome is Outcome.PREEMPTED:
            self.emit(job, "preempted", cluster_id=events.CLUSTER_ID, reason=plan.preemption_reason)
        else:
            self.cancel(job.job_id, requestor="armada-sim", reason=plan.cancel_reason)

    # -- interventions -----------------------------------------------------------

    def cancel(self, job_id: str, requestor: str | None = None, reason: str = "") -> bool:
        """Cancel a live job: cancelling now, cancelled shortly; False if nothing to cancel."""
        job = self.jobs.get(job_id)
        if job is None or job.cancel_requested or (job.state is not None and job.state.terminal):
            return False
        who = requestor or self.requestor
        job.cancel_requested = True
        job.generation += 1
        job.held = None
        self.emit(job, "cancelling", requestor=who, reason=reason)

        def cancelled(j: Job) -> None:
            self.emit(j, "cancelled", requestor=who, reason=reason)

        self._schedule(job, self.cancel_delay_s, cancelled)
        return True

    def jobs_in(self, queue: str, job_set_id: str) -> list[Job]:
        """Return the jobs of one job set, in submission order."""
        return [j for j in self.jobs.values() if j.queue == queue and j.job_set_id == job_set_id]

    def cancel_job_set(
        self,
        queue: str,
        job_set_id: str,
        states: Iterable[JobPhase] = (),
        requestor: str | None = None,
        reason: str = "",
    ) -> list[str]:
        """Cancel the job set's live jobs (only those in ``states`` if given)."""
        wanted = set(states)
        cancelled = []
        for job in self.jobs_in(queue, job_set_id):
            if wanted and job.state not in wanted:
                continue
            if self.cancel(job.job_id, requestor, reason):
                cancelled.append(job.job_id)
        return cancelled

    def preempt(self, job_id: str, requestor: str | None = None, reason: str = "") -> bool:
        """Preempt a live job now (preempting then preempted); False if not live."""
        job = self.jobs.get(job_id)
        if job is None or (job.state is not None and job.state.terminal):
            return False
        who = requestor or self.requestor
        job.generation += 1
        job.held = None
        self.emit(job, "preempting", requestor=who, reason=reason)
        self.emit(
            job,
            "preempted",
            cluster_id=events.CLUSTER_ID,
            requestor=who,
            reason=reason or "preempted on request",
        )
        return True
