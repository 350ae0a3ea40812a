"""The six scenarios of issue 5, each adding its figures to the report."""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import statistics
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from armada_jobservice.bench.load import LoadGroup, LoadResult, Poll, merge_polls, split
from armada_jobservice.bench.procs import (
    BenchError,
    Child,
    CpuMeter,
    ServiceProcess,
    rss_bytes,
)
from armada_jobservice.bench.report import Figure, Report
from armada_jobservice.bench.servers import ServerChild
from armada_jobservice.bench.simhost import Seeded, SimHost
from armada_jobservice.server.model import JobRow, JobSetKey
from armada_jobservice.server.store.base import JobSetWrite
from armada_jobservice.server.store.sqlite import SQLiteStore
from armada_jobservice.sim.engine import new_job_id

SUBMITTED, RUNNING, FAILED, SUCCEEDED = 0, 2, 3, 4
LIFECYCLE = ("submitted", "running", "succeeded")


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big and how long each scenario is; ``quick`` and ``full`` differ only here."""

    load_processes: int
    concurrency: int
    poll_sets: int
    poll_jobs_per_set: int
    poll_s: float
    first_poll_sets: int
    ingest_one_jobs: int
    ingest_many_sets: int
    ingest_many_jobs_per_set: int
    scale_sets: int
    scale_trickle_per_s: float
    restart_jobs: int
    restart_sets: int
    #: Scenario 1 alternates baseline and service this many times and reports
    #: medians, so that a noisy moment on a shared machine hits both alike.
    rounds: int = 3


SIZES = {
    "full": Sizes(2, 32, 200, 100, 6.0, 2_000, 50_000, 1_000, 30, 10_000, 2_000, 1_000_000, 100),
    "quick": Sizes(2, 32, 100, 50, 2.0, 300, 10_000, 1_000, 5, 2_000, 1_000, 200_000, 100, 2),
    # For the smoke test: every figure through the same code, in seconds.
    "smoke": Sizes(2, 4, 4, 10, 0.5, 20, 200, 20, 5, 50, 200, 2_000, 4, 1),
}


class Bench:
    """What the scenarios share: the simulator, a scratch folder and the report."""

    def __init__(self, report: Report, sizes: Sizes, workdir: Path) -> None:
        self.report = report
        self.sizes = sizes
        self.workdir = workdir
        self.sim = SimHost()
        #: Figures later scenarios compare with, by name.
        self.known: dict[str, float] = {}
        self._dbs = 0

    def close(self) -> None:
        """Stop the simulator."""
        self.sim.stop()

    def cpu(self, name: str, seconds: float) -> None:
        """Add to the CPU seconds the report lists per process role."""
        self.report.cpu_s[name] = round(self.report.cpu_s.get(name, 0.0) + seconds, 3)

    @contextlib.contextmanager
    def service(self, *extra: str, db: Path | None = None) -> Iterator[ServiceProcess]:
        """``armada-jobservice serve`` against the simulator, on a fresh database by default."""
        if db is None:
            self._dbs += 1
            db = self.workdir / f"service-{self._dbs}.db"
        args = ["--armada-url", self.sim.address, "--database", f"sqlite:///{db}"]
        args += ["--max-subscriptions", "20000", *extra]
        proc = ServiceProcess(args, self.workdir / "service.log").start()
        c0 = _cpu(proc.pid)
        try:
            yield proc
        finally:
            self.cpu("service", _cpu(proc.pid) - c0)
            code = proc.stop()
            if code not in (0, None):
                self.report.errors.append(f"service exited with {code}; see service.log")

    def polls(
        self, address: str, pid: int, polls: Sequence[Poll], mode: str, param: float
    ) -> tuple[LoadResult, CpuMeter]:
        """Run one poll load for ``poll_s`` seconds and meter process *pid* meanwhile."""
        n = self.sizes.load_processes
        per_process = param if mode == "closed" else param / n
        group = LoadGroup(
            "polls",
            [(address, part, mode, per_process, self.sizes.poll_s) for part in split(polls, n)],
        )
        start = group.go()
        _sleep_until(start)
        meter = CpuMeter(pid).start()
        time.sleep(self.sizes.poll_s)
        meter.stop()
        result = merge_polls(group.results())
        if result.errors or result.wrong:
            self.report.errors.append(
                f"poll load on {address}: {result.errors} errors, {result.wrong} wrong answers"
            )
        return result, meter

    def touch(self, address: str, polls: Sequence[Poll], concurrency: int = 32) -> float:
        """Send each poll once, without waiting for its answer's state (subscribes).

        Returns the wall-clock instant the first poll went out (after the load
        processes were spawned and ready).
        """
        n = min(self.sizes.load_processes, max(1, len(polls)))
        group = LoadGroup(
            "first_polls", [(address, part, concurrency, 0.0, 0.0) for part in split(polls, n)]
        )
        start = group.go(0.1)
        group.results()
        return start

    def await_visible(
        self, address: str, polls: Sequence[Poll], concurrency: int = 16, interval_s: float = 0.02
    ) -> dict[str, Any]:
        """Poll until each poll's expected state shows; return the merged timings."""
        n = min(self.sizes.load_processes, max(1, len(polls)))
        group = LoadGroup(
            "first_polls",
            [(address, part, concurrency, 600.0, interval_s) for part in split(polls, n)],
        )
        group.go(0.1)
        results = group.results()
        merged: dict[str, Any] = {"first": [], "visible": [], "errors": 0, "missed": 0}
        for r in results:
            merged["first"] += r["first"]
            merged["visible"] += r["visible"]
            merged["errors"] += r["errors"]
            merged["missed"] += r["missed"]
            merged["first_done"] = max(merged.get("first_done", 0.0), r["first_done"])
        if merged["errors"] or merged["missed"]:
            self.report.errors.append(
                f"waiting on {address}: {merged['errors']} errors, {merged['missed']} never visible"
            )
        return merged


