"""The checker's rules, judged on scripted truths and answers without any I/O."""

from __future__ import annotations

import pytest

from armada_jobservice._types import JobState
from armada_jobservice.chaos.truth import Checker, Rule, Snapshot, Truth
from armada_jobservice.sim import build_event
from armada_jobservice.sim.eventlog import JobSetLog

Q, JS, JOB = "q", "set", "job-1"
KEY = (Q, JS, JOB)
S = JobState


def _checker(*kinds: str) -> tuple[Checker, JobSetLog]:
    log = JobSetLog(Q, JS)
    for kind in kinds:
        log.append(build_event(kind, Q, JS, JOB))
    truth = Truth()
    truth.catch_up(log)
    return Checker(truth), log


def _rules(checker: Checker) -> list[Rule]:
    return [v.rule for v in checker.violations]


@pytest.mark.parametrize(
    ("events", "answer", "broken"),
    [
        (("submitted",), S.SUBMITTED, []),
        (("submitted",), S.RUNNING, [Rule.UNREACHED]),
        (("submitted", "queued", "leased", "pending"), S.SUBMITTED, []),
        (("submitted", "queued", "leased", "running"), S.SUBMITTED, []),
        (("submitted", "running"), S.SUCCEEDED, [Rule.UNREACHED]),
        (("submitted", "running", "succeeded"), S.SUCCEEDED, []),
        (("submitted", "running", "preempted"), S.FAILED, []),
        (("submitted", "running", "cancelled"), S.FAILED, [Rule.UNREACHED]),
        ((), S.JOB_ID_NOT_FOUND, []),
        (("submitted",), S.CONNECTION_ERR, []),
        (("submitted",), S.DUPLICATE_FOUND, [Rule.UNREACHED]),
        ((), S.SUBMITTED, [Rule.UNREACHED]),
    ],
)
def test_an_answer_names_only_a_state_the_job_has_reached(
    events: tuple[str, ...], answer: JobState, broken: list[Rule]
) -> None:
    """Older states are fine, states ahead of the truth are not."""
    checker, _ = _checker(*events)
    checker.answer(KEY, answer, 0, 1, 1.0)
    assert _rules(checker) == broken


@pytest.mark.parametrize(
    ("replica", "later", "broken", "lag"),
    [
        (0, S.SUCCEEDED, [], 0),
        (0, S.RUNNING, [Rule.TERMINAL_CHANGED], 0),
        (0, S.JOB_ID_NOT_FOUND, [Rule.TERMINAL_CHANGED], 0),
        (0, S.CONNECTION_ERR, [Rule.TERMINAL_CHANGED], 0),
        (1, S.SUCCEEDED, [], 0),
        (1, S.FAILED, [Rule.TERMINAL_CHANGED, Rule.UNREACHED][::-1], 0),
        # Another replica that follows the owner's flushes may still be behind.
        (1, S.RUNNING, [], 1),
    ],
)
def test_a_terminal_answer_never_changes(
    replica: int, later: JobState, broken: list[Rule], lag: int
) -> None:
    """After SUCCEEDED a replica answers nothing else; another answers no other end."""
    checker, _ = _checker("submitted", "running", "succeeded")
    checker.answer(KEY, S.SUCCEEDED, 0, 1, 1.0)
    checker.answer(KEY, later, replica, 1, 2.0)
    assert _rules(checker) == broken
    assert checker.follower_lag_answers == lag


def test_a_terminal_answer_only_in_memory_may_be_lost_to_a_kill_9_and_is_counted() -> None:
    """The database held RUNNING when the process died: RUNNING again is not judged a change."""
    checker, _ = _checker("submitted", "running", "succeeded")
    checker.answer(KEY, S.SUCCEEDED, 0, 1, 1.0)
    checker.crashed(0, 2, Snapshot({KEY: S.RUNNING}, {}), lost=True)
    checker.answer(KEY, S.RUNNING, 0, 2, 2.0)
    assert _rules(checker) == []
    assert checker.terminal_answers_lost == 1


def test_after_a_graceful_stop_a_terminal_answer_stays() -> None:
    """SIGTERM flushes: the flushed terminal state is the floor."""
    checker, _ = _checker("submitted", "running", "succeeded")
    checker.answer(KEY, S.SUCCEEDED, 0, 1, 1.0)
    checker.crashed(0, 2, Snapshot({KEY: S.SUCCEEDED}, {}), lost=False)
    checker.answer(KEY, S.RUNNING, 0, 2, 2.0)
    assert _rules(checker) == [Rule.OLDER_THAN_FLUSHED, Rule.TERMINAL_CHANGED]


