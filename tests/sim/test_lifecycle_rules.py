"""Pure rules of the simulator: job plans from annotations, state moves, message ids."""

from __future__ import annotations

import random

import pytest

from armada_jobservice.sim import JobPhase, Mix, Outcome, PlanError
from armada_jobservice.sim.eventlog import MessageIdError, format_message_id, parse_message_id
from armada_jobservice.sim.lifecycle import plan_job, state_after


def _plan(annotations: dict[str, str], mix: Mix | None = None, seed: int = 1):  # type: ignore[no-untyped-def]
    return plan_job(annotations, mix or Mix(), random.Random(seed))


@pytest.mark.parametrize(
    ("annotations", "field", "expected"),
    [
        ({"armada-sim/outcome": "failed"}, "outcome", Outcome.FAILED),
        ({"armada-sim/outcome": "Preempted"}, "outcome", Outcome.PREEMPTED),
        ({"armada-sim/outcome": "cancelled"}, "outcome", Outcome.CANCELLED),
        ({"armada-sim/run-seconds": "12.5"}, "run_s", 12.5),
        ({"armada-sim/queue-seconds": "0"}, "queue_s", 0.0),
        ({"armada-sim/pending-seconds": "3"}, "pending_s", 3.0),
        ({"armada-sim/lease-returns": "2"}, "lease_returns", 2),
        ({"armada-sim/exit-code": "137"}, "exit_code", 137),
        ({"armada-sim/failure-cause": "oom"}, "failure_cause", "oom"),
        ({"armada-sim/failure-reason": "disk full"}, "failure_reason", "disk full"),
        ({"armada-sim/preemption-reason": "x"}, "preemption_reason", "x"),
        ({"armada-sim/hold-at": "running"}, "hold_at", JobPhase.RUNNING),
    ],
)
def test_annotations_set_the_plan(
    annotations: dict[str, str], field: str, expected: object
) -> None:
    """Each documented annotation sets its part of the plan."""
    assert getattr(_plan(annotations), field) == expected


@pytest.mark.parametrize(
    "annotations",
    [
        {"armada-sim/outcome": "exploded"},
        {"armada-sim/run-seconds": "soon"},
        {"armada-sim/run-seconds": "-1"},
        {"armada-sim/exit-code": "1.5"},
        {"armada-sim/lease-returns": "-1"},
        {"armada-sim/failure-cause": "Gremlins"},
        {"armada-sim/hold-at": "succeeded"},
        {"armada-sim/typo": "1"},
    ],
)
def test_bad_annotations_are_rejected(annotations: dict[str, str]) -> None:
    """A malformed or unknown simulator annotation raises PlanError naming it."""
    with pytest.raises(PlanError, match="armada-sim/"):
        _plan(annotations)


def test_foreign_annotations_are_ignored() -> None:
    """Annotations outside the armada-sim/ prefix do not affect the plan."""
    assert _plan({"team": "a", "armada/whatever": "1"}) == _plan({})


def test_a_scripted_failure_reason_defaults_to_exit_code_1() -> None:
    """A failure reason without an exit code comes with exit code 1 and cause Error."""
    plan = _plan({"armada-sim/failure-reason": "boom"})
    assert (plan.exit_code, plan.failure_cause) == (1, "Error")


def test_the_mix_is_repeatable_for_a_seed() -> None:
    """The same seed draws the same outcomes; the ratios are roughly honoured."""
    mix = Mix(fail_ratio=0.25, preempt_ratio=0.25)
    rng_a, rng_b = random.Random(3), random.Random(3)
    a = [plan_job({}, mix, rng_a).outcome for _ in range(400)]
    b = [plan_job({}, mix, rng_b).outcome for _ in range(400)]
    assert a == b
    assert 60 < a.count(Outcome.FAILED) < 140
    assert 60 < a.count(Outcome.PREEMPTED) < 140


def test_annotations_do_not_shift_the_mix_of_later_jobs() -> None:
    """A scripted job consumes the rng like an unscripted one."""
    mix = Mix(fail_ratio=0.5)
    rng_a, rng_b = random.Random(5), random.Random(5)
    plan_job({}, mix, rng_a)
    plan_job({"armada-sim/outcome": "succeeded", "armada-sim/run-seconds": "1"}, mix, rng_b)
    assert plan_job({}, mix, rng_a) == plan_job({}, mix, rng_b)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fail_ratio": 1.5},
        {"fail_ratio": 0.6, "cancel_ratio": 0.6},
        {"run_s": (2.0, 1.0)},
        {"queue_s": (-1.0, 1.0)},
    ],
)
def test_impossible_mixes_are_rejected(kwargs: dict[str, object]) -> None:
    """Ratios outside [0, 1], outcome ratios above 1 and inverted ranges are errors."""
    with pytest.raises(ValueError, match="must"):
        Mix(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("current", "event", "expected"),
    [
        (None, "submitted", JobPhase.SUBMITTED),
        (JobPhase.SUBMITTED, "queued", JobPhase.QUEUED),
        (JobPhase.QUEUED, "leased", JobPhase.LEASED),
        (JobPhase.LEASED, "lease_returned", JobPhase.QUEUED),
        (JobPhase.LEASED, "pending", JobPhase.PENDING),
        (JobPhase.PENDING, "running", JobPhase.RUNNING),
        (JobPhase.RUNNING, "cancelling", JobPhase.RUNNING),
        (JobPhase.RUNNING, "utilisation", JobPhase.RUNNING),
        (JobPhase.RUNNING, "succeeded", JobPhase.SUCCEEDED),
        (JobPhase.RUNNING, "failed", JobPhase.FAILED),
        (JobPhase.RUNNING, "preempted", JobPhase.PREEMPTED),
        (JobPhase.RUNNING, "cancelled", JobPhase.CANCELLED),
        (JobPhase.SUCCEEDED, "running", JobPhase.SUCCEEDED),
        (JobPhase.CANCELLED, "failed", JobPhase.CANCELLED),
    ],
)
def test_state_after_event(current: JobPhase | None, event: str, expected: JobPhase) -> None:
    """Events move the state as Armada's do, and terminal states are final."""
    assert state_after(current, event) is expected


def test_message_ids_increase_as_strings_and_round_trip() -> None:
    """Ids are fixed width, so string order is log order; parsing gives the position back."""
    ids = [format_message_id(n) for n in (1, 2, 9, 10, 99, 100, 12345)]
    assert ids == sorted(ids)
    assert [parse_message_id(i) for i in ids] == [1, 2, 9, 10, 99, 100, 12345]
    assert parse_message_id("") == 0


@pytest.mark.parametrize("bad", ["12", "abc", "1-0", " " * 20, "0" * 21])
def test_foreign_message_ids_are_rejected(bad: str) -> None:
    """An id the simulator never handed out raises MessageIdError."""
    with pytest.raises(MessageIdError):
        parse_message_id(bad)
