"""Scenario 7: two replicas on one PostgreSQL database against one (needs PostgreSQL).

Polls are spread over two replicas of a fleet and compared, per server-CPU
second, with the same polls to one replica on a database of its own; events
are timed from publication until visible through the job set's owner and
through the other replica; then the owner of half the job sets is killed
(SIGKILL), and later the remaining owner stopped (SIGTERM), and the time
until the first event after it is visible through a survivor is the
takeover time. The PostgreSQL sessions of the fleet are metered too.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import time
import uuid
from collections.abc import Iterator, Sequence

from armada_jobservice._wire import WireState
from armada_jobservice.bench.harness import LIFECYCLE, Bench, Run, last_polls, median, per_cpu
from armada_jobservice.bench.load import LoadGroup
from armada_jobservice.bench.messages import Poll, Seeded, VisibleAt, percentile
from armada_jobservice.bench.procfs import cpu_s
from armada_jobservice.bench.procs import BenchError, ServiceProcess
from armada_jobservice.bench.report import Figure
from armada_jobservice.bench.targets import target
from armada_jobservice.sim.engine import new_job_id

SCENARIO = "7 fleet"
#: Published events are spaced this far apart when timed one by one.
GAP_S = 0.05


def run(bench: Bench) -> None:
    """Scenario 7: a fleet of two replicas on PostgreSQL against one replica."""
    sz, rep = bench.sizes, bench.report
    shape = (sz.fleet_sets, sz.fleet_jobs_per_set, LIFECYCLE)
    solo_seeded = bench.sim.seed("fleet-1", "fleet", *shape)
    seeded = bench.sim.seed("fleet-2", "fleet", *shape)
    solo_polls = _polls_of("fleet-1", solo_seeded)
    polls = _polls_of("fleet-2", seeded)
    url = bench.postgres_url
    with contextlib.ExitStack() as stack:
        solo_db = stack.enter_context(_schema(url))
        fleet_db = stack.enter_context(_schema(url))
        solo = stack.enter_context(bench.service("--replica-name", "bench-solo", database=solo_db))
        a = stack.enter_context(bench.service("--replica-name", "bench-a", database=fleet_db))
        b = stack.enter_context(bench.service("--replica-name", "bench-b", database=fleet_db))
        # Two replicas that know nothing of each other (SQLite files of their own):
        # what splitting the same load over two processes costs, fleet or not.
        lone_a = stack.enter_context(bench.service())
        lone_b = stack.enter_context(bench.service())
        for svc in (lone_a, lone_b):
            bench.await_visible(
                svc.address, last_polls(solo_seeded, "fleet-1", WireState.SUCCEEDED)
            )
        bench.sim.stream_requests()
        bench.await_visible(solo.address, last_polls(solo_seeded, "fleet-1", WireState.SUCCEEDED))
        for svc in (a, b):
            bench.await_visible(svc.address, last_polls(seeded, "fleet-2", WireState.SUCCEEDED))
        opened = [r for r in bench.sim.stream_requests() if r.queue == "fleet-2"]

        # Saturated polls: one replica against two, alternating.
        solo_runs: list[Run] = []
        pair_runs: list[tuple[int, float, float]] = []
        lone_runs: list[tuple[int, float, float]] = []
        db_pair = _Meter(_backends(url, ("bench-a", "bench-b")))
        for _ in range(sz.rounds):
            solo_runs.append(
                bench.polls(solo.address, solo.pid, solo_polls, "closed", sz.concurrency)
            )
            db_pair.start()
            pair_runs.append(_spread(bench, (a, b), polls))
            db_pair.stop()
            lone_runs.append(_spread(bench, (lone_a, lone_b), solo_polls))
        solo_per_cpu = median(per_cpu(r, m) for r, m in solo_runs)
        pair_per_cpu = median(calls / cpu if cpu else math.nan for calls, cpu, _ in pair_runs)
        rep.add(
            Figure(
                SCENARIO,
                "polls per server-CPU-second, 2 replicas summed",
                pair_per_cpu,
                "calls/cpu-s",
                solo_per_cpu,
                "1 replica (own database)",
                **target("fleet_polls_per_cpu_s"),
                note=f"saturated; median of {sz.rounds} alternating rounds",
            )
        )
        rep.add(
            Figure(
                SCENARIO,
                "polls per server-CPU-second, 2 replicas of a fleet vs 2 unrelated",
                pair_per_cpu,
                "calls/cpu-s",
                median(calls / cpu if cpu else math.nan for calls, cpu, _ in lone_runs),
                "2 replicas with SQLite files of their own",
                note="what the fleet itself costs per poll, the split of the load aside",
            )
        )
        rep.add(
            Figure(
                SCENARIO,
                "polls per second, 2 replicas",
                median(calls / wall for calls, _, wall in pair_runs),
                "calls/s",
                median(r.calls / m.wall_s for r, m in solo_runs),
                "1 replica",
                note="the load processes share the 2 cores: no target here",
            )
        )
        rep.add(
            Figure(
                SCENARIO,
                "PostgreSQL CPU while 2 replicas answer polls",
                db_pair.cores(),
                "cores",
                higher_is_better=False,
                note="the fleet's sessions: renewals and follower reads",
            )
        )
        rep.add(
            Figure(
                SCENARIO,
                "streams opened per job set",
                len(opened) / len(seeded),
                "streams",
                **target("fleet_streams_per_job_set"),
                note=f"{len(seeded)} job sets, first polls through both replicas",
            )
        )

        # Event to visible, through the owner and through the other replica.
        owners = _owners(fleet_db, "fleet-2")
        db_events = _Meter(_backends(url, ("bench-a", "bench-b")))
        db_events.start()
        owner_ms, follower_ms = _staleness(bench, seeded, owners, {"bench-a": a, "bench-b": b})
        db_events.stop()
        for p in (50, 99):
            rep.add(
                Figure(
                    SCENARIO,
                    f"event to visible through the other replica p{p}",
                    percentile(follower_ms, p),
                    "ms",
                    percentile(owner_ms, p),
                    "through the owner",
                    higher_is_better=False,
                    **(target("fleet_other_replica_p99") if p == 99 else {}),
                    note=f"{len(follower_ms)} events, {GAP_S * 1000:.0f} ms apart",
                )
            )
        rep.add(
            Figure(
                SCENARIO,
                "PostgreSQL CPU while events flow",
                db_events.cores(),
                "cores",
                higher_is_better=False,
                note=f"one event each {GAP_S * 1000:.0f} ms; flushes, renewals, follower reads",
            )
        )

        # The same while every job set of the fleet receives a steady stream of events:
        # owners flush every flush_interval_s then, not soon after each event.
        rate = sz.fleet_trickle_per_s
        bench.sim.trickle("fleet-2", [s.job_set_id for s in seeded], rate)
        try:
            busy_owner_ms, busy_follower_ms = _staleness(
                bench, seeded, owners, {"bench-a": a, "bench-b": b}
            )
        finally:
            bench.sim.trickle_stop()
        for p in (50, 99):
            rep.add(
                Figure(
                    SCENARIO,
                    f"event to visible through the other replica p{p}, {rate:,.0f} events/s",
                    percentile(busy_follower_ms, p),
                    "ms",
                    percentile(busy_owner_ms, p),
                    "through the owner",
                    higher_is_better=False,
                    **(target("fleet_other_replica_busy_p99") if p == 99 else {}),
                    note=f"a steady stream over {len(seeded)} job sets; default settings",
                )
            )

        # Takeover after SIGKILL of a, then after SIGTERM of b (which then owns everything).
        killed = _takeover(bench, seeded, owners, "bench-a", a, b, kill=True)
        c = stack.enter_context(bench.service("--replica-name", "bench-c", database=fleet_db))
        bench.await_visible(c.address, last_polls(seeded, "fleet-2", WireState.SUCCEEDED))
        stopped = _takeover(
            bench, seeded, _owners(fleet_db, "fleet-2"), "bench-b", b, c, kill=False
        )
        for how, times in (("SIGKILL", killed), ("SIGTERM", stopped)):
            rep.add(
                Figure(
                    SCENARIO,
                    f"takeover after {how} of the owner, median",
                    median(times) if times else math.nan,
                    "s",
                    note=(
                        f"{len(times)} job sets; until an event published right after the "
                        "signal is visible through the survivor; "
                        f"worst {max(times, default=0):.2f} s"
                    ),
                    higher_is_better=False,
                    **target(f"fleet_takeover_{how.lower()}"),
                )
            )


def _spread(
    bench: Bench, pair: tuple[ServiceProcess, ServiceProcess], polls: Sequence[Poll]
) -> tuple[int, float, float]:
    """Saturated polls over two servers: (calls, their CPU seconds summed, wall seconds)."""
    result, meters = bench.spread_polls(
        [(svc.address, svc.pid) for svc in pair], polls, "closed", bench.sizes.concurrency
    )
    return result.calls, sum(m.cpu_s for m in meters), max(m.wall_s for m in meters)


def _polls_of(queue: str, seeded: Sequence[Seeded]) -> list[Poll]:
    polls = [
        Poll(queue, s.job_set_id, job, WireState.SUCCEEDED) for s in seeded for job in s.job_ids
    ]
    random.Random(7).shuffle(polls)
    return polls


def _staleness(
    bench: Bench,
    seeded: Sequence[Seeded],
    owners: dict[str, str],
    replicas: dict[str, ServiceProcess],
) -> tuple[list[float], list[float]]:
    """(ms through the owner, ms through the other) per event, published GAP_S apart."""
    rng = random.Random(8)
    samples = [
        (seeded[i % len(seeded)].job_set_id, new_job_id(rng))
        for i in range(bench.sizes.fleet_samples)
    ]
    polls = [Poll("fleet-2", s, j, WireState.SUBMITTED) for s, j in samples]
    start = time.time() + 1.0
    group = LoadGroup(
        [VisibleAt(svc.address, polls, start, GAP_S, 0.005, 10.0) for svc in replicas.values()]
    )
    group.go(0.0)
    published = bench.sim.publish_paced(
        "fleet-2", [(s, "submitted", j) for s, j in samples], start, GAP_S
    )
    seen = dict(zip(replicas, group.results(), strict=True))
    owner_ms: list[float] = []
    follower_ms: list[float] = []
    for i, (job_set_id, _) in enumerate(samples):
        owner = owners.get(job_set_id)
        if owner not in replicas:
            bench.report.errors.append(f"fleet: no owner of {job_set_id}")
            continue
        other = next(name for name in replicas if name != owner)
        for name, out in ((owner, owner_ms), (other, follower_ms)):
            at = seen[name][i]
            if math.isnan(at):
                bench.report.errors.append(f"fleet: event of {job_set_id} never seen via {name}")
            else:
                out.append((at - published[i]) * 1000)
    return owner_ms, follower_ms


def _takeover(
    bench: Bench,
    seeded: Sequence[Seeded],
    owners: dict[str, str],
    victim_name: str,
    victim: ServiceProcess,
    survivor: ServiceProcess,
    *,
    kill: bool,
) -> list[float]:
    """Seconds from the signal until an event published after it is visible via *survivor*."""
    rng = random.Random(9)
    taken = [s.job_set_id for s in seeded if owners.get(s.job_set_id) == victim_name]
    if not taken:
        bench.report.errors.append(f"fleet: replica {victim_name} owned no job set")
        return []
    polls = [Poll("fleet-2", s, new_job_id(rng), WireState.SUBMITTED) for s in taken]
    group = LoadGroup([VisibleAt(survivor.address, polls, time.time(), 0.0, 0.05, 60.0)])
    at = time.time()
    if kill:
        victim.kill()
    else:
        victim.signal(signal.SIGTERM)
    group.go(0.0)
    bench.sim.publish_paced(
        "fleet-2", [(p.job_set_id, "submitted", p.job_id) for p in polls], at, 0.0
    )
    seen: list[float] = group.results()[0]
    if not kill:
        code = victim.wait()
        if code != 0:
            bench.report.errors.append(f"fleet: replica {victim_name} exited {code} on SIGTERM")
    missing = sum(1 for t in seen if math.isnan(t))
    if missing:
        bench.report.errors.append(f"fleet: {missing} job sets not taken over within 60 s")
    return [t - at for t in seen if not math.isnan(t)]


@contextlib.contextmanager
def _schema(url: str) -> Iterator[str]:
    """A fresh schema of the PostgreSQL database at *url*; its URL; dropped afterwards."""
    try:
        import psycopg
    except ImportError as exc:
        raise BenchError("scenario 7 needs psycopg (the postgres extra)") from exc
    name = "bench_" + uuid.uuid4().hex[:12]
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
    except psycopg.Error as exc:
        raise BenchError(f"scenario 7 needs PostgreSQL at {url} (--postgres): {exc}") from exc
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def _owners(database: str, queue: str) -> dict[str, str]:
    """Job set -> the replica holding its lease now, in the fleet's database."""
    import psycopg

    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT job_set_id, owner FROM job_set_owners "
            "WHERE queue = %s AND owner IS NOT NULL AND expires_at > now()",
            (queue,),
        ).fetchall()
    return {job_set_id: owner for job_set_id, owner in rows}


def _backends(url: str, replicas: Sequence[str]) -> list[int]:
    """Process ids of the PostgreSQL sessions of the named replicas."""
    import psycopg

    names = [f"armada-jobservice {r}" for r in replicas]
    names += [f"{n} fleet" for n in names]
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = ANY(%s)", (names,)
        ).fetchall()
    return [int(pid) for (pid,) in rows]


class _Meter:
    """CPU of several processes (the database's sessions), summed; those gone count no more."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self._c0: dict[int, float] = {}
        self._t0 = 0.0

    def start(self) -> None:
        """Take the starting readings."""
        self._c0 = {}
        for pid in self.pids:
            with contextlib.suppress(OSError):
                self._c0[pid] = cpu_s(pid)
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        """Add what each process used since ``start()``."""
        for pid, c0 in self._c0.items():
            with contextlib.suppress(OSError):
                self.cpu_s += cpu_s(pid) - c0
        self.wall_s += time.perf_counter() - self._t0

    def cores(self) -> float:
        """CPU seconds per second over the metered windows."""
        return self.cpu_s / self.wall_s if self.wall_s else math.nan
