"""``ArmadaSimulator``: a local Armada-compatible gRPC server with a Python API.

Use it in-process (``async with ArmadaSimulator(port=0) as sim``), script what
happens (``sim.publish``, ``sim.drive``, annotations), inject faults
(``sim.faults``) and inspect what clients asked for (``sim.stream_requests``,
``sim.open_streams``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from armada_client.armada import event_pb2, submit_pb2

from armada_jobservice._scopes import TokenScopes
from armada_jobservice.sim import events
from armada_jobservice.sim.engine import Engine, Job
from armada_jobservice.sim.eventlog import EventLog, JobSetLog
from armada_jobservice.sim.faults import Faults
from armada_jobservice.sim.lifecycle import JobPhase, Mix
from armada_jobservice.sim.scheduler import Scheduler
from armada_jobservice.sim.servicers import add_servicers

logger = logging.getLogger(__name__)


class SimulatorError(RuntimeError):
    """The simulator was used in a way it cannot serve (not started, bad queue...)."""


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """One GetJobSetEvents (or Watch) call, as the simulator received it."""

    rpc: str
    """``GetJobSetEvents`` or ``Watch``."""
    queue: str
    job_set_id: str
    from_message_id: str
    watch: bool
    error_if_missing: bool
    received_at: float
    """Wall-clock time (``time.time()``) of arrival."""


class StreamHandle:
    """An open event stream: what it asked for, how far it got, and whether to kill it."""

    __slots__ = ("kill", "log", "request", "sent")

    def __init__(self, request: event_pb2.JobSetRequest, log: JobSetLog) -> None:
        """Track a stream reading ``log`` for ``request``."""
        self.request = request
        self.log = log
        self.sent = 0
        self.kill: tuple[grpc.StatusCode, str] | None = None


class ArmadaSimulator:
    """A local Armada: ``api.Submit``, ``api.QueueService``, ``api.Event``, ``api.Jobs``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        queues: Iterable[str] = (),
        mix: Mix | None = None,
        seed: int | None = None,
        time_scale: float = 1.0,
        requestor: str = "anonymous",
        faults: Faults | None = None,
        grace_s: float = 0.2,
        max_recorded_requests: int = 100_000,
        permissions: TokenScopes | None = None,
    ) -> None:
        """Configure a simulator; nothing listens until ``start()``.

        ``time_scale`` is real seconds per simulated second (0.01 runs jobs
        100 times faster, 0 makes every delay zero); ``seed`` makes the mix
        repeatable; ``requestor`` is the user named in cancellations.
        ``permissions`` (a parsed ``TOKEN [PATTERNS]`` file) makes every call
        need a listed bearer token and limits each token to its queues.
        """
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self.event_log = EventLog()
        self.scheduler = Scheduler(time_scale)
        self.engine = Engine(self.event_log, self.scheduler, mix or Mix(), seed, requestor)
        self.faults = faults or Faults()
        #: Per-caller permissions; None lets every caller use every queue.
        self.permissions = permissions
        self.faults.bind_outage_hook(self._on_outage)
        self.client_ids: dict[tuple[str, str], str] = {}
        self.stream_requests: collections.deque[StreamRequest] = collections.deque(
            maxlen=max_recorded_requests
        )
        self._streams: set[StreamHandle] = set()
        self._grace_s = grace_s
        self._server: grpc.aio.Server | None = None
        for name in queues:
            self.engine.create_queue(name)

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> ArmadaSimulator:
        """Bind and start serving; returns self. Starting twice is an error."""
        if self._server is not None:
            raise SimulatorError("simulator already started")
        server = grpc.aio.server(
            options=[
                # Holding 10,000+ watch streams is the point. grpc core cancels
                # calls beyond its pending-request limits (1,000 soft, 3,000 hard
                # by default) while grpc.aio picks them up one at a time, so a burst
                # of new streams would end CANCELLED without these.
                ("grpc.max_concurrent_streams", 1_000_000),
                ("grpc.server.max_pending_requests", 1_000_000),
                ("grpc.server.max_pending_requests_hard_limit", 1_000_000),
                ("grpc.so_reuseport", 0),
            ]
        )
        add_servicers(self, server)
        try:
            port = server.add_insecure_port(f"{self.host}:{self._requested_port}")
        except RuntimeError as exc:
            raise SimulatorError(f"cannot bind {self.host}:{self._requested_port}") from exc
        if port == 0:
            raise SimulatorError(f"cannot bind {self.host}:{self._requested_port}")
        await server.start()
        self._server = server
        self._port = port
        logger.info("armada simulator listening on %s", self.address)
        return self

    async def stop(self) -> None:
        """Stop serving and drop pending job transitions; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        self.scheduler.close()
        await server.stop(self._grace_s)

    async def __aenter__(self) -> ArmadaSimulator:
        """Start the simulator."""
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop the simulator."""
        await self.stop()

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._port is None:
            raise SimulatorError("simulator not started")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` to open a channel to."""
        return f"{self.host}:{self.port}"

    # -- queues and jobs -------------------------------------------------------------

    def create_queue(self, name: str, priority_factor: float = 1.0) -> None:
        """Create (or replace) a queue."""
        self.engine.create_queue(submit_pb2.Queue(name=name, priority_factor=priority_factor))

    def delete_queue(self, name: str) -> None:
        """Delete a queue if it exists."""
        self.engine.delete_queue(name)

    @property
    def queues(self) -> list[str]:
        """Names of the existing queues."""
        return list(self.engine.queues)

    def submit(
        self,
        queue: str,
        job_set_id: str,
        annotations: Mapping[str, str] | None = None,
        count: int = 1,
    ) -> list[str]:
        """Submit ``count`` jobs without gRPC and return their ids.

        The annotations script the jobs (see ``lifecycle``); the queue must
        exist, as over gRPC.
        """
        if queue not in self.engine.queues:
            raise SimulatorError(f"queue {queue!r} does not exist")
        item = submit_pb2.JobSubmitRequestItem(annotations=dict(annotations or {}))
        ids = []
        for _ in range(count):
            plan = self.engine.plan(item.annotations)
            ids.append(self.engine.submit(queue, job_set_id, plan, item).job_id)
        return ids

    def cancel(self, job_id: str, requestor: str | None = None, reason: str = "") -> bool:
        """Cancel a live job as CancelJobs would; False if it was not live."""
        return self.engine.cancel(job_id, requestor, reason)

    def preempt(self, job_id: str, requestor: str | None = None, reason: str = "") -> bool:
        """Preempt a live job as PreemptJobs would; False if it was not live."""
        return self.engine.preempt(job_id, requestor, reason)

    def release(self, job_id: str) -> bool:
        """Let a job held by ``armada-sim/hold-at`` carry on; False if it was not held."""
        return self.engine.release(job_id)

    def job(self, job_id: str) -> Job | None:
        """Return the simulator's record of a job, or None."""
        return self.engine.jobs.get(job_id)

    def job_phase(self, job_id: str) -> JobPhase | None:
        """Return a job's current state, or None if unknown."""
        job = self.engine.jobs.get(job_id)
        return job.state if job is not None else None

    def job_ids(self, queue: str, job_set_id: str) -> list[str]:
        """Return the ids of a job set's jobs, in submission order."""
        return [j.job_id for j in self.engine.jobs_in(queue, job_set_id)]

    # -- events ----------------------------------------------------------------------

    def publish(self, queue: str, job_set_id: str, message: event_pb2.EventMessage) -> str:
        """Append any ``EventMessage`` to a job set, deliver it to watchers, return its id.

        A terminal event for a simulated job also ends that job's own
        lifecycle; a ``submitted`` event for an unknown job id creates a job
        that only scripts drive.
        """
        return self.engine.publish(queue, job_set_id, message)

    def emit(self, queue: str, job_set_id: str, job_id: str, kind: str, **fields: Any) -> str:
        """Publish one ``kind`` event (an ``EventMessage`` oneof name) for a job."""
        return self.publish(
            queue, job_set_id, events.build_event(kind, queue, job_set_id, job_id, **fields)
        )

    def drive(
        self,
        queue: str,
        job_set_id: str,
        job_id: str,
        steps: Iterable[str | event_pb2.EventMessage],
    ) -> list[str]:
        """Publish a sequence of events for a job and return their message ids.

        Each step is an event kind (``"running"``) or a ready ``EventMessage``;
        ``"failed"`` gets a default reason and exit code.
        """
        ids = []
        for step in steps:
            if isinstance(step, str):
                fields = {}
                if step == "failed":
                    fields = events.failure_fields("Error: scripted failure", 1)
                ids.append(self.emit(queue, job_set_id, job_id, step, **fields))
            else:
                ids.append(self.publish(queue, job_set_id, step))
        return ids

    def events(self, queue: str, job_set_id: str) -> list[event_pb2.EventStreamMessage]:
        """Return a copy of the job set's events, oldest first."""
        log = self.event_log.get(queue, job_set_id)
        return list(log.messages) if log is not None else []

    # -- streams and inspection ------------------------------------------------------

    def record_stream_request(self, request: event_pb2.JobSetRequest, rpc: str) -> None:
        """Remember an event-stream call (the servicer calls this first thing)."""
        self.stream_requests.append(
            StreamRequest(
                rpc,
                request.queue,
                request.id,
                request.from_message_id,
                request.watch,
                request.errorIfMissing,
                time.time(),
            )
        )

    def open_stream(self, request: event_pb2.JobSetRequest, log: JobSetLog) -> StreamHandle:
        """Register an open stream (the servicer calls this)."""
        handle = StreamHandle(request, log)
        self._streams.add(handle)
        self.engine.notify()
        return handle

    def close_stream(self, handle: StreamHandle) -> None:
        """Forget a stream that ended (the servicer calls this)."""
        self._streams.discard(handle)
        self.engine.notify()

    @property
    def open_streams(self) -> int:
        """The number of event streams open now."""
        return len(self._streams)

    def break_streams(
        self,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        message: str = "armada-sim: streams broken on request",
        queue: str | None = None,
    ) -> int:
        """Fail every open stream (of ``queue`` if given) with ``code``; return how many."""
        logs = set()
        count = 0
        for handle in self._streams:
            if queue is None or handle.request.queue == queue:
                handle.kill = (code, message)
                logs.add(handle.log)
                count += 1
        for log in logs:
            log.notify()
        return count

    def _on_outage(self) -> None:
        self.break_streams(grpc.StatusCode.UNAVAILABLE, "armada-sim: injected outage")

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float | None = 30.0) -> None:
        """Wait until ``predicate()`` holds, re-checking after every change.

        Raises ``TimeoutError`` after ``timeout_s`` (None: wait for ever).
        """
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await self.engine.wait_changed()

    async def wait_for_terminal(
        self,
        job_ids: Iterable[str],
        timeout_s: float | None = 30.0,
    ) -> None:
        """Wait until every job in ``job_ids`` is in a terminal state."""
        ids = list(job_ids)

        def done() -> bool:
            return all((s := self.job_phase(j)) is not None and s.terminal for j in ids)

        await self.wait_for(done, timeout_s)
