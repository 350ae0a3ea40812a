"""The seeded fault schedule of a chaos run: which fault, when, for how long.

``make_plan`` is pure: the same seed, duration and set of kinds give the same
schedule, so a run that found a violation can be replayed. Kinds are drawn
from a shuffled deck (every kind once before any kind twice), so even a short
run injects each kind it can.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from dataclasses import dataclass


class FaultKind(enum.StrEnum):
    """One kind of fault the run can inject."""

    KILL_9 = "kill_9"
    """SIGKILL of the service (or one replica), no flush; started again at once."""
    SIGTERM = "sigterm"
    """SIGTERM of the service (or one replica): a graceful stop, then a restart."""
    STREAM_BREAK = "stream_break"
    """Every open event stream fails with UNAVAILABLE (later ones with INTERNAL)."""
    STREAM_END = "stream_end"
    """New event streams end cleanly (status OK) after a few events."""
    STREAM_STALL = "stream_stall"
    """Event streams stay open but send nothing until the fault ends."""
    SLOW_STREAMS = "slow_streams"
    """Every event on a stream is delayed."""
    ARMADA_OUTAGE = "armada_outage"
    """Armada answers UNAVAILABLE to everything; open streams break."""
    ARMADA_REFUSAL = "armada_refusal"
    """Armada answers PERMISSION_DENIED for one queue."""
    DISK_FULL = "disk_full"
    """SQLite: the small filesystem holding the database is filled to the last byte."""
    PG_RESTART = "pg_restart"
    """PostgreSQL: the server is restarted (pg_ctlcluster)."""
    DB_CUT = "db_cut"
    """PostgreSQL: one replica's database connections are cut by a proxy."""
    SLOW_DB = "slow_db"
    """PostgreSQL: one replica's database traffic is delayed by the proxy (slow writes)."""

    @property
    def restarts_service(self) -> bool:
        """Whether the fault stops a service process (and the run starts it again)."""
        return self in (FaultKind.KILL_9, FaultKind.SIGTERM)


#: Kinds every database can have.
COMMON_KINDS = (
    FaultKind.KILL_9,
    FaultKind.SIGTERM,
    FaultKind.STREAM_BREAK,
    FaultKind.STREAM_END,
    FaultKind.STREAM_STALL,
    FaultKind.SLOW_STREAMS,
    FaultKind.ARMADA_OUTAGE,
    FaultKind.ARMADA_REFUSAL,
)
SQLITE_KINDS = (FaultKind.DISK_FULL,)
POSTGRES_KINDS = (FaultKind.PG_RESTART, FaultKind.DB_CUT, FaultKind.SLOW_DB)


def kinds_for(postgres: bool, skip: Iterable[FaultKind] = ()) -> tuple[FaultKind, ...]:
    """The kinds a run on this database injects, minus those in *skip*."""
    skipped = set(skip)
    extra = POSTGRES_KINDS if postgres else SQLITE_KINDS
    return tuple(k for k in (*COMMON_KINDS, *extra) if k not in skipped)


@dataclass(frozen=True, slots=True)
class Fault:
    """One planned fault."""

    number: int
    """Its place in the schedule, from 1."""
    kind: FaultKind
    gap_s: float
    """Quiet time before it, counted from the previous fault's recovery."""
    hold_s: float
    """How long it lasts (for a restart: how long the process stays down)."""
    replica: int
    """Which replica it hits, for the kinds that hit one."""
    detail: int
    """A kind-specific draw: events before a stream ends, milliseconds of delay..."""


@dataclass(frozen=True, slots=True)
class PlanShape:
    """The ranges the schedule is drawn from, in seconds."""

    gap_s: tuple[float, float] = (2.0, 6.0)
    hold_s: tuple[float, float] = (1.0, 5.0)


def make_plan(
    seed: int,
    count: int,
    kinds: tuple[FaultKind, ...],
    replicas: int = 1,
    shape: PlanShape = PlanShape(),
) -> list[Fault]:
    """Draw *count* faults from *kinds*: every kind once before any kind twice."""
    if not kinds:
        return []
    rng = random.Random(seed)
    faults = []
    deck: list[FaultKind] = []
    for number in range(1, count + 1):
        if not deck:
            deck = list(kinds)
            rng.shuffle(deck)
        kind = deck.pop()
        faults.append(
            Fault(
                number=number,
                kind=kind,
                gap_s=round(rng.uniform(*shape.gap_s), 2),
                hold_s=round(rng.uniform(*shape.hold_s), 2),
                replica=rng.randrange(replicas),
                detail=rng.randrange(1, 50),
            )
        )
    return faults


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``10m`` or ``1h``; ValueError otherwise."""
    text = text.strip().lower()
    factor = 1.0
    for suffix, scale in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if text.endswith(suffix):
            text, factor = text[: -len(suffix)], scale
            break
    try:
        value = float(text) * factor
    except ValueError:
        raise ValueError("a duration is a number with s, m or h") from None
    if not value > 0:
        raise ValueError("a duration must be positive")
    return value
