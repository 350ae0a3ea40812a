"""What the bench's processes send each other over their pipes, as typed values.

A child process answers its parent with :class:`Listening` (a serving child,
once its port accepts calls) or :class:`Ready` (a load child, waiting for
:class:`Go`), then with :class:`Done` or :class:`Failed` per request; it
ends on :class:`Stop`. Requests are frozen dataclasses, one type per kind of
work, and the child dispatches on the type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from armada_jobservice._wire import WireState

# -- the things measured ----------------------------------------------------------------


class Poll(NamedTuple):
    """One ``GetJobStatus`` call and the answer expected (None: any state but not found)."""

    queue: str
    job_set_id: str
    job_id: str
    want: WireState | None


class JobSetRef(NamedTuple):
    """A job set as Armada names it."""

    queue: str
    job_set_id: str


class Seeded(NamedTuple):
    """A job set the simulator was seeded with: its jobs and the id of its last event."""

    job_set_id: str
    job_ids: list[str]
    last_message_id: str
    #: What the service must answer for each job of ``job_ids`` once all is in.
    wants: tuple[WireState, ...] = ()
    #: Events published to the job set.
    events: int = 0
    #: The index in ``job_ids`` of the job whose event was published last.
    last_index: int = -1


# -- the conversation between parent and child ------------------------------------------


@dataclass(frozen=True, slots=True)
class Listening:
    """A serving child accepts calls on this port of 127.0.0.1."""

    port: int


@dataclass(frozen=True, slots=True)
class Ready:
    """A load child has connected and waits for :class:`Go`."""


@dataclass(frozen=True, slots=True)
class Go:
    """Start at this wall-clock instant (``time.time()``)."""

    start: float


@dataclass(frozen=True, slots=True)
class Stop:
    """End the child."""


@dataclass(frozen=True, slots=True)
class Done:
    """A request's answer."""

    value: Any = None


@dataclass(frozen=True, slots=True)
class Failed:
    """A request, or the whole child, failed; *error* is the exception's repr."""

    error: str


# -- load requests (bench/load.py) and their results ------------------------------------


@dataclass(frozen=True, slots=True)
class PollLoad:
    """Polls for *duration_s*: *param* callers in a closed loop, or *param* polls/s open.

    Mode ``once``: each poll sent once by *param* callers (*duration_s* unused).
    """

    address: str
    polls: Sequence[Poll]
    mode: Literal["closed", "open", "once"]
    param: float
    duration_s: float
    #: Each call's deadline (None: none).
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class FirstPolls:
    """Poll each job until its expected state shows (*timeout_s* 0: poll each once)."""

    address: str
    polls: Sequence[Poll]
    concurrency: int
    timeout_s: float
    interval_s: float


@dataclass(frozen=True, slots=True)
class StreamRead:
    """Read and parse job sets' event streams straight from Armada until *total* events."""

    address: str
    job_sets: Sequence[JobSetRef]
    total: int
    timeout_s: float
    #: Streams opened per step, as the service opens them (one per first poll).
    open_step: int


@dataclass(frozen=True, slots=True)
class FirstEvents:
    """Open each job set's stream straight from Armada and time its first event."""

    address: str
    job_sets: Sequence[JobSetRef]
    concurrency: int


@dataclass(frozen=True, slots=True)
class VisibleAt:
    """Poll the i-th poll from wall time ``start + i * gap_s`` until its state shows.

    Answers, per poll, the wall time its expected state was first seen
    (NaN if not within *timeout_s*).
    """

    address: str
    polls: Sequence[Poll]
    start: float
    gap_s: float
    interval_s: float
    timeout_s: float


LoadRequest = PollLoad | FirstPolls | StreamRead | FirstEvents | VisibleAt


@dataclass(slots=True)
class PollCounts:
    """What poll load processes saw (one process's, or several merged)."""

    calls: int = 0
    errors: int = 0
    wrong: int = 0
    latencies_s: list[float] = field(default_factory=list)
    #: Errors by gRPC status code name (RESOURCE_EXHAUSTED: shed).
    error_codes: dict[str, int] = field(default_factory=dict)
    #: Answers by wire state.
    states: dict[int, int] = field(default_factory=dict)

    def percentile_ms(self, p: float) -> float:
        """The *p*-th percentile latency in milliseconds (NaN without samples)."""
        return percentile(self.latencies_s, p) * 1000

    @classmethod
    def merged(cls, parts: Sequence[PollCounts]) -> PollCounts:
        """The sum of several processes' counts."""
        out = cls()
        for part in parts:
            out.calls += part.calls
            out.errors += part.errors
            out.wrong += part.wrong
            out.latencies_s.extend(part.latencies_s)
            for code, n in part.error_codes.items():
                out.error_codes[code] = out.error_codes.get(code, 0) + n
            for state, n in part.states.items():
                out.states[state] = out.states.get(state, 0) + n
        return out


@dataclass(slots=True)
class Visibility:
    """Times of first answers and of expected states becoming visible, in seconds."""

    first: list[float] = field(default_factory=list)
    visible: list[float] = field(default_factory=list)
    errors: int = 0
    #: Polls whose expected state did not show within the timeout.
    missed: int = 0
    #: Seconds from the start until the last first answer came.
    first_done: float = 0.0

    @classmethod
    def merged(cls, parts: Sequence[Visibility]) -> Visibility:
        """Several processes' timings as one."""
        out = cls()
        for part in parts:
            out.first += part.first
            out.visible += part.visible
            out.errors += part.errors
            out.missed += part.missed
            out.first_done = max(out.first_done, part.first_done)
        return out


@dataclass(slots=True)
class StreamCounts:
    """What a receive-and-parse client saw of its streams."""

    received: int = 0
    #: From its start until *total* events arrived (NaN if they never did).
    elapsed_s: float = float("nan")
    cpu_s: float = 0.0
    rss_before: int = 0
    #: RSS once every stream delivered its first event.
    rss_open: int = 0
    #: Wall-clock instant and process CPU seconds when *total* arrived, for
    #: runs timed from an instant outside the process.
    done_at: float = float("nan")
    cpu_done_s: float = float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """The *p*-th percentile by nearest rank (NaN when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]
