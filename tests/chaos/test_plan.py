"""The seeded fault schedule: repeatable, every kind before any twice, kinds per database."""

from __future__ import annotations

import pytest

from armada_jobservice.chaos.plan import (
    COMMON_KINDS,
    FaultKind,
    kinds_for,
    make_plan,
    parse_duration,
)
from armada_jobservice.chaos.runner import ChaosConfig
from armada_jobservice.chaos.workload import EVENT_RETENTION_S
from armada_jobservice.cli.chaos import EVENT_RETENTION_DEFAULT, FAULT_KINDS


def test_the_same_seed_gives_the_same_schedule() -> None:
    """A run is replayed by its seed."""
    kinds = kinds_for(postgres=True)
    assert make_plan(7, 40, kinds, 3) == make_plan(7, 40, kinds, 3)
    assert make_plan(7, 40, kinds, 3) != make_plan(8, 40, kinds, 3)


@pytest.mark.parametrize("seed", range(5))
def test_every_kind_comes_once_before_any_comes_twice(seed: int) -> None:
    """A short run still injects each kind it can."""
    kinds = kinds_for(postgres=False)
    plan = make_plan(seed, 2 * len(kinds), kinds)
    assert {f.kind for f in plan[: len(kinds)]} == set(kinds)
    assert {f.kind for f in plan[len(kinds) :]} == set(kinds)


@pytest.mark.parametrize(
    ("postgres", "skip", "extra"),
    [
        (False, (), {FaultKind.DISK_FULL}),
        (True, (), {FaultKind.PG_RESTART, FaultKind.DB_CUT, FaultKind.SLOW_DB}),
        (True, (FaultKind.PG_RESTART,), {FaultKind.DB_CUT, FaultKind.SLOW_DB}),
        (False, (FaultKind.DISK_FULL,), set()),
    ],
)
def test_kinds_depend_on_the_database(
    postgres: bool, skip: tuple[FaultKind, ...], extra: set[FaultKind]
) -> None:
    """SQLite gets a full disk; PostgreSQL a restart, a cut and slow writes."""
    assert set(kinds_for(postgres, skip)) == set(COMMON_KINDS) | extra


def test_replicas_drawn_lie_in_range() -> None:
    """A fault that hits one replica names one that exists."""
    plan = make_plan(3, 200, kinds_for(postgres=True), 3)
    assert {f.replica for f in plan} == {0, 1, 2}


def test_the_cli_names_every_kind() -> None:
    """``--skip`` offers exactly the kinds the plan knows."""
    assert set(FAULT_KINDS) == {k.value for k in FaultKind}


def test_the_cli_default_event_retention_is_the_runs() -> None:
    """``--event-retention``'s default, written in the CLI, is the run's own default."""
    assert parse_duration(EVENT_RETENTION_DEFAULT) == EVENT_RETENTION_S
    assert ChaosConfig(duration_s=1.0, seed=1).event_retention_s == EVENT_RETENTION_S


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0)]
)
def test_durations(text: str, seconds: float) -> None:
    """Durations take s, m and h."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1m", "ten"])
def test_bad_durations(text: str) -> None:
    """Anything else is refused."""
    with pytest.raises(ValueError, match="a duration"):
        parse_duration(text)
