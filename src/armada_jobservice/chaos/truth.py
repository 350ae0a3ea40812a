"""The truth checker: every answer of the service judged against the simulator's record.

``Truth`` follows the simulator's event logs and keeps, for each job, every
job-service state the job has reached (the simulator's phases mapped to the
answer a poll should give). ``Checker`` applies the rules of
``docs/reliability.md`` to answers, stream requests and database snapshots.
It judges states, never speeds: nothing here reads a clock except to stamp
a violation with the time it was seen.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from armada_jobservice._types import JobState
from armada_jobservice.sim.eventlog import JobSetLog
from armada_jobservice.sim.events import event_job_id, event_kind
from armada_jobservice.sim.lifecycle import JobPhase, state_after

JobKey = tuple[str, str, str]
"""(queue, job set id, job id)."""
SetKey = tuple[str, str]
"""(queue, job set id)."""

#: The answer a poll should give for each simulator phase.
ANSWER_OF_PHASE = {
    JobPhase.SUBMITTED: JobState.SUBMITTED,
    JobPhase.QUEUED: JobState.SUBMITTED,
    JobPhase.LEASED: JobState.SUBMITTED,
    JobPhase.PENDING: JobState.SUBMITTED,
    JobPhase.RUNNING: JobState.RUNNING,
    JobPhase.SUCCEEDED: JobState.SUCCEEDED,
    JobPhase.FAILED: JobState.FAILED,
    # A preemption is a failure to the job's owner.
    JobPhase.PREEMPTED: JobState.FAILED,
    JobPhase.CANCELLED: JobState.CANCELLED,
}

#: Answers that name no state of the job, so never claim one it has not reached.
NOT_A_STATE = frozenset({JobState.JOB_ID_NOT_FOUND, JobState.CONNECTION_ERR})


def rank(state: JobState) -> int:
    """How far along an answer is: not found 0, submitted 1, running 2, ended 3."""
    if state.is_terminal:
        return 3
    return {JobState.SUBMITTED: 1, JobState.RUNNING: 2}.get(state, 0)


class Rule(enum.StrEnum):
    """The rules an answer, a stream or a process can break."""

    UNREACHED = "unreached_state"
    TERMINAL_CHANGED = "terminal_changed"
    OLDER_THAN_FLUSHED = "older_than_flushed"
    FINAL_WRONG = "final_answer_wrong"
    REOPENED_FROM_START = "stream_reopened_from_start"
    TWO_STREAMS = "two_streams_for_one_job_set"
    RESOURCES = "resources_unbounded"


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule, with when (seconds since the run began) and what."""

    rule: Rule
    at_s: float
    detail: str


@dataclass(slots=True)
class JobTruth:
    """What the simulator did to one job."""

    phase: JobPhase | None = None
    reached: set[JobState] = field(default_factory=set)

    @property
    def answer(self) -> JobState | None:
        """The answer a poll should give now, or None before the job's first event."""
        return None if self.phase is None else ANSWER_OF_PHASE[self.phase]


