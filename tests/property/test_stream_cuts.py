"""Streams from Armada cut anywhere, mid-message included, by a TCP proxy in between.

Each example's events are published first, then the proxy is told to cut
the connection after given numbers of bytes from Armada (a cut falls where
it falls: in a frame header, in a gRPC message's length prefix or body).
The service must reconnect each time, resume from the last message it
applied, never from an earlier one nor past one it did not apply, and end
with the answers the pure rules give.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from armada_client.armada import event_pb2
from hypothesis import example, given, settings
from hypothesis import strategies as st

from armada_jobservice import JobState

from ..helpers import unsubscribe_all
from .harness import Running, examples, wait_until
from .strategies import JOB_IDS, KINDS, Known, serialize
from .test_armada_events import expected

Q = "q-cuts"
END = "~end"
_sets = itertools.count()


@pytest.fixture(scope="module")
def cut_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A fake Armada, the cutting proxy in front of it, and the service reading through it."""
    servers = Running(Path(tmp_path_factory.mktemp("cuts")), cut_proxy=True)
    servers.start()
    yield servers
    servers.stop()


def event(kind: str, job_id: str, size: int) -> Known:
    """An event of *kind* about *job_id*; failures carry *size* characters of reason."""
    message = event_pb2.EventMessage()
    getattr(message, kind).job_id = job_id
    if kind in ("failed", "cancelled", "preempted", "cancelling", "lease_returned"):
        getattr(message, kind).reason = "x" * size
    return Known(message)


#: Events with reasons of up to 40 KB, so that most bytes on the wire are message bodies.
events = st.lists(
    st.builds(event, st.sampled_from(KINDS), st.sampled_from(JOB_IDS), st.integers(0, 40_000)),
    min_size=1,
    max_size=8,
)
#: Bytes from Armada before each cut.
cuts = st.lists(st.integers(1, 120_000), min_size=1, max_size=4)


def test_cut_streams_resume_where_they_stopped(cut_servers: Running) -> None:
    """Cut after any number of bytes: no stuck stream, no message skipped, answers by the rules."""
    client, proxy = cut_servers.client, cut_servers.proxy
    assert client is not None
    assert proxy is not None
    armada = cut_servers.armada

    @settings(max_examples=examples(0.5))
    @given(log=events, budgets=cuts, tags=st.lists(st.text(max_size=3), min_size=8, max_size=8))
    # The first cut falls inside the body of a 40 KB message.
    @example(log=[event("failed", "j1", 40_000)], budgets=[20_000], tags=[""] * 8)
    def check(log: list[Known], budgets: list[int], tags: list[str]) -> None:
        job_set = f"set-{next(_sets)}"
        ids = [f"{n}{tags[n]}" for n in range(len(log))]
        for message_id, message in zip(ids, log, strict=False):
            data = serialize(message_id, message)
            cut_servers.call(armada.publish_raw, Q, job_set, message_id, data)
        ids.append(cut_servers.call(armada.publish, Q, job_set, "submitted", END))
        cut_servers.call(proxy.cuts.extend, budgets)
        wait_until(lambda: client.get_job_status(Q, job_set, END).state, JobState.SUBMITTED.__eq__)
        want = expected(list(log))
        got = {j: client.get_job_status(Q, job_set, j) for j in want}
        assert {j: (s.state, s.error) for j, s in got.items()} == want
        # Each stream started at the start or after a message of the log, never going back.
        requests = cut_servers.call(armada.stream_requests, Q, job_set)
        positions = [ids.index(r.from_message_id) if r.from_message_id else -1 for r in requests]
        assert positions == sorted(positions)
        cut_servers.call(proxy.cuts.clear)
        cut_servers.call(unsubscribe_all, cut_servers.app)

    check()
    assert proxy.cut_count > 0
    assert client.health().name == "SERVING"


def test_a_cut_inside_a_message_resumes_after_the_last_whole_one(cut_servers: Running) -> None:
    """Three events applied, a cut in the fourth's body: the next stream resumes after the third."""
    client, proxy, armada = cut_servers.client, cut_servers.proxy, cut_servers.armada
    assert client is not None
    assert proxy is not None
    job_set = f"set-{next(_sets)}"
    ids = [cut_servers.call(armada.publish, Q, job_set, "running", f"j{n}") for n in range(3)]
    wait_until(
        lambda: [client.get_job_status(Q, job_set, f"j{n}").state for n in range(3)],
        lambda states: states == [JobState.RUNNING] * 3,
    )
    cuts_before = proxy.cut_count
    # From here, the fourth message's 60 KB are all that Armada sends: the cut lands in its body.
    cut_servers.call(proxy.cuts.append, 30_000)
    cut_servers.call(armada.publish, Q, job_set, "failed", "j0", reason="x" * 60_000)
    status = wait_until(
        lambda: client.get_job_status(Q, job_set, "j0"), lambda s: s.state == JobState.FAILED
    )
    assert status.error == "x" * 16_384 + f"... ({60_000 - 16_384} characters cut)"
    assert proxy.cut_count == cuts_before + 1
    requests = cut_servers.call(armada.stream_requests, Q, job_set)
    assert [r.from_message_id for r in requests] == ["", ids[-1]]
    cut_servers.call(unsubscribe_all, cut_servers.app)
