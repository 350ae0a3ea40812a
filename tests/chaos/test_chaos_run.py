"""A short fixed-seed chaos run, as CI runs it: real processes, real sockets, a real SQLite file.

Marked ``chaos`` so that ``-m "not chaos"`` leaves it out. It judges states
only: the checker's rules hold whatever the machine's speed, and the settle
period waits for the truth instead of for a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from armada_jobservice.chaos import ChaosConfig, ChaosRun
from armada_jobservice.chaos.plan import FaultKind, kinds_for
from armada_jobservice.cli import main

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

SEED = 12


async def test_a_fixed_seed_sqlite_run_finds_no_violation(tmp_path: Path) -> None:
    """Every SQLite fault kind once (about two minutes): no violation, no event lost."""
    lines: list[str] = []
    kinds = kinds_for(postgres=False)
    config = ChaosConfig(
        duration_s=1.0,
        seed=SEED,
        fault_count=len(kinds),
        workdir=tmp_path,
        command="test",
        line=lines.append,
    )
    report = await ChaosRun(config).run()
    assert report.first_violation is None, "\n".join(lines)
    assert report.violations == []
    assert report.events_lost == 0
    assert report.settled
    # A full disk needs a tmpfs of its own; where none can be mounted the run says so.
    disk_skipped = any(line.startswith("disk_full") for line in report.skipped_faults)
    expected = {k.value for k in kinds} - ({FaultKind.DISK_FULL.value} if disk_skipped else set())
    assert expected <= set(report.faults)
    assert report.polls_checked > 0
    assert report.first_polls > 0


def test_the_cli_renders_recorded_reports_as_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RELIABILITY.md's tables come from the JSON reports by a command."""
    data = {
        "seed": 3,
        "database": "sqlite",
        "replicas": 1,
        "duration_s": 600.0,
        "command": "armada-jobservice chaos --duration 10m --seed 3",
        "finished_at": "2026-12-05 13:00 UTC",
        "violation_count": 0,
        "events_lost": 0,
        "polls_checked": 10,
        "final_answers_checked": 4,
        "jobs": 4,
        "job_sets": 2,
        "events": 20,
        "streams_opened": 3,
        "unanswered": 0,
        "terminal_answers_lost_to_kill_9": 0,
        "follower_lag_answers": 0,
        "settled": True,
        "faults": {"kill_9": 2},
        "recovery": {"kill_9": {"count": 2, "median_s": 0.5, "worst_s": 0.75, "not_recovered": 0}},
        "skipped_faults": [],
        "first_violation": None,
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    assert main(["chaos", "--markdown", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| kill_9 | 2 | 0.5 | 0.75 | 0 |" in out
    assert "seed 3" in out