def _cpu(pid: int) -> float:
    from armada_jobservice.bench.procs import cpu_s

    return cpu_s(pid)


def _sleep_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        time.sleep(delay)


def _pct(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def per_cpu(r: LoadResult, m: CpuMeter) -> float:
    """Calls answered per CPU second of the metered server."""
    return r.calls / m.cpu_s if m.cpu_s else float("nan")


def _last_polls(seeded: Sequence[Seeded], queue: str, want: int) -> list[Poll]:
    """One poll per job set, of the job whose event comes last: visible means all are in."""
    return [(queue, s, jobs[-1], want) for s, jobs, _ in seeded]


# -- 1 ---------------------------------------------------------------------------------


def _seed_for_polls(bench: Bench, queue: str) -> tuple[list[Seeded], list[Poll]]:
    """Seed the poll scenarios' job sets (all jobs end SUCCEEDED) and a poll of each job.

    The polls are shuffled with a fixed seed, so consecutive polls hit
    different job sets and every run sends the same sequence.
    """
    sz = bench.sizes
    seeded = bench.sim.seed(queue, queue, sz.poll_sets, sz.poll_jobs_per_set, LIFECYCLE)
    polls: list[Poll] = [(queue, s, j, SUCCEEDED) for s, jobs, _ in seeded for j in jobs]
    random.Random(1).shuffle(polls)
    return seeded, polls


def cache_hits(bench: Bench) -> None:
    """Scenario 1: polls of cached jobs vs a bare grpc.aio server answering a constant."""
    sz, rep = bench.sizes, bench.report
    sc = "1 cache-hit polls"
    queue = "hits"
    seeded, polls = _seed_for_polls(bench, queue)
    conc = sz.concurrency

    base = ServerChild("constant")
    cpu = {"base": 0.0}
    try:
        with bench.service() as svc:
            bench.await_visible(svc.address, _last_polls(seeded, queue, SUCCEEDED))
            b_sat_runs, s_sat_runs, b_fix_runs, s_fix_runs = [], [], [], []
            for _ in range(sz.rounds):
                b_sat_runs.append(bench.polls(base.address, base.pid, polls, "closed", conc))
                s_sat_runs.append(bench.polls(svc.address, svc.pid, polls, "closed", conc))
            rate = max(50.0, round(0.5 * _median(_rate(r, m) for r, m in b_sat_runs), -1))
            for _ in range(sz.rounds):
                b_fix_runs.append(bench.polls(base.address, base.pid, polls, "open", rate))
                s_fix_runs.append(bench.polls(svc.address, svc.pid, polls, "open", rate))
            cpu["base"] = sum(m.cpu_s for _, m in b_sat_runs + b_fix_runs)
            bench.known["hits_per_cpu_s"] = _median(per_cpu(r, m) for r, m in s_sat_runs)
            bench.known["hits_rate"] = rate
            bench.known["hits_p50_ms"] = _median(r.percentile_ms(50) for r, _ in s_fix_runs)
            bench.known["hits_p99_ms"] = _median(r.percentile_ms(99) for r, _ in s_fix_runs)
            # Scenario 2 runs on the same process, with these job sets still subscribed.
            first_polls(bench, svc)
    finally:
        bench.cpu("baseline (constant)", cpu["base"])
        base.stop()
    rounds_note = f"median of {sz.rounds} alternating rounds"
    base_name = "bare grpc.aio+uvloop constant"
    Run = tuple[LoadResult, CpuMeter]

    def add(name: str, fn: Any, unit: str, runs: tuple[list[Run], list[Run]], **kw: Any) -> None:
        service_runs, base_runs = runs
        value = _median(fn(r, m) for r, m in service_runs)
        baseline = _median(fn(r, m) for r, m in base_runs)
        rep.add(Figure(sc, name, value, unit, baseline, base_name, **kw))

    sat, fix = (s_sat_runs, b_sat_runs), (s_fix_runs, b_fix_runs)
    add(
        "polls per server-CPU-second, saturated",
        per_cpu,
        "calls/cpu-s",
        sat,
        min_ratio=0.85,
        note=f"{sz.load_processes} load processes x {conc} callers; {rounds_note}",
    )
    add("polls per second, saturated", _rate, "calls/s", sat)
    add(
        "server CPU use, saturated",
        lambda r, m: m.cpu_s / m.wall_s,
        "cores",
        sat,
        higher_is_better=False,
    )
    for label, runs in ((", saturated", sat), (f" at {rate:.0f} polls/s offered", fix)):
        for p in (50, 99):
            add(
                f"p{p} latency{label}",
                lambda r, m, p=p: r.percentile_ms(p),
                "ms",
                runs,
                higher_is_better=False,
            )
    add(f"polls per server-CPU-second at {rate:.0f}/s", per_cpu, "calls/cpu-s", fix)


def _median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def _rate(r: LoadResult, m: CpuMeter) -> float:
    return r.calls / m.wall_s


# -- 2 ---------------------------------------------------------------------------------


def first_polls(bench: Bench, svc: ServiceProcess) -> None:
    """Scenario 2: first polls of new job sets (the subscribe path), on a running service."""
    sz, rep = bench.sizes, bench.report
    sc = "2 first polls"
    queue = "first"
    seeded = bench.sim.seed(queue, "first", sz.first_poll_sets, 3, ("submitted", "running"))
    polls = [(queue, s, jobs[0], None) for s, jobs, _ in seeded]
    meter = CpuMeter(svc.pid).start()
    got = bench.await_visible(svc.address, polls, concurrency=8, interval_s=0.01)
    meter.stop()
    n = len(got["first"])
    rate = n / got["first_done"] if got.get("first_done") else float("nan")
    rep.add(Figure(sc, "first polls per second", rate, "calls/s", note=f"{n} new job sets"))
    per_cpu = n / meter.cpu_s if meter.cpu_s else float("nan")
    rep.add(
        Figure(
            sc,
            "job sets subscribed per server-CPU-second",
            per_cpu,
            "sets/cpu-s",
            bench.known.get("hits_per_cpu_s"),
            "cache-hit polls/cpu-s (1)",
            note="includes the repeat polls until visible (every 10 ms)",
        )
    )
    rep.add(
        Figure(
            sc,
            "first poll answer p50",
            _pct(got["first"], 50) * 1000,
            "ms",
            bench.known.get("hits_p50_ms"),
            "cache-hit p50 (1)",
            higher_is_better=False,
        )
    )
    # The baseline: opening the same streams straight from the simulator.
    group = LoadGroup("first_events", [(bench.sim.address, [(queue, s) for s, _, _ in seeded], 16)])
    group.go(0.1)
    direct = group.results()[0]["visible"]
    for p in (50, 99):
        rep.add(
            Figure(
                sc,
                f"time until first event visible p{p}",
                _pct(got["visible"], p) * 1000,
                "ms",
                _pct(direct, p) * 1000,
                "first event on a direct stream",
                higher_is_better=False,
                note="polled every 10 ms by 16 callers",
            )
        )


# -- 3 ---------------------------------------------------------------------------------


def _durable(db: Path, expected: dict[tuple[str, str], str]) -> bool:
    """Whether the database holds every job set at its expected last position."""
    if not db.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return False
    try:
        rows = conn.execute("SELECT queue, job_set_id, last_message_id FROM job_sets").fetchall()
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    stored = {(q, s): m for q, s, m in rows}
    return all(stored.get(k) == m for k, m in expected.items())


@contextlib.contextmanager
def _held_streams(bench: Bench, want: int) -> Iterator[list[float]]:
    """Hold the simulator's streams; the body opens *want* more; then release them.

    The body runs with streams held; on its normal exit this waits until the
    streams are open and releases them, appending the release's wall-clock
    time to the yielded list. Streams are released however the body ends.
    """
    sim = bench.sim
    before = sim.open_streams()
    sim.hold()
    released: list[float] = []
    try:
        yield released
        deadline = time.time() + 120
        while sim.open_streams() < before + want:
            if time.time() > deadline:
                raise BenchError(f"{want} streams did not open within 120 s")
            time.sleep(0.01)
        released.append(sim.release())
    finally:
        sim.release()


def _ingest_baseline(
    bench: Bench, job_sets: list[tuple[str, str]], events: int, held: bool
) -> tuple[float, float, float]:
    """One receive-and-parse run: (events/s, its CPU us per event, simulator CPU us per event).

    *held*: the streams are all open before the simulator sends, and the run
    is timed from that release; otherwise from the client's first call.
    """
    group = LoadGroup("streams", [(bench.sim.address, job_sets, events, 300.0, 1 << 30)])
    sim_meter = CpuMeter(bench.sim.pid)
    cpu_at_release = 0.0
    with contextlib.ExitStack() as stack:
        released = stack.enter_context(_held_streams(bench, len(job_sets))) if held else []
        start = group.go()
        _sleep_until(start)
        if held:
            stack.close()  # waits for the streams to open, then releases them
            cpu_at_release = _cpu(group.pids[0])
        sim_meter.start()
    base = group.results()[0]
    sim_meter.stop()
    if base["received"] < events:
        return 0.0, float("nan"), float("nan")
    if held:
        elapsed, cpu = base["done_at"] - released[0], base["cpu_done_s"] - cpu_at_release
    else:
        elapsed, cpu = base["elapsed_s"], base["cpu_s"]
    return events / elapsed, cpu / events * 1e6, sim_meter.cpu_s / events * 1e6


def _ingest_service(
    bench: Bench, queue: str, seeded: Sequence[Seeded], events: int, label: str, held: bool
) -> tuple[float, float]:
    """One service run on a fresh database: (events/s applied and flushed, CPU us per event).

    The first poll of each job set subscribes it. *held*: the streams are all
    open before the simulator sends, and the run is timed from that release;
    otherwise from the first poll.
    """
    bench._dbs += 1
    db = bench.workdir / f"service-{bench._dbs}.db"
    expected = {(queue, s): last for s, _, last in seeded}
    polls: list[Poll] = [(queue, s, jobs[0], None) for s, jobs, _ in seeded]
    with bench.service(db=db) as svc:
        meter = CpuMeter(svc.pid)
        if held:
            with _held_streams(bench, len(seeded)) as released:
                bench.touch(svc.address, polls)
                meter.start()
            start = released[0]
        else:
            meter.start()
            start = bench.touch(svc.address, polls)
        while not _durable(db, expected):
            if time.time() - start > 600:
                bench.report.errors.append(f"ingestion over {label}: not durable after 600 s")
                break
            time.sleep(0.02)
        elapsed = time.time() - start
        meter.stop()
    return events / elapsed, meter.cpu_s / events * 1e6


def ingestion(bench: Bench) -> None:
    """Scenario 3: events applied and flushed to SQLite vs a receive-and-parse-only client.

    The target figure is timed from open streams: both sides open every
    stream first (the service through one first poll per job set) while the
    simulator holds them, and the clock starts when it lets them send. Over
    many job sets the same is also measured from the first call, so that
    opening the streams (the subscribe path) is included, as after a restart.
    Baseline and service take turns, ``rounds`` times; medians are reported.
    """
    sz, rep = bench.sizes, bench.report
    sc = "3 ingestion"
    rounds_note = f"median of {sz.rounds} alternating rounds"
    base_name = "receive-and-parse client"
    for label, n_sets, jobs_per_set in (
        ("1 job set", 1, sz.ingest_one_jobs),
        (f"{sz.ingest_many_sets:,} job sets", sz.ingest_many_sets, sz.ingest_many_jobs_per_set),
    ):
        queue = f"ingest-{n_sets}"
        seeded = bench.sim.seed(queue, queue, n_sets, jobs_per_set, LIFECYCLE)
        events = n_sets * jobs_per_set * len(LIFECYCLE)
        job_sets = [(queue, s) for s, _, _ in seeded]
        modes = (True, False) if n_sets > 1 else (True,)
        base_runs: dict[bool, list[tuple[float, float, float]]] = {m: [] for m in modes}
        service_runs: dict[bool, list[tuple[float, float]]] = {m: [] for m in modes}
        for _ in range(sz.rounds):
            for held in modes:
                base_runs[held].append(_ingest_baseline(bench, job_sets, events, held))
                service_runs[held].append(
                    _ingest_service(bench, queue, seeded, events, label, held)
                )
        for held in modes:
            base_rate, base_cpu_us, sim_cpu_us = (
                _median(r[i] for r in base_runs[held]) for i in range(3)
            )
            rate, cpu_us = (_median(r[i] for r in service_runs[held]) for i in range(2))
            how = "" if held else ", timed from the first poll (streams opened by the polls)"
            rep.add(
                Figure(
                    sc,
                    f"events/s applied and flushed, {label}{how}",
                    rate,
                    "events/s",
                    base_rate,
                    base_name + ("" if held else " timed from its first call"),
                    min_ratio=0.8 if held else None,
                    note=(
                        f"{events:,} events; "
                        + ("streams open before the first event; " if held else "")
                        + f"default flushes (1 s while busy, ~0.1 s once quiet); {rounds_note}"
                    ),
                )
            )
            rep.add(
                Figure(
                    sc,
                    f"server CPU per event, {label}{how}",
                    cpu_us,
                    "us",
                    base_cpu_us,
                    f"{base_name} CPU per event",
                    higher_is_better=False,
                    note=f"simulator: {sim_cpu_us:.0f} us per event sent; {rounds_note}",
                )
            )


# -- 4 ---------------------------------------------------------------------------------


def subscription_scale(bench: Bench) -> None:
    """Scenario 4: many job sets subscribed at once: memory per stream, polls while streaming."""
    sz, rep = bench.sizes, bench.report
    sc = "4 subscription scale"
    queue = "scale"
    seeded = bench.sim.seed(queue, "scale", sz.scale_sets, 1, ("submitted",))
    job_sets = [(queue, s) for s, _, _ in seeded]
    group = LoadGroup("streams", [(bench.sim.address, job_sets, len(job_sets), 300.0, 100)])
    group.go()
    bare = group.results()[0]
    bare_per_stream = (bare["rss_open"] - bare["rss_before"]) / len(job_sets)

    with bench.service() as svc:
        time.sleep(0.5)
        rss0 = rss_bytes(svc.pid)
        t0 = time.perf_counter()
        bench.touch(svc.address, [(queue, s, jobs[0], None) for s, jobs, _ in seeded])
        bench.await_visible(svc.address, [(queue, s, jobs[0], SUBMITTED) for s, jobs, _ in seeded])
        opened_s = time.perf_counter() - t0
        rss1 = rss_bytes(svc.pid)
        streams = bench.sim.open_streams()
        per_sub = (rss1 - rss0) / len(seeded)
        rep.add(
            Figure(
                sc,
                "RSS per subscription",
                per_sub,
                "bytes",
                bare_per_stream,
                "bare client per open stream",
                higher_is_better=False,
                note=f"{len(seeded):,} job sets; simulator saw {streams:,} open streams",
            )
        )
        rep.add(
            Figure(
                sc,
                "job sets subscribed and visible per second",
                len(seeded) / opened_s,
                "sets/s",
            )
        )
        # Polls at scenario 1's offered load while every stream receives events.
        rate = bench.known.get("hits_rate", 500.0)
        bench.sim.trickle(queue, [s for s, _, _ in seeded], sz.scale_trickle_per_s)
        polls: list[Poll] = [(queue, s, jobs[0], None) for s, jobs, _ in seeded]
        random.Random(2).shuffle(polls)
        result, _ = bench.polls(svc.address, svc.pid, polls, "open", rate)
        published = bench.sim.trickle_stop()
        note = f"{sz.scale_trickle_per_s:,.0f} events/s over {len(seeded):,} streams"
        rep.info["scale_events_published"] = published
        for p in (50, 99):
            rep.add(
                Figure(
                    sc,
                    f"p{p} latency at {rate:.0f} polls/s while streaming",
                    result.percentile_ms(p),
                    "ms",
                    bench.known.get(f"hits_p{p}_ms"),
                    "same load, no streams (1)",
                    higher_is_better=False,
                    note=note,
                )
            )


# -- 5 (and the per-job memory of 4) ---------------------------------------------------


def _dict_memory(conn: Any, n: int) -> None:
    """Child: RSS growth of a plain dict of *n* 26-character ids to small tuples."""
    rng = random.Random(3)
    before = rss_bytes(os.getpid())
    table = {new_job_id(rng): (SUCCEEDED, None, 0.0) for _ in range(n)}
    conn.send(("ok", (rss_bytes(os.getpid()) - before) / len(table)))


def _seed_db(db: Path, queue: str, seeded: Sequence[Seeded], jobs_per_set: int) -> dict[str, Any]:
    """Write *jobs_per_set* jobs for each seeded job set, positioned at its last event."""
    store = SQLiteStore(str(db))
    store.open()
    rng = random.Random(4)
    expected: dict[str, tuple[str, int]] = {}
    batch = []
    for s, _, last in seeded:
        rows = []
        for i in range(jobs_per_set):
            if i % 20 == 0:
                row = JobRow(
                    new_job_id(rng), FAILED, "OOMKilled (cause: OOM; exit codes: main=137)"
                )
            elif i % 3 == 0:
                row = JobRow(new_job_id(rng), RUNNING, None)
            else:
                row = JobRow(new_job_id(rng), SUCCEEDED, None)
            rows.append(row)
        expected[s] = (rows[-1].job_id, rows[-1].state)
        batch.append(JobSetWrite(JobSetKey(queue, s), last, time.time(), rows))
        if len(batch) >= 10:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)
    store.close()
    return expected


