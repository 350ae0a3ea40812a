"""``armada-jobservice bench`` end to end at tiny sizes: every figure is produced.

Nothing here looks at how fast anything was: machines are shared and noisy,
so the smoke test only checks that the run completes and reports each figure.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

#: Every figure the bench reports, by scenario and the start of its name.
EXPECTED = [
    ("1 cache-hit polls", "polls per server-CPU-second, saturated"),
    ("1 cache-hit polls", "polls per second, saturated"),
    ("1 cache-hit polls", "p50 latency, saturated"),
    ("1 cache-hit polls", "p99 latency, saturated"),
    ("1 cache-hit polls", "p50 latency at "),
    ("1 cache-hit polls", "p99 latency at "),
    ("2 first polls", "first polls per second"),
    ("2 first polls", "time until first event visible p50"),
    ("2 first polls", "time until first event visible p99"),
    ("3 ingestion", "events/s applied and flushed, 1 job set, timed from the first poll"),
    ("3 ingestion", "events/s applied and flushed, 1 job set, from open streams"),
    ("3 ingestion", "events/s applied and flushed, 20 job sets, timed from the first poll"),
    ("3 ingestion", "events/s applied and flushed, 20 job sets, from open streams"),
    ("3 ingestion", "server CPU per event, 1 job set, timed from the first poll"),
    ("3 ingestion", "server CPU per event, 1 job set, from open streams"),
    ("3 ingestion", "server CPU per event, 20 job sets, timed from the first poll"),
    ("3 ingestion", "server CPU per event, 20 job sets, from open streams"),
    ("4 subscription scale", "RSS per subscription"),
    ("4 subscription scale", "RSS per cached job at "),
    ("4 subscription scale", "p50 latency at "),
    ("4 subscription scale", "p99 latency at "),
    ("4 subscription scale", "p99 latency while streaming, a full garbage collection forced"),
    ("4 subscription scale", "longest poll while streaming, a full garbage collection forced"),
    ("5 restart", "start to first correct answer"),
    ("5 restart", "start to every job set answering correctly"),
    ("5 restart", "streams not resumed from the stored position"),
    ("6 old way", "polls per server-CPU-second, saturated"),
    ("6 old way", "events/s until visible to polls"),
    ("6 old way", "server CPU per event"),
    ("7 fleet", "polls per server-CPU-second, 2 replicas summed"),
    ("7 fleet", "streams opened per job set"),
    ("7 fleet", "event to visible through the other replica p99"),
    ("7 fleet", "takeover after SIGKILL of the owner"),
    ("7 fleet", "takeover after SIGTERM of the owner"),
    ("7 fleet", "PostgreSQL CPU while events flow"),
    ("8 batch and watch", "jobs answered per server-CPU-second, 100 per GetJobStatuses call"),
    ("8 batch and watch", "server CPU per minute, waiting jobs followed by watching"),
    ("8 batch and watch", "server CPU per minute the waits add (above idle), watching"),
    ("8 batch and watch", "server CPU per minute the waits add (above idle and the events"),
    ("8 batch and watch", "event-to-client delay p99, watching"),
    ("9 overload", "steady poller p99 during a first-poll flood"),
    ("9 overload", "steady poller p99 during a poll flood"),
    ("9 overload", "job sets subscribed after"),
    ("9 overload", "poll flood: calls shed per second"),
    ("9 overload", "calls that timed out, all phases"),
    ("9 overload", "service RSS peak through the floods"),
    ("9 overload", "steady poller p99 after the floods"),
    ("8 batch and watch", "triggerer: calls made"),
    ("8 batch and watch", "triggerer: its own CPU per minute"),
]


@pytest.mark.timeout(600)
def test_bench_smoke_reports_every_figure(tmp_path: Path) -> None:
    """A tiny run through the same code as ``--quick`` exits 0 and reports each figure.

    Every value, baseline and range is a finite number; the run is recorded
    and ``bench report`` renders it with every figure.
    """
    out = tmp_path / "bench.json"
    runs = tmp_path / "runs"
    cli = [sys.executable, "-m", "armada_jobservice.cli", "bench"]
    proc = subprocess.run(
        [*cli, "--smoke", "--json", str(out), "--record", str(runs)],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["errors"] == []
    figures = report["figures"]
    for scenario, name in EXPECTED:
        found = [f for f in figures if f["scenario"] == scenario and f["name"].startswith(name)]
        assert found, f"missing figure {scenario}: {name}"
    for f in figures:
        assert math.isfinite(f["value"]), f
        if f["baseline_name"]:
            # A figure derived by subtraction (CPU above idle) may be exactly 0 in
            # so short a run: 0 is a value, None or NaN is not.
            assert f["baseline"] is not None, f
            assert math.isfinite(f["baseline"]), f
            if f["baseline"] != 0:
                assert f["ratio"] is not None, f
                assert math.isfinite(f["ratio"]), f
        for span in (f["value_range"], f["baseline_range"]):
            assert span is None or all(math.isfinite(x) for x in span), f
        if f["target"]:
            if f["ratio"] is None and f["baseline"] == 0:
                # A ratio to a baseline of exactly 0 (both sides added no CPU
                # above idle in so short a run) cannot be judged: no verdict.
                assert f["met"] is None, f
            else:
                assert f["met"] in (True, False), f
    assert report["cpu_s"]["service"] > 0
    # The same figures are printed as a table.
    assert "| scenario" in proc.stdout
    assert "polls per server-CPU-second" in proc.stdout
    # The recorded run is the report's JSON with where and how it ran.
    (recorded,) = runs.glob("*.json")
    kept = json.loads(recorded.read_text())
    assert kept["figures"] == report["figures"]
    assert {"versions", "git_commit", "load_before", "load_after", "cpu_model"} <= set(kept["info"])
    rendered = subprocess.run(
        [*cli, "report", str(runs)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert rendered.startswith("# Benchmarks")
    for f in figures:
        assert f["name"] in rendered