@pytest.mark.parametrize(
    ("incarnation", "answer", "broken"),
    [
        (2, S.RUNNING, []),
        (2, S.SUCCEEDED, []),
        (2, S.SUBMITTED, [Rule.OLDER_THAN_FLUSHED]),
        (2, S.JOB_ID_NOT_FOUND, [Rule.OLDER_THAN_FLUSHED]),
        # Names no state: a new process that cannot read the database says so.
        (2, S.CONNECTION_ERR, []),
        # Asked of the incarnation that died, before it died: not judged by the floor.
        (1, S.SUBMITTED, []),
    ],
)
def test_no_answer_after_a_restart_is_older_than_what_was_flushed(
    incarnation: int, answer: JobState, broken: list[Rule]
) -> None:
    """RUNNING was flushed before the crash, so the next incarnation answers at least that."""
    checker, _ = _checker("submitted", "running", "succeeded")
    checker.crashed(0, 2, Snapshot({KEY: S.RUNNING}, {}), lost=True)
    checker.answer(KEY, answer, 0, incarnation, 1.0)
    assert _rules(checker) == broken


def test_connection_err_of_a_later_incarnation_after_an_end_is_counted_not_judged() -> None:
    """Found by the chaos run: a restarted replica, the database cut, a job it answered ended
    in its previous life: it cannot know, and CONNECTION_ERR says so. The same process must
    not (see the table above)."""
    checker, _ = _checker("submitted", "running", "succeeded")
    checker.answer(KEY, S.SUCCEEDED, 0, 1, 1.0)
    checker.crashed(0, 2, Snapshot({KEY: S.SUCCEEDED}, {}), lost=False)
    checker.answer(KEY, S.CONNECTION_ERR, 0, 2, 2.0)
    assert _rules(checker) == []
    assert checker.connection_err_after_restart == 1
    checker.answer(KEY, S.JOB_ID_NOT_FOUND, 0, 2, 3.0)
    assert _rules(checker) == [Rule.OLDER_THAN_FLUSHED, Rule.TERMINAL_CHANGED]


def test_the_floor_is_per_replica() -> None:
    """A replica that did not restart is not judged by another's snapshot."""
    checker, _ = _checker("submitted", "running")
    checker.crashed(0, 2, Snapshot({KEY: S.RUNNING}, {}), lost=True)
    checker.answer(KEY, S.SUBMITTED, 1, 5, 1.0)
    assert _rules(checker) == []


def test_a_stream_from_the_start_after_a_flushed_position_is_a_violation() -> None:
    """Once the database holds a position, streams resume from it."""
    checker, _ = _checker()
    checker.stream_opened((Q, JS), "", 1.0)
    checker.stream_closed((Q, JS))
    checker.positions(Snapshot({}, {(Q, JS): "000003"}))
    checker.stream_opened((Q, JS), "000003", 2.0)
    checker.stream_closed((Q, JS))
    assert _rules(checker) == []
    checker.stream_opened((Q, JS), "", 3.0)
    assert _rules(checker) == [Rule.REOPENED_FROM_START]


def test_two_streams_of_one_job_set_at_once_are_a_violation() -> None:
    """One after the other is fine; overlapping is not."""
    checker, _ = _checker()
    checker.stream_opened((Q, JS), "", 1.0)
    checker.stream_opened((Q, "other"), "", 1.0)
    checker.stream_closed((Q, JS))
    checker.stream_opened((Q, JS), "1", 2.0)
    assert _rules(checker) == []
    checker.stream_opened((Q, JS), "1", 3.0)
    assert _rules(checker) == [Rule.TWO_STREAMS]


def test_final_answers_must_equal_the_truth() -> None:
    """After the settle period every job answers its real final state."""
    checker, log = _checker("submitted", "running")
    log.append(build_event("failed", Q, JS, JOB))
    checker.truth.catch_up(log)
    assert checker.final({KEY: S.FAILED}, 9.0) == 0
    assert checker.final({KEY: S.RUNNING, (Q, JS, "unknown"): S.SUBMITTED}, 9.0) == 2
    assert _rules(checker) == [Rule.FINAL_WRONG, Rule.FINAL_WRONG]


def test_truth_follows_a_log_through_expiry() -> None:
    """Events read before expiry stay known; events dropped unread are counted, not invented."""
    checker, log = _checker("submitted", "running")
    log.expire()
    log.append(build_event("succeeded", Q, JS, JOB))
    checker.truth.catch_up(log)
    assert checker.truth.of(KEY).answer == S.SUCCEEDED
    assert checker.truth.expired_unread == 0
    other = (Q, JS, "job-2")
    log.append(build_event("submitted", Q, JS, other[2]))
    log.expire()
    checker.truth.catch_up(log)
    assert checker.truth.expired_unread == 1
    assert checker.truth.of(other).answer is None
