"""The wire contract as callers see it: answers per event sequence, input rules, old clients.

These talk to the real service over gRPC with the real client library, except
the old-client tests, which send the bytes an armada-airflow 0.2.x client
sends and read the answer's bytes themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from armada_jobservice import AsyncJobServiceClient, JobState, RPCError
from armada_jobservice.server.app import JobServiceApp

from ..fake_armada import FakeArmada
from ..helpers import eventually

Q, JS = "queue-a", "job-set-1"


async def test_first_poll_answers_not_found_and_subscribes(
    armada: FakeArmada, client: AsyncJobServiceClient
) -> None:
    """A first poll answers JOB_ID_NOT_FOUND at once and opens one watch stream."""
    reply = await client.get_job_status(Q, JS, "job-1")
    assert reply.state == JobState.JOB_ID_NOT_FOUND
    requests = await eventually(lambda: armada.stream_requests(Q, JS))
    assert len(requests) == 1
    assert requests[0].watch is True
    assert requests[0].from_message_id == ""


@pytest.mark.parametrize(
    ("events", "state", "error"),
    [
        ([("submitted", {})], JobState.SUBMITTED, ""),
        ([("submitted", {}), ("queued", {}), ("leased", {})], JobState.SUBMITTED, ""),
        ([("submitted", {}), ("running", {})], JobState.RUNNING, ""),
        ([("submitted", {}), ("running", {}), ("succeeded", {})], JobState.SUCCEEDED, ""),
        (
            [("submitted", {}), ("failed", {"reason": "OOMKilled", "exit_codes": {"main": 137}})],
            JobState.FAILED,
            "OOMKilled (exit codes: main=137)",
        ),
        (
            [("submitted", {}), ("cancelled", {"reason": "user asked", "requestor": "alice"})],
            JobState.CANCELLED,
            "user asked (by alice)",
        ),
        (
            [("submitted", {}), ("running", {}), ("preempted", {"reason": "higher priority"})],
            JobState.FAILED,
            "preempted: higher priority",
        ),
        # A terminal state stays put whatever comes later.
        (
            [("succeeded", {}), ("running", {}), ("failed", {"reason": "late"})],
            JobState.SUCCEEDED,
            "",
        ),
    ],
)
async def test_every_state_reaches_the_poller(
    armada: FakeArmada,
    client: AsyncJobServiceClient,
    events: list[tuple[str, dict[str, Any]]],
    state: JobState,
    error: str,
) -> None:
    """Each event sequence ends in the state (and error text) the contract names."""
    await client.get_job_status(Q, JS, "job-1")
    for kind, fields in events:
        armada.publish(Q, JS, kind, "job-1", **fields)
    reply = await eventually(
        lambda: client.get_job_status(Q, JS, "job-1"),
        lambda r: r.state == state and r.error == error,
    )
    assert (reply.state, reply.error) == (state, error)


async def test_jobs_nobody_asked_about_are_cached(
    armada: FakeArmada, client: AsyncJobServiceClient
) -> None:
    """Every job of a subscribed set is cached, also those never polled before."""
    await client.get_job_status(Q, JS, "job-1")
    for n in range(20):
        armada.publish(Q, JS, "submitted", f"other-{n}")
    armada.publish(Q, JS, "running", "other-19")
    reply = await eventually(
        lambda: client.get_job_status(Q, JS, "other-19"), lambda r: r.state == JobState.RUNNING
    )
    assert reply.state == JobState.RUNNING
    assert (await client.get_job_status(Q, JS, "other-0")).state == JobState.SUBMITTED


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("queue", "", "queue must not be empty"),
        ("job_set_id", "", "job_set_id must not be empty"),
        ("job_id", "", "job_id must not be empty"),
        ("job_id", "x" * 1025, "job_id is longer than 1024"),
        ("queue", "q" * 5000, "queue is longer than 1024"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    client: AsyncJobServiceClient, field: str, value: str, message: str
) -> None:
    """Empty or over-long ids are INVALID_ARGUMENT with a message naming the field."""
    request = {"queue": Q, "job_set_id": JS, "job_id": "job-1", field: value}
    with pytest.raises(RPCError) as info:
        await client.get_job_status(**request)
    assert info.value.code == "INVALID_ARGUMENT"
    assert message in info.value.details


async def test_longest_allowed_ids_are_answered(client: AsyncJobServiceClient) -> None:
    """Ids at every limit are accepted: 1,024 characters, 512 bytes of job id, 1,536 of key."""
    for ids in (("q" * 1024, "s" * 512, "j" * 512), ("q" * 768, "s" * 768, "€" * 170 + "jj")):
        reply = await client.get_job_status(*ids)
        assert reply.state == JobState.JOB_ID_NOT_FOUND


# -- old clients, byte for byte ---------------------------------------------
# The messages of jobservice-contract.md, encoded by hand as protobuf's wire
# format has it (tag = field number << 3 | wire type; 0 varint, 2 bytes), so
# these tests hold even if today's generated code drifted from the contract.

# Wire states of the contract, retyped on purpose: they are what old clients compiled in.
OLD_FAILED, OLD_JOB_ID_NOT_FOUND = 3, 6
OLD_SERVING = 1


def varint(n: int) -> bytes:
    """*n* as a protobuf base-128 varint."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def old_job_service_request(job_id: str, job_set_id: str, queue: str) -> bytes:
    """``JobServiceRequest {job_id = 1; job_set_id = 2; queue = 3}`` as an old client encodes it."""
    out = b""
    for number, text in ((1, job_id), (2, job_set_id), (3, queue)):
        data = text.encode()
        out += varint(number << 3 | 2) + varint(len(data)) + data
    return out


