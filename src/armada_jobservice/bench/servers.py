"""The servers the job service is compared with, each run in a child process.

- ``constant``: a bare grpc.aio server on uvloop with the same proto, answering
  every ``GetJobStatus`` with one constant response: what Python's gRPC stack
  can do at best on this machine.
- ``write_through``: the old design, kept small: every event is one database
  write (its own commit), every poll one database read.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from typing import Any

import grpc
from armada_client.armada import event_pb2, event_pb2_grpc

from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice._wire import WireState
from armada_jobservice.bench.messages import Done, Failed, Listening, Stop
from armada_jobservice.bench.procs import ServingChild
from armada_jobservice.server.states import map_event, next_state

_Response = jobservice_pb2.JobServiceResponse


class ConstantServicer(jobservice_pb2_grpc.JobServiceServicer):
    """Answers every poll with the same prebuilt response."""

    def __init__(self) -> None:
        self._answer = _Response(state=_Response.SUCCEEDED)

    async def GetJobStatus(self, request: Any, context: Any) -> Any:
        """Return the constant."""
        return self._answer

    async def Health(self, request: Any, context: Any) -> Any:
        """Always SERVING."""
        return jobservice_pb2.HealthCheckResponse(status=jobservice_pb2.HealthCheckResponse.SERVING)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    queue TEXT NOT NULL, job_set_id TEXT NOT NULL, job_id TEXT NOT NULL,
    state INTEGER NOT NULL, error TEXT,
    PRIMARY KEY (queue, job_set_id, job_id)
) WITHOUT ROWID;
"""
_UPSERT = """
INSERT INTO jobs (queue, job_set_id, job_id, state, error) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (queue, job_set_id, job_id) DO UPDATE SET state = excluded.state, error = excluded.error
"""
_SELECT = "SELECT state, error FROM jobs WHERE queue = ? AND job_set_id = ? AND job_id = ?"


class WriteThroughServicer(jobservice_pb2_grpc.JobServiceServicer):
    """The write-through design: one commit per event, one query per poll, no cache."""

    def __init__(self, armada_url: str, db_path: str) -> None:
        self._db = sqlite3.connect(db_path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._channel = grpc.aio.insecure_channel(armada_url)
        self._stub = event_pb2_grpc.EventStub(self._channel)  # type: ignore[no-untyped-call]
        self._streams: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def GetJobStatus(self, request: Any, context: Any) -> Any:
        """Subscribe on first sight, then answer from the database."""
        key = (request.queue, request.job_set_id)
        if key not in self._streams:
            self._streams[key] = asyncio.get_running_loop().create_task(self._follow(key))
        row = self._db.execute(_SELECT, (*key, request.job_id)).fetchone()
        if row is None:
            return _Response(state=int(WireState.JOB_ID_NOT_FOUND))  # type: ignore[arg-type]
        return _Response(state=row[0], error=row[1] or "")

    async def _follow(self, key: tuple[str, str]) -> None:
        queue, job_set_id = key
        request = event_pb2.JobSetRequest(id=job_set_id, queue=queue, watch=True)
        async for msg in self._stub.GetJobSetEvents(request):
            transition = map_event(msg.message)
            if transition is None:
                continue
            row = self._db.execute(_SELECT, (queue, job_set_id, transition.job_id)).fetchone()
            current = None if row is None else WireState(row[0])
            change = next_state(current, transition)
            if change is not None:
                self._db.execute(
                    _UPSERT, (queue, job_set_id, transition.job_id, int(change[0]), change[1])
                )

    async def Health(self, request: Any, context: Any) -> Any:
        """Always SERVING."""
        return jobservice_pb2.HealthCheckResponse(status=jobservice_pb2.HealthCheckResponse.SERVING)


@dataclass(frozen=True, slots=True)
class Constant:
    """A server answering every poll with one constant."""

    def servicer(self) -> jobservice_pb2_grpc.JobServiceServicer:
        """The servicer to run."""
        return ConstantServicer()


@dataclass(frozen=True, slots=True)
class WriteThrough:
    """The write-through design, following *armada_url* into the SQLite file *db_path*."""

    armada_url: str
    db_path: str

    def servicer(self) -> jobservice_pb2_grpc.JobServiceServicer:
        """The servicer to run."""
        return WriteThroughServicer(self.armada_url, self.db_path)


async def _serve(conn: Any, spec: Constant | WriteThrough) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    jobservice_pb2_grpc.add_JobServiceServicer_to_server(spec.servicer(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    conn.send(Listening(port))
    while not isinstance(await asyncio.get_running_loop().run_in_executor(None, conn.recv), Stop):
        conn.send(Failed("a comparison server takes no requests but Stop"))
    await server.stop(1)
    conn.send(Done())


def _main(conn: Any, spec: Constant | WriteThrough) -> None:
    import uvloop

    try:
        uvloop.run(_serve(conn, spec))
    except Exception as exc:
        conn.send(Failed(repr(exc)))


class ServerChild(ServingChild):
    """Parent-side handle of a comparison server running in a child process."""

    def __init__(self, spec: Constant | WriteThrough) -> None:
        super().__init__(_main, spec)
