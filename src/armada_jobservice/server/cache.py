"""The in-memory cache: every job of every job set the service holds.

Polls are answered from here and nowhere else. Memory per job is what the
layout is built around (see ``docs/architecture.md``): a job is one entry in
its job set's ``dict`` of job id to a small ``int`` (CPython shares small ints,
so the value costs nothing); error texts live in a second dict that holds only
the jobs that have one. Changed jobs are remembered by id until the writer
flushes them.

A ``JobSet`` is the only owner of its fields: the servicer, the stream loop,
the loader and the writer change it through the methods below, and read it
through read-only properties.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from armada_jobservice._wire import TERMINAL_STATES, WireState
from armada_jobservice.server.model import MAX_JOB_ID_BYTES, JobRow, JobSetKey, RowToWrite
from armada_jobservice.server.states import STATE_OF_KIND, map_event, next_state

_TERMINAL = frozenset(int(s) for s in TERMINAL_STATES)
_STATES = tuple(WireState)
_STATE_OF_KIND = {kind: int(state) for kind, state in STATE_OF_KIND.items()}
#: Job ids up to this many characters cannot pass the byte limit: the short path takes them.
_ORDINARY_JOB_ID = MAX_JOB_ID_BYTES // 4
_CONNECTION_ERR = int(WireState.CONNECTION_ERR)
_NOT_FOUND = int(WireState.JOB_ID_NOT_FOUND)


class JobObserver(Protocol):
    """What a job set tells its watchers (``server/watch.py``): called as changes apply."""

    def job_changed(self, job_id: str) -> None:
        """The cached state of *job_id* changed."""

    def connection_changed(self) -> None:
        """The event stream's failure (or health) changed."""


