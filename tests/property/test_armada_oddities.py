"""Single cases of what Armada may send that the generated streams leave out.

A message the service cannot parse at all (bytes that are not UTF-8 where
protobuf wants a string, or larger than the 64 MiB the channel accepts)
breaks the stream at the same place each time it is re-opened: the job set
stops moving, and after ``connection_error_grace_s`` its unfinished jobs
answer CONNECTION_ERR with the reason. The service, and every other job set,
carries on.
"""

from __future__ import annotations

from armada_jobservice import AsyncJobServiceClient, JobState

from ..fake_armada import FakeArmada
from ..helpers import Connect, Serve, eventually, metric
from .strategies import UNKNOWN_KINDS, MiB, field

Q = "queue-a"
#: The longest error text kept (characters), as documented.
MAX_ERROR_LENGTH = 16_384


async def settled(armada: FakeArmada, client: AsyncJobServiceClient, job_set: str) -> None:
    """Publish a marker event and wait for it: every event before it has been applied."""
    armada.publish(Q, job_set, "submitted", "end")
    await eventually(
        lambda: client.get_job_status(Q, job_set, "end"), lambda s: s.state == JobState.SUBMITTED
    )


async def test_a_cause_the_enum_does_not_name_still_fails_the_job(
    armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """A failed event whose cause is newer than our proto: FAILED, with the cause's number."""
    client = connect(await serve())
    await client.get_job_status(Q, "s", "j1")
    armada.publish(Q, "s", "running", "j1")
    armada.publish(Q, "s", "failed", "j1", reason="boom", cause=77)
    await settled(armada, client, "s")
    status = await client.get_job_status(Q, "s", "j1")
    assert (status.state, status.error) == (JobState.FAILED, "boom (cause: 77)")


async def test_an_error_text_of_megabytes_reaches_the_poller_cut(
    armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """5 MiB of failure reason (over a client's 4 MiB limit): FAILED, the text cut, no error."""
    client = connect(await serve())
    await client.get_job_status(Q, "s", "j1")
    armada.publish(Q, "s", "failed", "j1", reason="r" * (5 * MiB))
    await settled(armada, client, "s")
    status = await client.get_job_status(Q, "s", "j1")
    assert status.state == JobState.FAILED
    assert (
        status.error
        == "r" * MAX_ERROR_LENGTH + f"... ({5 * MiB - MAX_ERROR_LENGTH} characters cut)"
    )


async def test_unknown_event_kinds_are_counted_and_change_nothing(
    armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """Kinds our proto lacks are received (counted) and change no job; later events apply."""
    app = await serve()
    client = connect(app)
    await client.get_job_status(Q, "s", "j1")
    armada.publish(Q, "s", "running", "j1")
    for n, number in enumerate(UNKNOWN_KINDS):
        body = field(2, field(number, field(1, b"j1")))
        armada.publish_raw(Q, "s", f"u{n}", field(1, f"u{n}".encode()) + body)
    await settled(armada, client, "s")
    assert (await client.get_job_status(Q, "s", "j1")).state == JobState.RUNNING
    assert metric(app, "armada_jobservice_events_received_total") == len(UNKNOWN_KINDS) + 2
    assert metric(app, "armada_jobservice_events_applied_total") == 2


async def _stuck_on(
    armada: FakeArmada, serve: Serve, connect: Connect, data: bytes, why: str
) -> None:
    """*data* after a running event: its job set stalls and answers CONNECTION_ERR; others go on."""
    app = await serve(connection_error_grace_s=0.2, reconnect_max_backoff_s=1.0)
    client = connect(app)
    await client.get_job_status(Q, "stuck", "j1")
    await client.get_job_status(Q, "fine", "j1")
    armada.publish(Q, "stuck", "running", "j1")
    armada.publish_raw(Q, "stuck", "2-0", data)
    armada.publish(Q, "stuck", "succeeded", "j1")
    status = await eventually(
        lambda: client.get_job_status(Q, "stuck", "j1"),
        lambda s: s.state == JobState.CONNECTION_ERR,
    )
    assert why in status.error
    # Every re-opened stream resumes after the last message applied, never past the bad one.
    resumed = await eventually(lambda: armada.stream_requests(Q, "stuck")[1:])
    assert {r.from_message_id for r in resumed} == {armada.logs[(Q, "stuck")][0].id}
    armada.publish(Q, "fine", "succeeded", "j1")
    await eventually(
        lambda: client.get_job_status(Q, "fine", "j1"), lambda s: s.state == JobState.SUCCEEDED
    )
    assert (await client.health()).name == "SERVING"


async def test_a_message_that_is_not_utf8_stalls_only_its_job_set(
    armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """A job id of bytes that are not UTF-8 (no Go Armada sends it): that job set stalls."""
    data = field(1, b"2-0") + field(2, field(1, field(1, b"\xff\xfe")))
    await _stuck_on(armada, serve, connect, data, "cannot be parsed")


async def test_a_message_over_64_mib_stalls_only_its_job_set(
    armada: FakeArmada, serve: Serve, connect: Connect
) -> None:
    """A message larger than the channel's 64 MiB limit: that job set stalls, naming the limit."""
    data = field(1, b"2-0") + field(2, field(9, field(1, b"j1") + field(6, b"r" * (65 * MiB))))
    await _stuck_on(armada, serve, connect, data, "RESOURCE_EXHAUSTED")