class Truth:
    """Every job's reached states, read from the simulator's event logs as they grow."""

    def __init__(self) -> None:
        """Start knowing nothing."""
        self.jobs: dict[JobKey, JobTruth] = {}
        #: The log position read up to, per job set (positions survive expiry).
        self._read: dict[SetKey, int] = {}
        #: Events that expired before they were read: the truth about their jobs is incomplete.
        self.expired_unread = 0

    def catch_up(self, log: JobSetLog) -> None:
        """Take in the job set's events appended since the last call."""
        key = (log.queue, log.job_set_id)
        read = self._read.get(key, 0)
        if read < log.base:
            self.expired_unread += log.base - read
            read = log.base
        for item in log.messages[read - log.base :]:
            message = item.message
            job_id = event_job_id(message)
            if not job_id:
                continue
            job = self.jobs.setdefault((log.queue, log.job_set_id, job_id), JobTruth())
            job.phase = state_after(job.phase, event_kind(message))
            if job.phase is not None:
                job.reached.add(ANSWER_OF_PHASE[job.phase])
        self._read[key] = log.end

    def of(self, key: JobKey) -> JobTruth:
        """The record of one job (empty if it has no event yet)."""
        return self.jobs.get(key) or JobTruth()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a database held at one moment: job states and stream positions."""

    states: dict[JobKey, JobState]
    positions: dict[SetKey, str]


@dataclass(slots=True)
class _Terminal:
    state: JobState
    replica: int
    incarnation: int


class Checker:
    """Applies the rules; collects violations and the counts the report shows."""

    def __init__(
        self, truth: Truth, on_violation: Callable[[Violation], None] | None = None
    ) -> None:
        """Judge against *truth*; *on_violation* hears of each violation as it is found."""
        self.truth = truth
        self.on_violation = on_violation
        self.violations: list[Violation] = []
        self.polls_checked = 0
        self.answers: dict[str, int] = {}
        self.terminal_answers_lost = 0
        self.follower_lag_answers = 0
        self.connection_err_after_restart = 0
        self._terminal: dict[tuple[int, JobKey], _Terminal] = {}
        self._terminal_anywhere: dict[JobKey, _Terminal] = {}
        # Per replica: the least answer each job may get from its next incarnation.
        self._floor: dict[int, dict[JobKey, tuple[int, JobState]]] = {}
        self._positioned: set[SetKey] = set()
        self._open: dict[SetKey, int] = {}

    def _add(self, rule: Rule, at_s: float, detail: str) -> None:
        violation = Violation(rule, round(at_s, 3), detail)
        self.violations.append(violation)
        if self.on_violation is not None:
            self.on_violation(violation)

    def answer(
        self, key: JobKey, state: JobState, replica: int, incarnation: int, at_s: float
    ) -> None:
        """Judge one poll answer, given after the truth has caught up to now."""
        self.polls_checked += 1
        self.answers[state.value] = self.answers.get(state.value, 0) + 1
        job = self.truth.of(key)
        name = "/".join(key)
        if state not in NOT_A_STATE and state not in job.reached:
            reached = ",".join(sorted(s.value for s in job.reached)) or "nothing"
            self._add(Rule.UNREACHED, at_s, f"{name} answered {state} having reached {reached}")
        floor = self._floor.get(replica, {}).get(key)
        # CONNECTION_ERR claims no state: a new process that cannot read the
        # database says so instead of guessing (counted below, not judged).
        if floor is not None and incarnation >= floor[0] and state is not JobState.CONNECTION_ERR:
            least = floor[1]
            if rank(state) < rank(least) or (least.is_terminal and state != least):
                self._add(
                    Rule.OLDER_THAN_FLUSHED,
                    at_s,
                    f"{name} answered {state} by replica {replica} after a restart; "
                    f"{least} was flushed before it",
                )
        self._judge_terminal(key, state, replica, incarnation, at_s)

    def _judge_terminal(
        self, key: JobKey, state: JobState, replica: int, incarnation: int, at_s: float
    ) -> None:
        name = "/".join(key)
        here = self._terminal.get((replica, key))
        anywhere = self._terminal_anywhere.get(key)
        if here is not None and state is JobState.CONNECTION_ERR and incarnation > here.incarnation:
            # A later process of this replica, without the job in memory, could not
            # read the database: it says so rather than answer from nothing.
            self.connection_err_after_restart += 1
        elif here is not None and state != here.state:
            self._add(
                Rule.TERMINAL_CHANGED,
                at_s,
                f"{name} answered {state} by replica {replica} after {here.state} by the same",
            )
        elif anywhere is not None and state != anywhere.state:
            if state.is_terminal:
                self._add(
                    Rule.TERMINAL_CHANGED,
                    at_s,
                    f"{name} answered {state} by replica {replica} after {anywhere.state} "
                    f"by replica {anywhere.replica}",
                )
            else:
                # A follower reads what the owner flushed (docs/fleet.md, Limits).
                self.follower_lag_answers += 1
        if state.is_terminal:
            self._terminal.setdefault((replica, key), _Terminal(state, replica, incarnation))
            self._terminal_anywhere.setdefault(key, _Terminal(state, replica, incarnation))

    def crashed(self, replica: int, next_incarnation: int, snapshot: Snapshot, lost: bool) -> None:
        """Take in the database as a replica left it; *lost*: it was killed without a flush.

        From the replica's next incarnation on, no answer may be older than
        the snapshot. A terminal answer the snapshot does not hold was in
        memory only; after a kill -9 it may be answered again from the
        database's older state until the stream replays it, and is counted
        instead of judged.
        """
        floors = self._floor.setdefault(replica, {})
        for key, state in snapshot.states.items():
            known = floors.get(key)
            if known is None or rank(state) >= rank(known[1]):
                floors[key] = (next_incarnation, state)
        if lost:
            gone = {
                key
                for key, first in self._terminal_anywhere.items()
                if snapshot.states.get(key) != first.state
            }
            self.terminal_answers_lost += len(gone)
            self._terminal = {k: v for k, v in self._terminal.items() if k[1] not in gone}
            for key in gone:
                del self._terminal_anywhere[key]
        self.positions(snapshot)

    def positions(self, snapshot: Snapshot) -> None:
        """Remember the job sets whose stream position the database holds."""
        self._positioned.update(k for k, v in snapshot.positions.items() if v)

    def stream_opened(self, key: SetKey, from_message_id: str, at_s: float) -> None:
        """Judge one event stream opened at the simulator."""
        if not from_message_id and key in self._positioned:
            self._add(
                Rule.REOPENED_FROM_START,
                at_s,
                f"{'/'.join(key)} streamed from the start after its position was flushed",
            )
        count = self._open.get(key, 0) + 1
        self._open[key] = count
        if count > 1:
            self._add(Rule.TWO_STREAMS, at_s, f"{'/'.join(key)} has {count} streams open at once")

    def stream_closed(self, key: SetKey) -> None:
        """Note that one event stream of the job set ended."""
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

    def final(self, answers: dict[JobKey, JobState | None], at_s: float) -> int:
        """Judge the answers after the settle period; return how many differ from the truth."""
        wrong = 0
        for key, state in answers.items():
            expected = self.truth.of(key).answer
            if state != expected:
                wrong += 1
                said = "nothing" if state is None else str(state)
                self._add(
                    Rule.FINAL_WRONG, at_s, f"{'/'.join(key)} answered {said}, truth {expected}"
                )
        return wrong

    def resources(self, findings: Iterable[str], at_s: float) -> None:
        """Record what the resource sampler found unbounded."""
        for finding in findings:
            self._add(Rule.RESOURCES, at_s, finding)