class JobSet:
    """The cached jobs of one job set, its resume position and what awaits flushing."""

    __slots__ = (
        "_dirty",
        "_errors",
        "_failing_since",
        "_failure",
        "_key",
        "_last_event",
        "_last_message_id",
        "_last_poll",
        "_loaded",
        "_persisted_activity",
        "_persisted_message_id",
        "_refused",
        "_states",
        "_stream",
        "_watchers",
    )

    def __init__(self, key: JobSetKey, now: float) -> None:
        self._key = key
        self._states: dict[str, int] = {}
        self._errors: dict[str, str] = {}
        # Job ids changed since the last flush began.
        self._dirty: set[str] = set()
        # Id of the last event applied; the stream resumes after it.
        self._last_message_id: str | None = None
        # Monotonic times of the last poll and the last event.
        self._last_poll = now
        self._last_event = 0.0
        # What the database holds: the activity time (wall clock) and position.
        self._persisted_activity = 0.0
        self._persisted_message_id: str | None = None
        self._stream: asyncio.Task[None] | None = None
        # Upstream trouble: since when (monotonic), its text, and whether Armada refused.
        self._failing_since: float | None = None
        self._failure = ""
        self._refused = False
        self._loaded = False
        # Open watches; a tuple, so notifying while one is added or removed is safe.
        self._watchers: tuple[JobObserver, ...] = ()

    # -- reading -----------------------------------------------------------

    @property
    def key(self) -> JobSetKey:
        """The (queue, job set id) this cache holds."""
        return self._key

    @property
    def states(self) -> Mapping[str, int]:
        """Wire state number of every cached job, by job id (read only)."""
        return MappingProxyType(self._states)

    @property
    def errors(self) -> Mapping[str, str]:
        """Error text of the jobs that have one, by job id (read only)."""
        return MappingProxyType(self._errors)

    @property
    def changed_jobs(self) -> frozenset[str]:
        """Ids of the jobs changed since the writer last took them."""
        return frozenset(self._dirty)

    @property
    def last_message_id(self) -> str | None:
        """Id of the last event applied (or loaded): the stream resumes after it."""
        return self._last_message_id

    @property
    def persisted_message_id(self) -> str | None:
        """The resume position the database holds."""
        return self._persisted_message_id

    @property
    def persisted_activity(self) -> float:
        """The activity time (wall clock) the database holds."""
        return self._persisted_activity

    @property
    def last_poll(self) -> float:
        """Monotonic time of the last poll."""
        return self._last_poll

    @property
    def last_event(self) -> float:
        """Monotonic time of the last event applied (0 before any)."""
        return self._last_event

    @property
    def stream(self) -> asyncio.Task[None] | None:
        """The running stream task, or None when not subscribed."""
        return self._stream

    @property
    def loaded(self) -> bool:
        """Whether the stored jobs have been read into memory."""
        return self._loaded

    @property
    def live(self) -> bool:
        """Subscribed and loaded: a poll can be answered without waiting."""
        return self._stream is not None and self._loaded

    @property
    def failing_since(self) -> float | None:
        """Monotonic time since which the event stream has been failing, or None."""
        return self._failing_since

    @property
    def failure(self) -> tuple[str, bool] | None:
        """The stream's failure text and whether Armada refused, or None while healthy."""
        if self._failing_since is None:
            return None
        return self._failure, self._refused

    def __len__(self) -> int:
        return len(self._states)

    def __repr__(self) -> str:
        return f"JobSet({self._key}, {len(self._states)} jobs)"

    # -- events ------------------------------------------------------------

    def apply(self, message_id: str, message: Any, now: float) -> bool:
        """Apply one Armada ``EventMessage`` received at *now*; return whether a job changed.

        Most events (submitted, running, succeeded...) move a job to a fixed
        state with no text; they take a short path on plain ints that gives
        what ``map_event`` and ``next_state`` give. The rest take those rules.
        """
        # An id that is empty or holds NUL (PostgreSQL cannot store it) is no
        # position: a resume from the one before brings this event again.
        if message_id and "\0" not in message_id:
            self._last_message_id = message_id
        self._last_event = now
        kind = message.WhichOneof("events")
        target = _STATE_OF_KIND.get(kind)
        if target is None:
            return self._apply_rule(message)
        job_id = getattr(message, kind).job_id
        if not job_id or "\0" in job_id or len(job_id) > _ORDINARY_JOB_ID:
            return self._apply_rule(message)  # the rules decide what to do with odd ids
        states = self._states
        current = states.get(job_id)
        if current == target or current in _TERMINAL:
            return False
        states[job_id] = target
        if self._errors:
            self._errors.pop(job_id, None)
        self._dirty.add(job_id)
        if self._watchers:
            self._notify(job_id)
        return True

    def _apply_rule(self, message: Any) -> bool:
        transition = map_event(message)
        if transition is None:
            return False
        job_id = transition.job_id
        current = self._states.get(job_id)
        change = next_state(None if current is None else _STATES[current], transition)
        if change is None:
            return False
        state, error = change
        self._states[job_id] = int(state)
        if error is not None:
            self._errors[job_id] = error
        else:
            self._errors.pop(job_id, None)
        self._dirty.add(job_id)
        if self._watchers:
            self._notify(job_id)
        return True

    def load(
        self, last_message_id: str | None, rows: Iterable[JobRow], last_activity: float
    ) -> None:
        """Fill the cache from what the database holds, keeping anything already newer in memory."""
        for job_id, state, error in rows:
            if job_id in self._states:
                continue
            self._states[job_id] = state
            if error:
                self._errors[job_id] = error
        if self._last_message_id is None:
            self._last_message_id = last_message_id
        self._persisted_message_id = last_message_id
        self._persisted_activity = max(self._persisted_activity, last_activity)
        self._loaded = True

    def merge_stored(self, rows: Iterable[JobRow]) -> int:
        """Take jobs another replica wrote (a follower's refresh); return how many changed.

        A terminal state held here is kept; nothing is marked for flushing,
        since the database already holds it.
        """
        changed = 0
        states, errors = self._states, self._errors
        for job_id, state, error in rows:
            held = states.get(job_id)
            if held == state or held in _TERMINAL:
                continue
            states[job_id] = state
            if error:
                errors[job_id] = error
            else:
                errors.pop(job_id, None)
            changed += 1
            if self._watchers:
                self._notify(job_id)
        return changed

    def adopt(self, last_message_id: str | None) -> None:
        """Take the job set over at the stored position (this replica's lease was won).

        Changes not flushed under an earlier lease are dropped: the stream
        resumes from the stored position and brings them again.
        """
        self._dirty = set()
        self._last_message_id = last_message_id
        self._persisted_message_id = last_message_id
        self.mark_healthy()

    # -- polls -------------------------------------------------------------

    def touch(self, now: float) -> None:
        """Record a poll at monotonic *now* (it keeps the subscription alive)."""
        if now > self._last_poll:
            self._last_poll = now

    def poll(self, job_id: str, now: float, grace_s: float) -> tuple[int, str]:
        """Record a poll and answer it: the job's state and error text, or CONNECTION_ERR.

        An unfinished job answers CONNECTION_ERR with the stream's failure once
        Armada refused the stream or it has been failing for *grace_s*.
        """
        if now > self._last_poll:
            self._last_poll = now
        state = self._states.get(job_id)
        if state is None:
            state = _NOT_FOUND
        elif state in _TERMINAL:
            return state, self._errors.get(job_id, "")
        since = self._failing_since
        if since is not None and (self._refused or now - since > grace_s):
            return _CONNECTION_ERR, self._failure
        return state, ""

    def peek(self, job_id: str, now: float, grace_s: float) -> tuple[int, str]:
        """What ``poll`` would answer at *now*, without recording a poll (for watches)."""
        state, error = self.lookup(job_id)
        if state in _TERMINAL:
            return state, error
        failure = self.connection_error(now, grace_s)
        if failure is not None:
            return _CONNECTION_ERR, failure
        return state, ""

    def lookup(self, job_id: str) -> tuple[int, str]:
        """The cached state and error text of a job (JOB_ID_NOT_FOUND when unseen)."""
        state = self._states.get(job_id)
        if state is None:
            return _NOT_FOUND, ""
        if state in _TERMINAL:
            return state, self._errors.get(job_id, "")
        return state, ""

    def is_terminal(self, job_id: str) -> bool:
        """Whether the job has reached a state no event can change."""
        return self._states.get(job_id) in _TERMINAL

    # -- watches -----------------------------------------------------------

    @property
    def watched(self) -> bool:
        """Whether a watch is open: the job set then counts as polled for expiry."""
        return bool(self._watchers)

    def add_watcher(self, watcher: JobObserver) -> None:
        """Tell *watcher* of every change from now on."""
        self._watchers = (*self._watchers, watcher)

    def remove_watcher(self, watcher: JobObserver, now: float) -> None:
        """Stop telling *watcher*; the watch's end counts as a poll at *now*."""
        self._watchers = tuple(w for w in self._watchers if w is not watcher)
        self.touch(now)

    def _notify(self, job_id: str) -> None:
        for watcher in self._watchers:
            watcher.job_changed(job_id)

    # -- the stream --------------------------------------------------------

    def attach_stream(self, task: asyncio.Task[None]) -> None:
        """Record the task that now reads this job set's events."""
        self._stream = task

    def detach_stream(self) -> asyncio.Task[None] | None:
        """Forget the stream task (the caller ends it); return it."""
        task, self._stream = self._stream, None
        return task

    def mark_failing(self, now: float, text: str, *, refused: bool) -> None:
        """Record that the event stream is down (``refused``: Armada or the database said no)."""
        news = self._failing_since is None or text != self._failure or refused != self._refused
        if self._failing_since is None:
            self._failing_since = now
        self._failure = text
        self._refused = refused
        if news:
            for watcher in self._watchers:
                watcher.connection_changed()

    def mark_healthy(self) -> None:
        """Record that the event stream works again."""
        if self._failing_since is None:
            return
        self._failing_since = None
        self._failure = ""
        self._refused = False
        for watcher in self._watchers:
            watcher.connection_changed()

    def connection_error(self, now: float, grace_s: float) -> str | None:
        """The error text polls of unfinished jobs must answer now, if any."""
        since = self._failing_since
        if since is None:
            return None
        if self._refused or now - since > grace_s:
            return self._failure
        return None

    # -- flushing ----------------------------------------------------------

    def last_activity(self) -> float:
        """Monotonic time of the last poll or event."""
        return max(self._last_poll, self._last_event)

    def is_clean(self) -> bool:
        """Whether the database holds everything this job set knows."""
        return not self._dirty and self._last_message_id == self._persisted_message_id

    def take_dirty(self) -> list[RowToWrite]:
        """The changed jobs as rows, forgetting that they changed."""
        if not self._dirty:
            return []
        states, errors = self._states, self._errors
        if errors:
            rows = [(j, states[j], errors.get(j)) for j in self._dirty]
        else:
            rows = [(j, states[j], None) for j in self._dirty]
        self._dirty = set()
        return rows

    def restore_dirty(self, job_ids: Iterable[str]) -> None:
        """Mark jobs changed again after their write failed; the cache holds their latest state."""
        self._dirty.update(job_ids)

    def discard_unflushed(self) -> None:
        """Forget changes this replica may no longer write (its lease was lost).

        The stream of whichever replica owns the job set now resumes from the
        stored position and brings them again.
        """
        self._dirty = set()
        self._last_message_id = self._persisted_message_id

    def mark_persisted(self, last_message_id: str | None, activity: float) -> None:
        """Record what a committed write put in the database."""
        self._persisted_message_id = last_message_id
        if activity > self._persisted_activity:
            self._persisted_activity = activity
