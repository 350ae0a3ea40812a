"""The bench's parts on their own: /proc readings, typed messages, child processes, loads.

Real processes and real gRPC servers on 127.0.0.1; nothing here judges speed.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from armada_jobservice._wire import WireState
from armada_jobservice.bench import harness
from armada_jobservice.bench.harness import LIFECYCLE
from armada_jobservice.bench.load import LoadGroup, split
from armada_jobservice.bench.messages import (
    JobSetRef,
    Poll,
    PollCounts,
    PollLoad,
    StreamCounts,
    StreamRead,
    Visibility,
    percentile,
)
from armada_jobservice.bench.procfs import cpu_s, rss_bytes
from armada_jobservice.bench.procs import BenchError, Child
from armada_jobservice.bench.scenarios import SCENARIOS
from armada_jobservice.bench.servers import Constant, ServerChild
from armada_jobservice.bench.simhost import SimHost
from armada_jobservice.cli.bench import DEFAULT_POSTGRES, SCENARIO_NUMBERS


def test_cpu_s_counts_this_process_cpu_time() -> None:
    before, own_before = cpu_s(os.getpid()), time.process_time()
    deadline = own_before + 0.3
    while time.process_time() < deadline:
        pass
    used, own_used = cpu_s(os.getpid()) - before, time.process_time() - own_before
    # /proc counts in clock ticks (10 ms here); process_time is finer.
    assert abs(used - own_used) < 0.05


def test_cpu_s_reads_a_command_name_with_spaces_and_parens(tmp_path: Path) -> None:
    odd = tmp_path / "a) (b c"
    shutil.copy("/bin/sleep", odd)
    proc = subprocess.Popen([str(odd), "5"])
    try:
        assert Path(f"/proc/{proc.pid}/stat").read_text().startswith(f"{proc.pid} (a) (b c)")
        assert 0.0 <= cpu_s(proc.pid) < 1.0
        assert rss_bytes(proc.pid) > 0
    finally:
        proc.kill()
        proc.wait()


def test_rss_bytes_grows_with_touched_memory() -> None:
    before = rss_bytes(os.getpid())
    block = bytearray(64 * 1024 * 1024)  # zero-filled: every page is written
    grown = rss_bytes(os.getpid()) - before
    del block
    assert grown >= 60 * 1024 * 1024


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([], 50, math.nan),
        ([3.0], 99, 3.0),
        ([4.0, 1.0, 3.0, 2.0, 5.0], 50, 3.0),
        ([4.0, 1.0, 3.0, 2.0, 5.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0, 5.0], 100, 5.0),
        ([float(n) for n in range(1, 101)], 99, 99.0),
    ],
)
def test_percentile_is_the_nearest_rank(values: list[float], p: float, expected: float) -> None:
    got = percentile(values, p)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


def test_poll_counts_and_visibility_merge_what_each_process_saw() -> None:
    merged = PollCounts.merged(
        [PollCounts(3, 1, 0, [0.001, 0.002, 0.003]), PollCounts(2, 0, 2, [0.004, 0.005])]
    )
    assert (merged.calls, merged.errors, merged.wrong) == (5, 1, 2)
    assert merged.percentile_ms(100) == pytest.approx(5.0)
    seen = Visibility.merged(
        [Visibility([0.1], [0.2], 0, 1, 0.5), Visibility([0.3, 0.4], [], 2, 0, 0.7)]
    )
    assert (seen.first, seen.visible, seen.errors, seen.missed, seen.first_done) == (
        [0.1, 0.3, 0.4],
        [0.2],
        2,
        1,
        0.7,
    )


def test_split_deals_round_robin() -> None:
    assert split([1, 2, 3, 4, 5], 2) == [[1, 3, 5], [2, 4]]
    assert split([1], 3) == [[1], [], []]


def test_the_cli_offers_exactly_the_scenarios_there_are() -> None:
    assert tuple(SCENARIOS) == SCENARIO_NUMBERS
    assert DEFAULT_POSTGRES == harness.DEFAULT_POSTGRES


def _fails(conn: object, text: str) -> None:
    raise ValueError(text)


def _answers_then_fails(conn: object, text: str) -> None:
    from armada_jobservice.bench.messages import Failed

    conn.send(Failed(f"ValueError({text!r})"))  # type: ignore[attr-defined]


def test_a_failing_child_is_a_bench_error_naming_its_failure() -> None:
    child = Child(_answers_then_fails, "no such job set")
    try:
        with pytest.raises(BenchError, match="no such job set"):
            child.recv(30)
    finally:
        child.stop()
    child = Child(_fails, "boom")
    try:
        with pytest.raises(BenchError, match=r"exited|did not answer"):
            child.recv(30)
    finally:
        child.stop()


@pytest.mark.timeout(120)
def test_a_poll_load_counts_calls_and_wrong_answers_over_grpc() -> None:
    server = ServerChild(Constant())  # answers SUCCEEDED to everything
    try:
        polls = [
            Poll("q", "s", "right", WireState.SUCCEEDED),
            Poll("q", "s", "wrong", WireState.RUNNING),
            Poll("q", "s", "any", None),
        ]
        group = LoadGroup([PollLoad(server.address, polls, "closed", 3, 0.5) for _ in range(2)])
        group.go()
        counts = PollCounts.merged(group.results())
    finally:
        server.stop()
    assert counts.errors == 0
    assert counts.calls > 30
    assert len(counts.latencies_s) == counts.calls
    # Each caller steps through the polls in turn, so a third of them expect RUNNING.
    assert counts.wrong == pytest.approx(counts.calls / 3, abs=6)


@pytest.mark.timeout(120)
def test_the_simulator_host_seeds_streams_and_records_their_requests() -> None:
    sim = SimHost()
    try:
        seeded = sim.seed("q", "set", 2, 3, LIFECYCLE)
        assert [s.job_set_id for s in seeded] == ["set-00000", "set-00001"]
        assert all(len(s.job_ids) == 3 and s.last_message_id for s in seeded)
        sim.stream_requests()
        refs = [JobSetRef("q", s.job_set_id) for s in seeded]
        group = LoadGroup([StreamRead(sim.address, refs, 2 * 3 * len(LIFECYCLE), 60.0, 1)])
        group.go(0.1)
        counts: StreamCounts = group.results()[0]
        requests = sim.stream_requests()
        with pytest.raises(BenchError, match="unknown request"):
            sim.child.call("not a request")
    finally:
        sim.stop()
    assert counts.received == 18
    assert math.isfinite(counts.elapsed_s)
    assert counts.rss_open > 0
    assert sorted((r.queue, r.job_set_id, r.from_message_id) for r in requests) == [
        ("q", "set-00000", ""),
        ("q", "set-00001", ""),
    ]


def test_the_bench_help_does_not_import_the_bench() -> None:
    code = (
        "import sys; from armada_jobservice.cli import main\n"
        "try:\n    main(['bench', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('armada_jobservice.bench')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
