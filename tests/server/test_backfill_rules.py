"""The pure rules of backfill, by tables: Armada's states as our answers, catch-up, the budget."""

from __future__ import annotations

import pytest
from armada_client.armada import submit_pb2

from armada_jobservice._wire import WireState
from armada_jobservice.server.backfill_rules import (
    QueryBudget,
    caught_up,
    event_for,
    is_known,
    is_terminal,
)
from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.model import JobSetKey


def answer(state: int, error: str = "", reason: str = "", user: str = "") -> tuple[int, str]:
    """What a poll answers after the event for *state* is applied to an empty cache."""
    js = JobSet(JobSetKey("q", "s"), 0.0)
    message = event_for("j", state, error, reason, user)  # type: ignore[arg-type]
    assert message is not None
    assert js.apply("", message, 0.0)
    assert js.last_message_id is None  # no position: the stream resumes where it was
    return js.lookup("j")


@pytest.mark.parametrize(
    ("state", "wire", "text"),
    [
        (submit_pb2.QUEUED, WireState.SUBMITTED, ""),
        (submit_pb2.SUBMITTED, WireState.SUBMITTED, ""),
        (submit_pb2.LEASED, WireState.SUBMITTED, ""),
        (submit_pb2.PENDING, WireState.SUBMITTED, ""),
        (submit_pb2.RUNNING, WireState.RUNNING, ""),
        (submit_pb2.SUCCEEDED, WireState.SUCCEEDED, ""),
        (submit_pb2.FAILED, WireState.FAILED, "job failed"),
        (submit_pb2.REJECTED, WireState.FAILED, "job rejected by Armada"),
        (submit_pb2.PREEMPTED, WireState.FAILED, "preempted"),
        (submit_pb2.CANCELLED, WireState.CANCELLED, "job cancelled"),
    ],
)
def test_each_armada_state_answers_as_its_events_would(
    state: int, wire: WireState, text: str
) -> None:
    """Armada's JobState maps to the wire state its events give, with their default texts."""
    assert answer(state) == (int(wire), text)
    assert is_known(state)  # type: ignore[arg-type]
    assert is_terminal(state) == wire.is_terminal  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "error", "reason", "user", "text"),
    [
        (submit_pb2.FAILED, "OOMKilled", "", "", "OOMKilled"),
        (submit_pb2.REJECTED, "bad spec", "", "", "bad spec"),
        (submit_pb2.PREEMPTED, "higher priority", "", "", "preempted: higher priority"),
        (submit_pb2.CANCELLED, "", "not needed", "alice", "not needed (by alice)"),
    ],
)
def test_texts_come_from_armadas_errors_and_cancellation(
    state: int, error: str, reason: str, user: str, text: str
) -> None:
    """GetJobErrors' text, or the cancellation's reason and user, become the error text."""
    assert answer(state, error, reason, user)[1] == text


@pytest.mark.parametrize("state", [submit_pb2.UNKNOWN, 99])
def test_unknown_states_say_nothing(state: int) -> None:
    """UNKNOWN, or a state newer than this client, is no answer: the job stays not found."""
    assert not is_known(state)  # type: ignore[arg-type]
    assert event_for("j", state) is None  # type: ignore[arg-type]


def test_a_terminal_state_held_is_not_moved_back_by_a_backfilled_one() -> None:
    """A job the stream ended stays ended whatever the query API said before it."""
    js = JobSet(JobSetKey("q", "s"), 0.0)
    done = event_for("j", submit_pb2.SUCCEEDED)
    running = event_for("j", submit_pb2.RUNNING)
    assert done is not None
    assert running is not None
    js.apply("", done, 0.0)
    assert not js.apply("", running, 0.0)
    assert js.lookup("j") == (int(WireState.SUCCEEDED), "")


@pytest.mark.parametrize(
    ("opened", "last_event", "now", "expected"),
    [
        (None, 0.0, 100.0, False),  # no stream open
        (10.0, 0.0, 11.9, False),  # open, but not for long
        (10.0, 0.0, 12.0, True),  # open and quiet for quiet_s
        (10.0, 11.5, 13.0, False),  # an event came lately
        (10.0, 11.5, 13.5, True),  # and quiet since
        (50.0, 10.0, 51.0, False),  # reopened lately: quiet before it does not count
        (10.0, 69.9, 69.95, False),  # a busy stream, open for less than BUSY_STREAM_S
        (10.0, 69.9, 70.0, True),  # open that long: caught up though never quiet
    ],
)
def test_caught_up(opened: float | None, last_event: float, now: float, expected: bool) -> None:
    """Caught up once open, and without events, for quiet_s (2 s here), or open 60 s."""
    assert caught_up(opened, last_event, now, 2.0) is expected


def test_the_budget_spaces_calls_at_its_rate() -> None:
    """Two calls a second: the first at once, then one per half second, never bunched."""
    budget = QueryBudget(2.0, now=0.0)
    assert budget.delay_s(0.0) == 0.0
    budget.spend(0.0)
    assert budget.delay_s(0.0) == pytest.approx(0.5)
    assert budget.delay_s(0.25) == pytest.approx(0.25)
    assert budget.delay_s(0.5) == 0.0
    budget.spend(0.5)
    assert budget.delay_s(10.0) == 0.0  # an idle minute saves no more than the burst
    budget.spend(10.0)
    assert budget.delay_s(10.0) == pytest.approx(0.5)


def test_a_later_event_moves_a_backfilled_job_on() -> None:
    """A job backfilled as RUNNING ends when its own succeeded event arrives."""
    from armada_jobservice.sim import build_event

    js = JobSet(JobSetKey("q", "s"), 0.0)
    running = event_for("j", submit_pb2.RUNNING)
    assert running is not None
    js.apply("", running, 0.0)
    assert js.apply("00000000000000000007", build_event("succeeded", "q", "s", "j"), 1.0)
    assert js.lookup("j") == (int(WireState.SUCCEEDED), "")
    assert js.last_message_id == "00000000000000000007"