def decode_fields(data: bytes) -> dict[int, int | bytes]:
    """The varint and length-delimited fields of a protobuf message, by field number."""
    fields: dict[int, int | bytes] = {}
    pos = 0

    def read_varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        tag = read_varint()
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            fields[number] = read_varint()
        elif wire_type == 2:
            length = read_varint()
            fields[number] = data[pos : pos + length]
            pos += length
        else:
            raise AssertionError(f"wire type {wire_type} is not in the contract's messages")
    return fields


def old_call(channel: grpc.aio.Channel, method: str) -> Any:
    """A unary call that sends and returns raw bytes (no generated code on either side)."""
    return channel.unary_unary(f"/jobservice.JobService/{method}")


def test_hand_encoding_matches_a_known_message() -> None:
    """The hand encoder produces the bytes protobuf defines for a small request."""
    assert old_job_service_request("a", "b", "c") == b"\x0a\x01a\x12\x01b\x1a\x01c"
    assert decode_fields(b"\x08\x03\x12\x04boom") == {1: 3, 2: b"boom"}


async def test_old_client_request_bytes_are_answered(
    armada: FakeArmada,
    service: JobServiceApp,
    open_channel: Callable[[JobServiceApp], grpc.aio.Channel],
) -> None:
    """An old client's raw GetJobStatus bytes get answers whose raw bytes follow the contract."""
    call = old_call(open_channel(service), "GetJobStatus")
    request = old_job_service_request(job_id="job-1", job_set_id=JS, queue=Q)
    first = decode_fields(await call(request, timeout=10))
    assert first == {1: OLD_JOB_ID_NOT_FOUND}  # proto3 leaves out the empty error
    armada.publish(Q, JS, "submitted", "job-1")
    # SUBMITTED is 0, the default, so its answer is the empty message.
    await eventually(lambda: call(request, timeout=10), lambda raw: decode_fields(raw) == {})
    armada.publish(Q, JS, "failed", "job-1", reason="bad input")
    failed = await eventually(
        lambda: call(request, timeout=10), lambda raw: decode_fields(raw).get(1) == OLD_FAILED
    )
    assert decode_fields(failed) == {1: OLD_FAILED, 2: b"bad input"}


async def test_old_client_health_bytes_are_answered(
    service: JobServiceApp, open_channel: Callable[[JobServiceApp], grpc.aio.Channel]
) -> None:
    """An old client's Health call (an empty ``google.protobuf.Empty``) is answered SERVING."""
    answer = await old_call(open_channel(service), "Health")(b"", timeout=10)
    assert decode_fields(answer) == {1: OLD_SERVING}