def restart(bench: Bench) -> None:
    """Scenario 5: start with many jobs in the database; and the memory per cached job."""
    sz, rep = bench.sizes, bench.report
    sc = "5 restart"
    queue = "restart"
    jobs_per_set = sz.restart_jobs // sz.restart_sets
    total = jobs_per_set * sz.restart_sets
    seeded = bench.sim.seed(queue, "restart", sz.restart_sets, 2, ("submitted", "running"))
    db = bench.workdir / "restart.db"
    expected = _seed_db(db, queue, seeded, jobs_per_set)
    positions = {s: last for s, _, last in seeded}
    polls: list[Poll] = [(queue, s, job, state) for s, (job, state) in expected.items()]
    empty_db = bench.workdir / "restart-empty.db"
    empty_polls: list[Poll] = [(queue, s, jobs[0], RUNNING) for s, jobs, _ in seeded]

    def start_and_serve(path: Path, todo: list[Poll]) -> tuple[float, float, float, int, int]:
        t0 = time.perf_counter()
        with bench.service(db=path) as svc:
            listening = time.perf_counter() - t0
            bench.await_visible(svc.address, todo[:1], concurrency=1, interval_s=0.005)
            first_s = time.perf_counter() - t0
            # Memory is counted from here: the first job set paid the one-off
            # costs (store thread, channel to Armada, first calls).
            rss0 = rss_bytes(svc.pid)
            bench.await_visible(svc.address, todo[1:], concurrency=8, interval_s=0.01)
            all_s = time.perf_counter() - t0
            rss1 = rss_bytes(svc.pid)
        return listening, first_s, all_s, rss0, rss1

    bench.sim.stream_requests()
    _e_listen, e_first, e_all, _, _ = start_and_serve(empty_db, empty_polls)
    bench.sim.stream_requests()
    listen, first_s, all_s, rss0, rss1 = start_and_serve(db, polls)
    requests = [r for r in bench.sim.stream_requests() if r[0] == queue]
    replays = sum(1 for _, s, from_id in requests if from_id != positions[s])
    rep.add(
        Figure(
            sc,
            f"start to first correct answer, {total:,} jobs stored",
            first_s * 1000,
            "ms",
            e_first * 1000,
            "same with an empty database",
            higher_is_better=False,
            note=f"listening after {listen * 1000:.0f} ms",
        )
    )
    rep.add(
        Figure(
            sc,
            f"start to every job set answering correctly, {total:,} jobs",
            all_s,
            "s",
            e_all,
            "same with an empty database",
            higher_is_better=False,
            note=f"{sz.restart_sets} job sets of {jobs_per_set:,} jobs",
        )
    )
    rep.add(
        Figure(
            sc,
            "streams not resumed from the stored position",
            replays,
            "streams",
            note=f"of {len(requests)} stream requests recorded by the simulator",
        )
    )
    rep.info["restart_stream_requests"] = len(requests)

    child = Child(_dict_memory, total)
    plain = child.recv(600)[1]
    child.stop()
    rep.add(
        Figure(
            "4 subscription scale",
            f"RSS per cached job at {total:,} jobs",
            (rss1 - rss0) / (total - jobs_per_set),
            "bytes",
            plain,
            "plain dict id -> 3-tuple",
            higher_is_better=False,
            max_value=160,
            note=f"everything included: {sz.restart_sets} subscriptions, SQLite cache",
        )
    )


