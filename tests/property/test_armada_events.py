"""What Armada sends, generated: every answer is what the pure rules make of the valid events.

Streams mix every event kind with kinds and fields our proto does not know,
messages with fields missing or no event at all, huge error texts, events
after a terminal one and message ids in no particular order. Each example
reads a job set of its own from the fake Armada, over the real stream, and
ends with a marker event: once a poll sees it, every event before it has
been applied, so the answers are compared with the rules exactly, not
eventually.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from armada_jobservice import JobState
from armada_jobservice._wire import TERMINAL_STATES, WireState

from ..helpers import unsubscribe_all
from ..server.test_cache import reference
from .harness import Running, examples, wait_until
from .strategies import JOB_IDS, parse, serialize, stream_messages

Q = "q-events"
END = "~end"
#: The longest error text an answer may carry (characters), whatever Armada sent.
MAX_ANSWER_ERROR = 17_000
_sets = itertools.count()


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[tuple[str, Any]], int]:
    """Messages with unique ids in no order, and how many are published before the first poll."""
    messages = draw(st.lists(stream_messages, max_size=10))
    prefixes = draw(st.lists(st.text(max_size=6), min_size=len(messages), max_size=len(messages)))
    ids = [f"{prefix}#{n}" for n, prefix in enumerate(prefixes)]
    return list(zip(ids, messages, strict=True)), draw(st.integers(0, len(messages)))


def publish(servers: Running, job_set: str, message_id: str, message: Any) -> None:
    """Append one message to the job set's log, as bytes."""
    data = serialize(message_id, message)
    servers.call(servers.armada.publish_raw, Q, job_set, message_id, data)


def expected(messages: list[Any]) -> dict[str, tuple[JobState, str]]:
    """The answer for each job id the events name, by ``map_event`` and ``next_state``."""
    states, errors, _ = reference([parse(m) for m in messages])
    answers = {}
    for job_id in filter(None, JOB_IDS):
        state = WireState(states.get(job_id, WireState.JOB_ID_NOT_FOUND))
        answers[job_id] = (JobState(state.name), errors.get(job_id, ""))
    return answers


def terminal_jobs(messages: list[Any]) -> set[str]:
    """The job ids that a succeeded, failed, cancelled or preempted event names."""
    named = set()
    for message in map(parse, messages):
        kind = message.WhichOneof("events")
        if kind in ("succeeded", "failed", "cancelled", "preempted"):
            named.add(getattr(message, kind).job_id)
    return named - {""}


def test_answers_follow_the_rules_whatever_armada_sends(running: Running) -> None:
    """Unknown kinds ignored, missing fields tolerated, terminal states kept, answers bounded."""
    client = running.client
    assert client is not None
    assert running.app is not None

    @settings(max_examples=examples(3))
    @given(stream=streams())
    def check(stream: tuple[list[tuple[str, Any]], int]) -> None:
        log, before = stream
        job_set = f"set-{next(_sets)}"
        for message_id, message in log[:before]:
            publish(running, job_set, message_id, message)
        client.get_job_status(Q, job_set, "j1")
        for message_id, message in log[before:]:
            publish(running, job_set, message_id, message)
        running.call(running.armada.publish, Q, job_set, "submitted", END)
        wait_until(lambda: client.get_job_status(Q, job_set, END).state, JobState.SUBMITTED.__eq__)
        want = expected([m for _, m in log])
        got = {}
        for job_id in want:
            status = client.get_job_status(Q, job_set, job_id)
            size = len(status.error)
            assert size <= MAX_ANSWER_ERROR, f"{job_id} answered {size} characters of error"
            got[job_id] = (status.state, status.error)
        assert got == want
        for job_id, (state, _) in want.items():
            named_terminal = any(
                (t := parse(m).WhichOneof("events"))
                in ("succeeded", "failed", "cancelled", "preempted")
                and getattr(parse(m), t).job_id == job_id
                for _, m in log
            )
            if named_terminal:
                assert WireState[state.name] in TERMINAL_STATES
        running.call(unsubscribe_all, running.app)

    check()
    assert client.health().name == "SERVING"
