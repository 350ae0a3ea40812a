"""The cache's ``JobSet.apply`` against the pure rules it must agree with."""

from __future__ import annotations

import random
from typing import Any

import pytest
from armada_client.armada import event_pb2

from armada_jobservice._wire import WireState
from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.states import map_event, next_state

from .test_states import event

KINDS = [f.name for f in event_pb2.EventMessage.DESCRIPTOR.oneofs_by_name["events"].fields]
FIELDS: dict[str, dict[str, Any]] = {
    "failed": {"reason": "OOMKilled", "exit_codes": {"main": 137}},
    "cancelled": {"reason": "by hand", "requestor": "alice"},
    "preempted": {"reason": "priority", "preempting_job_id": "j9"},
}


def reference(messages: list[Any]) -> tuple[dict[str, int], dict[str, str], set[str]]:
    """States, error texts and changed jobs folded with ``map_event`` and ``next_state`` only."""
    states: dict[str, int] = {}
    errors: dict[str, str] = {}
    changed: set[str] = set()
    for message in messages:
        transition = map_event(message)
        if transition is None:
            continue
        current = states.get(transition.job_id)
        change = next_state(None if current is None else WireState(current), transition)
        if change is None:
            continue
        state, error = change
        states[transition.job_id] = int(state)
        if error is None:
            errors.pop(transition.job_id, None)
        else:
            errors[transition.job_id] = error
        changed.add(transition.job_id)
    return states, errors, changed


def test_apply_agrees_with_the_rules_on_random_histories() -> None:
    """Every kind of event, in random orders over a few jobs, gives what the rules give."""
    rng = random.Random(7)
    for _ in range(300):
        messages = []
        for _ in range(rng.randint(1, 12)):
            kind = rng.choice(KINDS)
            job_id = rng.choice(["j1", "j2", "j3", ""])  # "": an event naming no job
            messages.append(event(kind, job_id, **FIELDS.get(kind, {})))
        js = JobSet(JobSetKey("q", "s"), 0.0)
        applied = [js.apply(f"{n}-0", m, 1.0) for n, m in enumerate(messages)]
        states, errors, changed = reference(messages)
        assert (dict(js.states), dict(js.errors), js.changed_jobs) == (states, errors, changed)
        assert js.last_message_id == f"{len(messages) - 1}-0"
        assert any(applied) == bool(changed)


def test_a_terminal_job_never_moves_and_keeps_its_error() -> None:
    """After failed, neither running nor submitted changes the job or clears its text."""
    js = JobSet(JobSetKey("q", "s"), 0.0)
    assert js.apply("1-0", event("failed", reason="boom"), 1.0)
    assert not js.apply("2-0", event("running"), 1.0)
    assert not js.apply("3-0", event("submitted"), 1.0)
    assert js.lookup("j1") == (WireState.FAILED, "boom")


def test_an_event_naming_no_job_only_moves_the_position() -> None:
    """An event without a job id changes no job, yet is the new resume position."""
    js = JobSet(JobSetKey("q", "s"), 0.0)
    assert not js.apply("1-0", event("running", job_id=""), 1.0)
    assert not js.apply("2-0", event_pb2.EventMessage(), 1.0)
    assert (dict(js.states), js.changed_jobs, js.last_message_id) == ({}, set(), "2-0")


@pytest.mark.parametrize(
    ("job", "failing", "refused", "now", "answer"),
    [
        pytest.param("j1", False, False, 100.0, (WireState.RUNNING, ""), id="healthy"),
        pytest.param("j1", True, False, 14.0, (WireState.RUNNING, ""), id="inside-grace"),
        pytest.param("j1", True, False, 16.0, (WireState.CONNECTION_ERR, "down"), id="past-grace"),
        pytest.param("j1", True, True, 10.5, (WireState.CONNECTION_ERR, "down"), id="refused"),
        pytest.param("new", True, False, 16.0, (WireState.CONNECTION_ERR, "down"), id="unseen"),
        pytest.param("new", True, False, 14.0, (WireState.JOB_ID_NOT_FOUND, ""), id="unseen-grace"),
        pytest.param("j2", True, True, 99.0, (WireState.FAILED, "boom"), id="terminal-wins"),
    ],
)
def test_poll_answers_by_the_grace_rules(
    job: str, failing: bool, refused: bool, now: float, answer: tuple[int, str]
) -> None:
    """A failing stream answers CONNECTION_ERR for unfinished jobs past the grace or if refused."""
    js = JobSet(JobSetKey("q", "s"), 0.0)
    js.apply("1-0", event("running", job_id="j1"), 1.0)
    js.apply("2-0", event("failed", job_id="j2", reason="boom"), 1.0)
    if failing:
        js.mark_failing(10.0, "down", refused=refused)
    assert js.poll(job, now, grace_s=5.0) == answer
    assert js.last_poll == now


def test_a_poll_never_moves_the_last_poll_back() -> None:
    """A poll that waited for a load records no earlier time than a poll answered meanwhile."""
    js = JobSet(JobSetKey("q", "s"), 0.0)
    js.poll("j", 5.0, 1.0)
    js.poll("j", 3.0, 1.0)
    js.touch(4.0)
    assert js.last_poll == 5.0


def test_a_failed_write_puts_its_jobs_back_and_a_committed_one_moves_the_position() -> None:
    """take_dirty forgets, restore_dirty remembers again, mark_persisted makes the set clean."""
    js = JobSet(JobSetKey("q", "s"), 0.0)
    js.load("0-0", [], 50.0)
    js.apply("1-0", event("running", job_id="j1"), 1.0)
    rows = js.take_dirty()
    assert rows == [("j1", int(WireState.RUNNING), None)]
    assert not js.is_clean()  # the position moved past what is stored
    js.restore_dirty(r[0] for r in rows)
    assert js.changed_jobs == {"j1"}
    js.take_dirty()
    js.mark_persisted("1-0", 40.0)
    assert js.is_clean()
    assert js.persisted_activity == 50.0  # an older activity time never replaces a newer one