# -- 6 ---------------------------------------------------------------------------------


def old_way(bench: Bench) -> None:
    """Scenario 6: the same polls served by a write-through design (a write per event)."""
    sz, rep = bench.sizes, bench.report
    sc = "6 old way"
    queue = "old"
    seeded, polls = _seed_for_polls(bench, queue)
    events = len(polls) * len(LIFECYCLE)

    def run(address: str, pid: int) -> tuple[float, float, float]:
        meter = CpuMeter(pid).start()
        t0 = time.perf_counter()
        bench.await_visible(address, _last_polls(seeded, queue, SUCCEEDED), interval_s=0.05)
        ingest_s = time.perf_counter() - t0
        meter.stop()
        result, m = bench.polls(address, pid, polls, "closed", sz.concurrency)
        return result.calls / m.cpu_s, events / ingest_s, meter.cpu_s / events * 1e6

    wt = ServerChild("write_through", bench.sim.address, str(bench.workdir / "write-through.db"))
    try:
        w_poll, w_ingest, w_cpu = run(wt.address, wt.pid)
    finally:
        wt.stop()
    with bench.service() as svc:
        s_poll, s_ingest, s_cpu = run(svc.address, svc.pid)
    base = "write-through (a write per event, a read per poll)"
    rep.add(
        Figure(sc, "polls per server-CPU-second, saturated", s_poll, "calls/cpu-s", w_poll, base)
    )
    rep.add(
        Figure(
            sc,
            "events/s until visible to polls",
            s_ingest,
            "events/s",
            w_ingest,
            base,
            note=f"{events:,} events over {len(seeded)} job sets",
        )
    )
    rep.add(Figure(sc, "server CPU per event", s_cpu, "us", w_cpu, base, higher_is_better=False))


SCENARIOS = {
    "1": cache_hits,  # runs 2 on the same service process
    "3": ingestion,
    "4": subscription_scale,
    "5": restart,
    "6": old_way,
}


def summarize(values: Sequence[float]) -> float:
    """The median of *values* (NaN when empty)."""
    return statistics.median(values) if values else float("nan")
