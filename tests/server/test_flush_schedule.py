"""The writer's schedule as tables of (time, events seen, changes pending) steps, no sleeping."""

from __future__ import annotations

import itertools

import pytest

from armada_jobservice.server.flush_schedule import (
    PING_S,
    QUIET_MIN_GAP_S,
    QUIET_S,
    RETRY_MAX_S,
    RETRY_MIN_S,
    Due,
    FlushSchedule,
)

# Steps are (now, events seen so far, changes pending); each expects the step's answer.
Step = tuple[float, int, bool]
FLUSH = Due(full=False, ping=False, sweep=False)


def schedule(
    flush_interval_s: float = 1.0, expiry_s: float = 300.0, retention_s: float = 86_400.0
) -> FlushSchedule:
    """A schedule started at time 0 with no events seen."""
    return FlushSchedule(
        flush_interval_s=flush_interval_s,
        subscription_expiry_s=expiry_s,
        job_set_retention_s=retention_s,
        now=0.0,
    )


def run(s: FlushSchedule, steps: list[Step]) -> list[Due | None]:
    """Every step's answer, in order."""
    return [s.step(now, seen, pending) for now, seen, pending in steps]


def test_the_first_flush_after_an_interval_does_everything() -> None:
    """Nothing happens before the interval; the first flush is full, pings and sweeps."""
    s = schedule()
    assert run(s, [(0.02, 0, False), (0.5, 0, False), (0.98, 0, False)]) == [None] * 3
    assert s.step(1.0, 0, False) == Due(full=True, ping=True, sweep=True)


@pytest.mark.parametrize(
    ("steps", "answers"),
    [
        pytest.param(
            [(0.02, 1, True), (0.04, 2, True), (0.06, 3, True), (0.08, 3, True), (0.1, 3, True)],
            [None, None, None, None, Due(full=True, ping=True, sweep=True)],
            id="quiet-waits-for-the-min-gap",
        ),
        pytest.param(
            [(0.1, 1, True), (0.12, 2, True), (0.14, 2, True)],
            [None, None, Due(full=True, ping=True, sweep=True)],
            id="quiet-after-a-burst-flushes-at-once",
        ),
        pytest.param(
            [(0.1, 0, False), (0.2, 0, False), (0.5, 0, False)],
            [None, None, None],
            id="quiet-without-changes-waits",
        ),
        pytest.param(
            [(0.1 * n, n, True) for n in range(1, 10)],
            [None] * 9,
            id="a-steady-stream-waits-for-the-interval",
        ),
    ],
)
def test_quiet_streams_flush_early(steps: list[Step], answers: list[Due | None]) -> None:
    """Changes flush as soon as the streams fall quiet, once the minimum gap has passed."""
    assert run(schedule(), steps) == answers


def test_a_steady_stream_still_flushes_every_interval() -> None:
    """Events in every tick never count as quiet, yet a flush comes each interval."""
    s = schedule()
    answers = run(s, [(0.02 * n, n, True) for n in range(1, 101)])
    flushed_at = [round(0.02 * (n + 1), 2) for n, a in enumerate(answers) if a is not None]
    assert flushed_at == [1.0, 2.0]


def test_a_trickle_shares_flushes_at_most_one_per_min_gap() -> None:
    """One event every 60 ms (quiet between each) flushes at most once per QUIET_MIN_GAP_S."""
    s = schedule(flush_interval_s=3600.0)
    steps: list[Step] = []
    seen = 0
    for n in range(1, 151):
        now = round(n * QUIET_S, 4)
        if n % 3 == 0:  # an event in every third tick: 60 ms apart, quiet in between
            seen += 1
        steps.append((now, seen, True))
    flushed_at = [now for (now, _, _), a in zip(steps, run(s, steps), strict=True) if a]
    assert flushed_at, "a trickle with changes pending must flush"
    gaps = [b - a for a, b in itertools.pairwise(flushed_at)]
    assert all(g >= QUIET_MIN_GAP_S - 1e-9 for g in gaps), gaps
    assert flushed_at[0] == pytest.approx(QUIET_MIN_GAP_S, abs=QUIET_S)


def test_full_passes_pings_and_sweeps_keep_their_own_periods() -> None:
    """Full passes each second, pings every PING_S, sweeps every retention/10 (<= 60 s)."""
    s = schedule(flush_interval_s=0.5, retention_s=100.0)  # sweep every 10 s
    answers = {t / 2: s.step(t / 2, 0, False) for t in range(1, 61)}  # every 0.5 s to 30 s
    assert all(a is not None for a in answers.values())
    full = [t for t, a in answers.items() if a and a.full]
    ping = [t for t, a in answers.items() if a and a.ping]
    sweep = [t for t, a in answers.items() if a and a.sweep]
    assert full == [t + 0.5 for t in range(30)]
    assert ping == [0.5, 0.5 + PING_S, 0.5 + 2 * PING_S, 0.5 + 3 * PING_S, 0.5 + 4 * PING_S, 25.5]
    assert sweep == [0.5, 10.5, 20.5]


@pytest.mark.parametrize(
    ("flush_interval_s", "expiry_s", "retention_s", "tick", "housekeeping", "sweep"),
    [
        pytest.param(1.0, 300.0, 86_400.0, QUIET_S, 1.0, 60.0, id="defaults"),
        pytest.param(0.01, 300.0, 86_400.0, 0.01, 1.0, 60.0, id="short-interval-ticks-faster"),
        pytest.param(0.01, 0.2, 86_400.0, 0.01, 0.05, 60.0, id="short-expiry-checked-4x"),
        pytest.param(5.0, 2.0, 100.0, QUIET_S, 5.0, 10.0, id="housekeeping-not-below-interval"),
    ],
)
def test_periods_follow_the_settings(
    flush_interval_s: float,
    expiry_s: float,
    retention_s: float,
    tick: float,
    housekeeping: float,
    sweep: float,
) -> None:
    """The tick, the full-pass period and the sweep period derive from the settings."""
    s = schedule(flush_interval_s, expiry_s, retention_s)
    assert (s.tick_s, s.housekeeping_s, s.sweep_s) == pytest.approx((tick, housekeeping, sweep))


def test_a_flush_with_nothing_else_due_is_a_plain_flush() -> None:
    """Between the periods of the other work, a due flush is only a flush."""
    s = schedule(flush_interval_s=0.1)
    assert s.step(0.1, 0, False) == Due(full=True, ping=True, sweep=True)
    assert s.step(0.2, 0, False) == FLUSH


def test_refused_flushes_back_off_and_a_taken_one_resets() -> None:
    """After each refusal the next flush waits twice as long, up to the cap; then from 1 again."""
    s = schedule(flush_interval_s=0.1)
    assert s.step(0.1, 0, True) is not None
    now, delays = 0.1, []
    for in_a_row in range(1, 10):
        delay = s.flush_refused(now, in_a_row)
        delays.append(delay)
        # Nothing is due before the delay has passed, pending changes or not...
        assert s.step(now + delay * 0.99, 0, True) is None
        # ...and a flush is due once it has.
        now += delay
        assert s.step(now, 0, True) is not None
    assert delays == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, RETRY_MAX_S, RETRY_MAX_S, RETRY_MAX_S]
    )
    assert delays[0] == RETRY_MIN_S
    # A taken flush holds nothing back, and the next refusal counts from 1 again.
    assert s.step(now + 0.1, 0, True) is not None
    assert s.flush_refused(now + 0.1, 1) == RETRY_MIN_S
