"""The garbage-collector policy: freeze survivors often, unfreeze and collect rarely."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from armada_jobservice.server.gc_policy import GcPolicy


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    """Leave the test process's collector as it was."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freezes_when_due_and_not_before() -> None:
    """Nothing happens before the freeze interval; then live objects are frozen."""
    policy = GcPolicy(freeze_every_s=5, unfreeze_every_s=100, now=0)
    policy.step(4.9)
    assert gc.get_freeze_count() == 0
    policy.step(5.0)
    assert gc.get_freeze_count() > 0


def test_unfreeze_collects_cycles_that_died_while_frozen() -> None:
    """A reference cycle frozen while alive survives collections until the next unfreeze."""

    class Node:
        """One half of a cycle."""

        other: object = None

    policy = GcPolicy(freeze_every_s=5, unfreeze_every_s=100, now=0)
    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    policy.step(5)  # the cycle is frozen while alive
    del a, b
    gc.collect()
    assert ref() is not None  # frozen: the collector does not look at it
    policy.step(100)  # unfreeze and collect
    assert ref() is None


def test_a_full_collection_on_demand_reports_its_pause() -> None:
    """``full_collection`` (SIGUSR1 in ``serve``) unfreezes, collects and keeps its pause."""
    policy = GcPolicy(freeze_every_s=5, unfreeze_every_s=100, now=0)
    policy.step(5)
    assert gc.get_freeze_count() > 0
    assert policy.last_full_pause_s is None
    pause = policy.full_collection()
    assert gc.get_freeze_count() == 0
    assert pause >= 0
    assert policy.last_full_pause_s == pause
