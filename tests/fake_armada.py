"""A small Armada ``api.Event`` server for the job service's own tests.

It keeps one ordered log of ``EventStreamMessage`` per (queue, job set),
serves ``GetJobSetEvents`` with ``watch`` and ``from_message_id`` as Armada
does, records every request, and can be told to refuse or break streams. A
log may also hold ``RawMessage`` bytes, sent as they are: what Armada's
protobuf version could send and ours cannot build (unknown event kinds and
fields, or bytes no protobuf library would produce).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from armada_client.armada import event_pb2, event_pb2_grpc, health_pb2
from google.protobuf import empty_pb2


@dataclass
class Faults:
    """What the fake does wrong, settable between polls."""

    #: Abort every new stream with this code (None: serve normally).
    refuse: grpc.StatusCode | None = None
    refuse_text: str = "refused by the test"
    #: Abort each stream after it has sent this many events (None: never).
    break_after: int | None = None
    #: ``authorization`` values answered UNAUTHENTICATED, as Armada answers an expired token.
    refuse_authorization: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class RawMessage:
    """Serialized bytes sent as one ``EventStreamMessage``; *id* is what resuming matches."""

    id: str
    data: bytes


def _serialize(message: Any) -> bytes:
    if isinstance(message, RawMessage):
        return message.data
    data: bytes = message.SerializeToString()
    return data


@dataclass
class StreamRecord:
    """One GetJobSetEvents call: which job set, from whom, from where, open when."""

    key: tuple[str, str]
    peer: str
    from_message_id: str
    opened: float
    #: Monotonic time the call ended (None while it is open).
    closed: float | None = None


@dataclass
class FakeArmada:
    """The fake's state: event logs, requests seen, faults."""

    logs: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    requests: list[Any] = field(default_factory=list)
    #: The invocation metadata of every GetJobSetEvents call, as dicts.
    metadata: list[dict[str, str]] = field(default_factory=list)
    #: The peer address (client host:port) of every GetJobSetEvents call.
    peers: list[str] = field(default_factory=list)
    #: (private key PEM, certificate chain PEM) to serve TLS instead of plain text.
    tls: tuple[bytes, bytes] | None = None
    faults: Faults = field(default_factory=Faults)
    open_streams: int = 0
    #: Every stream served, with its open and close times.
    streams: list[StreamRecord] = field(default_factory=list)
    port: int = 0
    _changed: asyncio.Condition | None = None
    _server: grpc.aio.Server | None = None

    def publish(self, queue: str, job_set_id: str, kind: str, job_id: str, **fields: Any) -> str:
        """Append an event of *kind* (``submitted``, ``failed``...) and wake watchers."""
        log = self.logs.setdefault((queue, job_set_id), [])
        message_id = f"{len(log) + 1:012d}-0"
        message = event_pb2.EventMessage()
        getattr(message, kind).CopyFrom(
            type(getattr(message, kind))(
                job_id=job_id, job_set_id=job_set_id, queue=queue, **fields
            )
        )
        log.append(event_pb2.EventStreamMessage(id=message_id, message=message))
        self._wake()
        return message_id

    def publish_raw(self, queue: str, job_set_id: str, message_id: str, data: bytes) -> None:
        """Append bytes sent as they are, resumable after *message_id*, and wake watchers."""
        self.logs.setdefault((queue, job_set_id), []).append(RawMessage(message_id, data))
        self._wake()

    def _wake(self) -> None:
        assert self._changed is not None
        cond = self._changed

        async def notify() -> None:
            async with cond:
                cond.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def stream_requests(self, queue: str, job_set_id: str) -> list[Any]:
        """The GetJobSetEvents requests seen for one job set, in order."""
        return [r for r in self.requests if (r.queue, r.id) == (queue, job_set_id)]

    async def start(self) -> None:
        """Serve on 127.0.0.1, on a free port."""
        self._changed = asyncio.Condition()
        self._server = grpc.aio.server()
        servicer = _EventServicer(self)
        # Registered by hand, not with the generated helper, for a serializer
        # that lets raw bytes through.
        handlers = {
            "GetJobSetEvents": grpc.unary_stream_rpc_method_handler(
                servicer.GetJobSetEvents,
                request_deserializer=event_pb2.JobSetRequest.FromString,
                response_serializer=_serialize,
            ),
            "Health": grpc.unary_unary_rpc_method_handler(
                servicer.Health,
                request_deserializer=empty_pb2.Empty.FromString,
                response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
            ),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("api.Event", handlers),)
        )
        if self.tls is None:
            self.port = self._server.add_insecure_port("127.0.0.1:0")
        else:
            creds = grpc.ssl_server_credentials([self.tls])
            self.port = self._server.add_secure_port("127.0.0.1:0", creds)
        await self._server.start()

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            await self._server.stop(0)
            self._server = None


class _EventServicer(event_pb2_grpc.EventServicer):  # type: ignore[misc]
    def __init__(self, fake: FakeArmada) -> None:
        self.fake = fake

    async def GetJobSetEvents(self, request: Any, context: Any) -> Any:
        fake = self.fake
        fake.requests.append(request)
        fake.metadata.append(dict(context.invocation_metadata()))
        fake.peers.append(context.peer())
        faults = fake.faults
        if fake.metadata[-1].get("authorization") in faults.refuse_authorization:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid token")
        if faults.refuse is not None:
            await context.abort(faults.refuse, faults.refuse_text)
        log = fake.logs.setdefault((request.queue, request.id), [])
        position = 0
        if request.from_message_id:
            position = next(
                (i + 1 for i, m in enumerate(log) if m.id == request.from_message_id), 0
            )
        sent = 0
        fake.open_streams += 1
        record = StreamRecord(
            (request.queue, request.id), context.peer(), request.from_message_id, time.monotonic()
        )
        fake.streams.append(record)
        try:
            assert fake._changed is not None
            while True:
                while position < len(log):
                    if faults.break_after is not None and sent >= faults.break_after:
                        await context.abort(grpc.StatusCode.UNAVAILABLE, "stream broken by test")
                    yield log[position]
                    position += 1
                    sent += 1
                if not request.watch:
                    return
                async with fake._changed:
                    seen = position
                    await fake._changed.wait_for(lambda seen=seen: seen < len(log))
        finally:
            fake.open_streams -= 1
            record.closed = time.monotonic()

    async def Health(self, request: Any, context: Any) -> Any:
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
