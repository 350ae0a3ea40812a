"""The event-to-state rules, as tables, with no I/O."""

from __future__ import annotations

from typing import Any

import pytest
from armada_client.armada import event_pb2

from armada_jobservice._wire import WireState
from armada_jobservice.server.states import Transition, map_event, next_state

S = WireState


def event(kind: str, job_id: str = "j1", **fields: Any) -> Any:
    """An EventMessage with one event of *kind*."""
    message = event_pb2.EventMessage()
    sub = getattr(message, kind)
    sub.job_id = job_id
    for name, value in fields.items():
        if name == "exit_codes":
            sub.exit_codes.update(value)
        elif name == "container_statuses":
            for status in value:
                sub.container_statuses.add(**status)
        else:
            setattr(sub, name, value)
    return message


@pytest.mark.parametrize(
    ("kind", "fields", "state", "error"),
    [
        ("submitted", {}, S.SUBMITTED, None),
        ("running", {}, S.RUNNING, None),
        ("succeeded", {}, S.SUCCEEDED, None),
        ("failed", {"reason": "boom"}, S.FAILED, "boom"),
        ("failed", {}, S.FAILED, "job failed"),
        (
            "failed",
            {"reason": "OOMKilled", "cause": event_pb2.OOM, "exit_codes": {"main": 137, "side": 0}},
            S.FAILED,
            "OOMKilled (cause: OOM; exit codes: main=137)",
        ),
        (
            "failed",
            {"reason": "x", "container_statuses": [{"name": "c", "exitCode": 2}]},
            S.FAILED,
            "x (exit codes: c=2)",
        ),
        ("cancelled", {"reason": "no longer needed"}, S.CANCELLED, "no longer needed"),
        ("cancelled", {"reason": "r", "requestor": "bob"}, S.CANCELLED, "r (by bob)"),
        ("cancelled", {}, S.CANCELLED, "job cancelled"),
        ("preempted", {}, S.FAILED, "preempted"),
        (
            "preempted",
            {"reason": "node drained", "preempting_job_id": "j9", "requestor": "ops"},
            S.FAILED,
            "preempted: node drained (by job j9, requested by ops)",
        ),
        ("lease_returned", {"reason": "pod vanished"}, S.SUBMITTED, None),
        ("lease_expired", {}, S.SUBMITTED, None),
        # Events that do not move the state still make the job known.
        ("queued", {}, None, None),
        ("leased", {}, None, None),
        ("pending", {}, None, None),
        ("reprioritized", {}, None, None),
        ("cancelling", {}, None, None),
        ("utilisation", {}, None, None),
        ("ingress_info", {}, None, None),
        ("preempting", {}, None, None),
    ],
)
def test_map_event(kind: str, fields: dict[str, Any], state: S | None, error: str | None) -> None:
    """Each Armada event kind maps to its state and error text."""
    assert map_event(event(kind, **fields)) == Transition("j1", state, error)


def test_empty_message_names_no_job() -> None:
    """A message without an event, or an event without a job id, is ignored."""
    assert map_event(event_pb2.EventMessage()) is None
    assert map_event(event("running", job_id="")) is None


@pytest.mark.parametrize(
    ("current", "state", "error", "expected"),
    [
        (None, S.SUBMITTED, None, (S.SUBMITTED, None)),
        (None, S.RUNNING, None, (S.RUNNING, None)),
        (None, None, None, (S.SUBMITTED, None)),
        (S.SUBMITTED, None, None, None),
        (S.RUNNING, None, None, None),
        (S.SUBMITTED, S.SUBMITTED, None, None),
        (S.SUBMITTED, S.RUNNING, None, (S.RUNNING, None)),
        (S.RUNNING, S.SUBMITTED, None, (S.SUBMITTED, None)),
        (S.RUNNING, S.FAILED, "why", (S.FAILED, "why")),
        (S.RUNNING, S.SUCCEEDED, None, (S.SUCCEEDED, None)),
        # Terminal states never move, whatever arrives later.
        (S.SUCCEEDED, S.RUNNING, None, None),
        (S.SUCCEEDED, S.FAILED, "late", None),
        (S.FAILED, S.SUCCEEDED, None, None),
        (S.CANCELLED, S.SUBMITTED, None, None),
        (S.CANCELLED, None, None, None),
    ],
)
def test_next_state(
    current: S | None, state: S | None, error: str | None, expected: tuple[S, str | None] | None
) -> None:
    """State moves follow the contract and never leave a terminal state."""
    assert next_state(current, Transition("j", state, error)) == expected


@pytest.mark.parametrize("state", list(S))
def test_terminal_states(state: S) -> None:
    """Exactly FAILED, SUCCEEDED and CANCELLED are terminal."""
    assert state.is_terminal == (state in (S.FAILED, S.SUCCEEDED, S.CANCELLED))


def test_wire_numbers_match_the_contract() -> None:
    """WireState's numbers are those of jobservice.JobServiceResponse.State."""
    from armada_jobservice._gen import jobservice_pb2

    wire = jobservice_pb2.JobServiceResponse.State
    assert {s.name: int(s) for s in S} == {name: wire.Value(name) for name in wire.keys()}  # noqa: SIM118 - an EnumTypeWrapper, not a dict
