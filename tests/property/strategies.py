"""Hypothesis strategies: request fields, and what Armada may send.

The request limits are the documented ones (README: empty, or longer than
1,024 characters, is INVALID_ARGUMENT); they are written here again rather
than imported, so that a change of the service's constant fails the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from armada_client.armada import event_pb2
from google.protobuf import timestamp_pb2
from hypothesis import strategies as st

#: The longest queue, job set id or job id a caller may send, in characters.
LIMIT = 1024
#: UTF-8 bytes a job id, and a queue and job set id together, may take.
JOB_ID_BYTES, JOB_SET_KEY_BYTES = 512, 1536
FIELDS = ("queue", "job_set_id", "job_id")

#: Characters of 1 to 4 UTF-8 bytes, blanks and invisibles among them.
WIDE = ["a", "Z", "é", "€", "中", "😀", "\U0010fffd", " ", "\t", "\n", "\u200b", "\ufeff"]


def expected_problem(queue: str, job_set_id: str, job_id: str) -> str | None:
    """The first field a request is refused for, by the documented rules, or None."""
    for name, value in zip(FIELDS, (queue, job_set_id, job_id), strict=True):
        if not value or len(value) > LIMIT or "\x00" in value:
            return name
    if len(job_id.encode()) > JOB_ID_BYTES:
        return "job_id"
    if len(queue.encode()) + len(job_set_id.encode()) > JOB_SET_KEY_BYTES:
        return "queue"
    return None


@st.composite
def near_limit(draw: st.DrawFn) -> str:
    """A string of exactly LIMIT - 1, LIMIT or LIMIT + 1 characters, wide ones included."""
    length = draw(st.integers(LIMIT - 1, LIMIT + 1))
    head = draw(st.text(max_size=8))[:length]
    fill = draw(st.sampled_from(WIDE))
    return head + fill * (length - len(head))


#: Any queue, job set or job id a caller might send, valid or not.
ids = st.one_of(
    st.text(min_size=1, max_size=30),
    st.text(alphabet=st.sampled_from(WIDE), min_size=1, max_size=10),
    st.sampled_from(["", " ", "\t\n", "\x00", "a\x00b", "\x00" * 3, "\u0000x", "ok"]),
    st.text(max_size=5).map(lambda s: s + "\x00"),
    near_limit(),
)

#: Valid UTF-8 of an id, invalid UTF-8 (lone surrogates, stray bytes), or any bytes.
raw_ids = st.one_of(
    ids.map(lambda s: s.encode()),
    st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=3).map(
        lambda s: s.encode("utf-8", "surrogatepass")
    ),
    st.tuples(st.text(max_size=4), st.text(alphabet=st.characters(categories=["Cs"]))).map(
        lambda t: (t[0] + t[1] + "x").encode("utf-8", "surrogatepass")
    ),
    st.binary(min_size=1, max_size=12),
)


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint of *n*."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (strings, bytes, messages)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def raw_request(queue: bytes, job_set_id: bytes, job_id: bytes) -> bytes:
    """A serialized ``JobServiceRequest`` built by hand: its strings need not be UTF-8."""
    return field(1, job_id) + field(2, job_set_id) + field(3, queue)


# -- what Armada sends ---------------------------------------------------------

_ONEOF = event_pb2.EventMessage.DESCRIPTOR.oneofs_by_name["events"]
#: Every event kind of the proto, terminal or not, stateful or ignored.
KINDS = [f.name for f in _ONEOF.fields]
_NUMBER_OF_KIND = {f.name: f.number for f in _ONEOF.fields}
_KNOWN_NUMBERS = {f.number for f in event_pb2.EventMessage.DESCRIPTOR.fields}
#: Field numbers of ``EventMessage`` no proto version we have defines: newer event kinds.
UNKNOWN_KINDS = sorted({*range(1, 30), 1000, 2**29 - 1} - _KNOWN_NUMBERS)
#: Job ids the events name; "" is an event naming no job.
JOB_IDS = ["j1", "j2", "jé😀", " ", ""]

MiB = 1024 * 1024
#: Error texts: short, unicode, with NUL, and huge (MBs: Armada accepts up to 64 MiB).
reasons = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "a\x00b", "\x00"]),
    st.sampled_from([MiB // 2, 3 * MiB, 5 * MiB]).map(lambda n: "r" * n),
)


@dataclass(frozen=True)
class Raw:
    """An ``EventMessage`` only as bytes: with a kind or a field our proto does not define."""

    data: bytes
    what: str


class Known:
    """An ``EventMessage`` of our proto, with a repr short enough to read when a property fails."""

    def __init__(self, message: Any) -> None:
        self.message = message

    def __repr__(self) -> str:
        text = " ".join(str(self.message).split())
        return f"Known({text[:200]}{'...' if len(text) > 200 else ''})"


@st.composite
def known_event(draw: st.DrawFn) -> Known:
    """An ``EventMessage`` of any kind the proto defines, fields present or missing."""
    kind = draw(st.sampled_from(KINDS))
    message = event_pb2.EventMessage()
    event = getattr(message, kind)
    event.SetInParent()
    job_id = draw(st.sampled_from(JOB_IDS))
    if job_id:
        event.job_id = job_id
    if draw(st.booleans()):
        event.queue, event.job_set_id = "q", "whatever"
    if hasattr(event, "created") and draw(st.booleans()):
        event.created.CopyFrom(timestamp_pb2.Timestamp(seconds=draw(st.integers(0, 2**33))))
    if kind in ("failed", "cancelled", "cancelling", "preempted", "lease_returned"):
        event.reason = draw(reasons)
    if kind == "failed":
        # Values past the enum's end are what a newer Armada may send.
        event.cause = draw(st.integers(0, 12))
        for name, code in draw(st.dictionaries(st.text(max_size=5), st.integers(-3, 300))).items():
            event.exit_codes[name] = code
    if kind in ("cancelled", "preempted") and draw(st.booleans()):
        event.requestor = draw(st.text(max_size=10))
    if kind == "preempted" and draw(st.booleans()):
        event.preempting_job_id = draw(st.text(max_size=10))
    return Known(message)


@st.composite
def raw_event(draw: st.DrawFn) -> Raw:
    """An ``EventMessage`` our proto cannot build: an unknown kind, or unknown fields."""
    job = field(1, draw(st.sampled_from(JOB_IDS)).encode())
    choice = draw(st.sampled_from(["unknown kind", "unknown field", "empty"]))
    if choice == "unknown kind":
        return Raw(field(draw(st.sampled_from(UNKNOWN_KINDS)), job), choice)
    if choice == "unknown field":
        kind = _NUMBER_OF_KIND[draw(st.sampled_from(KINDS))]
        extra = field(draw(st.integers(40, 99)), draw(st.binary(max_size=8)))
        return Raw(field(kind, job + extra) + extra, choice)
    return Raw(b"", choice)


#: One message of a stream: a known event, raw bytes, or no ``message`` field at all.
stream_messages = st.one_of(known_event(), known_event(), raw_event(), st.just(None))


def serialize(message_id: str, message: Any) -> bytes:
    """The bytes of one ``EventStreamMessage`` (``message`` None: the field left out)."""
    head = event_pb2.EventStreamMessage(id=message_id).SerializeToString()
    if message is None:
        return head
    body = message.data if isinstance(message, Raw) else message.message.SerializeToString()
    return head + field(2, body)


def parse(message: Any) -> Any:
    """The ``EventMessage`` a protobuf library makes of one generated message."""
    if message is None:
        return event_pb2.EventMessage()
    if isinstance(message, Raw):
        return event_pb2.EventMessage.FromString(message.data)
    return message.message
