"""The rules of ``wait_for_job`` as tables of (time, observation) steps, with no I/O."""

from __future__ import annotations

import pytest

from armada_jobservice import (
    ConnectionErrorTimeout,
    JobNotFoundTimeout,
    JobState,
    JobStatus,
    ServiceUnavailable,
    WaitTimeout,
)
from armada_jobservice._wait import JobsWaiter, Waiter, WaitPolicy

NF = JobStatus(JobState.JOB_ID_NOT_FOUND)
RUN = JobStatus(JobState.RUNNING)
SUB = JobStatus(JobState.SUBMITTED)
CE = JobStatus(JobState.CONNECTION_ERR, "armada: connection refused")
DOWN = ServiceUnavailable("GetJobStatus: UNAVAILABLE", code="UNAVAILABLE")

POLICY = WaitPolicy(
    poll_interval_s=5, not_found_timeout_s=20, connection_error_timeout_s=30, timeout_s=100
)


def run(steps: list[tuple[float, object]], policy: WaitPolicy = POLICY) -> list[float]:
    """Feed the steps to a Waiter started at t=0 and return the delays it chose."""
    waiter = Waiter(policy, "q/s/j", started_at=0.0)
    delays = []
    for now, seen in steps:
        if isinstance(seen, JobStatus):
            delays.append(waiter.on_status(seen, now))
        else:
            assert isinstance(seen, ServiceUnavailable)
            delays.append(waiter.on_error(seen, now))
    return delays


@pytest.mark.parametrize(
    ("steps", "delays"),
    [
        pytest.param([(0, SUB), (5, RUN)], [5, 5], id="plain-interval"),
        pytest.param(
            [(0, NF), (5, NF), (10, NF), (15, NF), (17, NF)],
            [5, 5, 5, 5, 3],
            id="not-found-sleeps-to-its-deadline",
        ),
        pytest.param([(0, CE), (28, CE)], [5, 2], id="conn-err-sleeps-to-its-deadline"),
        pytest.param([(0, RUN), (97, RUN)], [5, 3], id="overall-sleeps-to-its-deadline"),
        pytest.param(
            [(0, DOWN), (5, DOWN), (29, RUN), (58, DOWN)],
            [5, 5, 5, 5],
            id="unreachable-counts-as-trouble-and-resets-on-answer",
        ),
    ],
)
def test_delays(steps: list[tuple[float, object]], delays: list[float]) -> None:
    """The delay is the poll interval, cut short by the nearest running timeout."""
    assert run(steps) == delays


def test_not_found_timeout_counts_from_first_missing() -> None:
    """A job running for a long time and then missing gets the whole not-found timeout."""
    steps: list[tuple[float, object]] = [(0, RUN), (50, RUN), (60, NF), (75, NF)]
    assert run(steps)[-1] == 5
    with pytest.raises(JobNotFoundTimeout):
        run([*steps, (80, NF)])


def test_not_found_clock_restarts_after_the_job_was_found() -> None:
    """A job found in between and lost again gets the not-found timeout anew."""
    steps: list[tuple[float, object]] = [(0, NF), (15, NF), (18, SUB), (19, NF), (38, NF)]
    assert run(steps)[-1] == 1


def test_not_found_timeout_raises_with_last_status() -> None:
    """The not-found timeout names the job and keeps the last status seen."""
    with pytest.raises(JobNotFoundTimeout, match="q/s/j") as info:
        run([(0, NF), (20, NF)])
    assert info.value.last_status == NF


def test_connection_error_timeout_covers_answers_and_transport_errors() -> None:
    """CONNECTION_ERR answers and an unreachable service share one clock."""
    with pytest.raises(ConnectionErrorTimeout) as info:
        run([(0, CE), (10, DOWN), (20, CE), (30, DOWN)])
    assert info.value.__cause__ is DOWN
    with pytest.raises(ConnectionErrorTimeout, match="connection refused"):
        run([(0, DOWN), (10, CE), (30, CE)])


def test_overall_timeout_is_a_plain_wait_timeout() -> None:
    """The overall timeout raises WaitTimeout itself, not one of its subclasses."""
    with pytest.raises(WaitTimeout) as info:
        run([(0, RUN), (100, RUN)])
    assert type(info.value) is WaitTimeout
    assert info.value.last_status == RUN


def test_no_overall_timeout_means_no_limit() -> None:
    """Without an overall timeout a running job is polled forever at the interval."""
    policy = WaitPolicy(poll_interval_s=5, timeout_s=None)
    assert run([(0, RUN), (10**9, RUN)], policy) == [5, 5]


def test_terminal_status_is_not_recorded() -> None:
    """Recording a terminal status is a caller's bug: the wait ends before sleeping."""
    with pytest.raises(ValueError, match="terminal"):
        run([(0, JobStatus(JobState.SUCCEEDED))])


@pytest.mark.parametrize(
    "field", ["poll_interval_s", "not_found_timeout_s", "connection_error_timeout_s", "timeout_s"]
)
def test_policy_rejects_negative_numbers(field: str) -> None:
    """Negative intervals and timeouts are refused when the policy is made."""
    with pytest.raises(ValueError, match=field):
        WaitPolicy(**{field: -1})


DONE = JobStatus(JobState.SUCCEEDED)


@pytest.mark.parametrize(
    ("steps", "deadlines"),
    [
        pytest.param([(0, RUN)], [None], id="running-has-no-deadline-without-timeout_s"),
        pytest.param([(0, NF), (15, NF)], [20, 5], id="not-found-counts-down"),
        pytest.param([(0, NF), (5, RUN), (6, CE)], [20, None, 30], id="each-run-starts-afresh"),
    ],
)
def test_a_watching_wait_sleeps_to_its_nearest_deadline(
    steps: list[tuple[float, JobStatus]], deadlines: list[float | None]
) -> None:
    """``deadline_in`` ignores the poll interval: only timeouts wake a watching wait."""
    policy = WaitPolicy(poll_interval_s=5, not_found_timeout_s=20, connection_error_timeout_s=30)
    waiter = Waiter(policy, "q/s/j", started_at=0.0)
    seen = []
    for now, status in steps:
        waiter.on_status(status, now)
        seen.append(waiter.deadline_in(now))
    assert seen == deadlines


def test_jobs_waiter_keeps_each_end_and_raises_the_first_timeout() -> None:
    """Per-job clocks: a job that ended is kept; one never found raises at its own deadline."""
    jobs = JobsWaiter(POLICY, "q", "s", ["a", "b", "c"], started_at=0.0)
    assert jobs.deadline_in(0.0) == 100  # only the overall timeout runs yet
    jobs.on_status("b", DONE, 1.0)
    jobs.on_status("a", NF, 2.0)
    assert jobs.remaining == ["a", "c"]
    assert jobs.deadline_in(2.0) == 20
    assert jobs.on_status("c", RUN, 3.0) == 5
    jobs.on_status("c", DONE, 4.0)
    assert jobs.results() == {"b": DONE, "c": DONE}
    assert not jobs.finished
    with pytest.raises(JobNotFoundTimeout) as caught:
        jobs.deadline_in(22.0)
    assert "q/s/a" in str(caught.value)
    jobs.on_status("a", DONE, 23.0)
    assert jobs.finished
    assert list(jobs.results()) == ["a", "b", "c"]
    assert jobs.on_error(DOWN, 24.0) == POLICY.poll_interval_s
