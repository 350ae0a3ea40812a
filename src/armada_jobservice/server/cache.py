"""The in-memory cache: every job of every job set the service holds.

Polls are answered from here and nowhere else. Memory per job is what the
layout is built around (see ``docs/architecture.md``): a job is one entry in
its job set's ``dict`` of job id to a small ``int`` (CPython shares small ints,
so the value costs nothing); error texts live in a second dict that holds only
the jobs that have one. Changed jobs are remembered by id until the writer
flushes them.
"""

from __future__ import annotations

from typing import Any

from armada_jobservice._wire import TERMINAL_STATES, WireState
from armada_jobservice.server.model import JobRow, JobSetKey, RowToWrite
from armada_jobservice.server.states import STATE_OF_KIND, map_event, next_state

_TERMINAL = frozenset(int(s) for s in TERMINAL_STATES)
_STATES = tuple(WireState)
_STATE_OF_KIND = {kind: int(state) for kind, state in STATE_OF_KIND.items()}


class JobSet:
    """The cached jobs of one job set, its resume position and what awaits flushing."""

    __slots__ = (
        "_loaded",
        "dirty",
        "errors",
        "failing_since",
        "failure",
        "key",
        "last_event",
        "last_message_id",
        "last_poll",
        "persisted_activity",
        "persisted_message_id",
        "refused",
        "states",
        "stream",
    )

    def __init__(self, key: JobSetKey, now: float) -> None:
        self.key = key
        self.states: dict[str, int] = {}
        self.errors: dict[str, str] = {}
        #: Job ids changed since the last flush began.
        self.dirty: set[str] = set()
        #: Id of the last event applied; the stream resumes after it.
        self.last_message_id: str | None = None
        #: Monotonic times of the last poll and the last event.
        self.last_poll = now
        self.last_event = 0.0
        #: What the database holds: the activity time (wall clock) and position.
        self.persisted_activity = 0.0
        self.persisted_message_id: str | None = None
        #: The running stream task, or None when not subscribed.
        self.stream: Any = None
        #: Upstream trouble: since when (monotonic), its text, and whether Armada refused.
        self.failing_since: float | None = None
        self.failure = ""
        self.refused = False
        self._loaded = False

    # -- events ------------------------------------------------------------

    def apply(self, message_id: str, message: Any) -> bool:
        """Apply one Armada ``EventMessage``; return whether a job changed.

        Most events (submitted, running, succeeded...) move a job to a fixed
        state with no text; they take a short path on plain ints that gives
        what ``map_event`` and ``next_state`` give. The rest take those rules.
        """
        self.last_message_id = message_id
        kind = message.WhichOneof("events")
        target = _STATE_OF_KIND.get(kind)
        if target is None:
            return self._apply_rule(message)
        job_id = getattr(message, kind).job_id
        if not job_id:
            return False
        states = self.states
        current = states.get(job_id)
        if current == target or current in _TERMINAL:
            return False
        states[job_id] = target
        if self.errors:
            self.errors.pop(job_id, None)
        self.dirty.add(job_id)
        return True

    def _apply_rule(self, message: Any) -> bool:
        transition = map_event(message)
        if transition is None:
            return False
        job_id = transition.job_id
        current = self.states.get(job_id)
        change = next_state(None if current is None else _STATES[current], transition)
        if change is None:
            return False
        state, error = change
        self.states[job_id] = int(state)
        if error is not None:
            self.errors[job_id] = error
        else:
            self.errors.pop(job_id, None)
        self.dirty.add(job_id)
        return True

    def load(self, last_message_id: str | None, rows: list[JobRow]) -> None:
        """Fill the cache from stored rows, keeping anything already newer in memory."""
        for job_id, state, error in rows:
            if job_id in self.states:
                continue
            self.states[job_id] = state
            if error:
                self.errors[job_id] = error
        if self.last_message_id is None:
            self.last_message_id = last_message_id
        self.persisted_message_id = last_message_id
        self._loaded = True

    @property
    def loaded(self) -> bool:
        """Whether the stored jobs have been read into memory."""
        return self._loaded

    # -- polls -------------------------------------------------------------

    def lookup(self, job_id: str) -> tuple[int, str]:
        """The cached state and error text of a job (JOB_ID_NOT_FOUND when unseen)."""
        state = self.states.get(job_id)
        if state is None:
            return WireState.JOB_ID_NOT_FOUND, ""
        if state in _TERMINAL:
            return state, self.errors.get(job_id, "")
        return state, ""

    def is_terminal(self, job_id: str) -> bool:
        """Whether the job has reached a state no event can change."""
        return self.states.get(job_id) in _TERMINAL

    # -- upstream health ---------------------------------------------------

    def mark_failing(self, now: float, text: str, refused: bool) -> None:
        """Record that the event stream is down (``refused``: Armada said no)."""
        if self.failing_since is None:
            self.failing_since = now
        self.failure = text
        self.refused = refused

    def mark_healthy(self) -> None:
        """Record that the event stream works again."""
        self.failing_since = None
        self.failure = ""
        self.refused = False

    def connection_error(self, now: float, grace_s: float) -> str | None:
        """The error text polls of unfinished jobs must answer now, if any."""
        since = self.failing_since
        if since is None:
            return None
        if self.refused or now - since > grace_s:
            return self.failure
        return None

    # -- bookkeeping -------------------------------------------------------

    def last_activity(self) -> float:
        """Monotonic time of the last poll or event."""
        return max(self.last_poll, self.last_event)

    def is_clean(self) -> bool:
        """Whether the database holds everything this job set knows."""
        return not self.dirty and self.last_message_id == self.persisted_message_id

    def take_dirty(self) -> list[RowToWrite]:
        """The changed jobs as rows, forgetting that they changed."""
        if not self.dirty:
            return []
        states, errors = self.states, self.errors
        if errors:
            rows = [(j, states[j], errors.get(j)) for j in self.dirty]
        else:
            rows = [(j, states[j], None) for j in self.dirty]
        self.dirty = set()
        return rows
