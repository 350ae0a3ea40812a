"""The progress view of many jobs that ``wait`` and ``demo`` both show.

On a terminal it is a live view (jobs ended out of all, the count per state,
the jobs not yet ended and the failures with their reasons); elsewhere it is
one plain line per change of a job's state, which scripts and logs can read.
Which states have ended comes from ``JobState.is_terminal`` alone, plus the
CLI's own ``TIMED_OUT`` for a job a wait gave up on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from armada_jobservice._types import JobState

WAITING = "WAITING"
"""The state column of a job before its first answer (not a job-service state)."""
TIMED_OUT = "TIMED_OUT"
"""The state column of a job a wait gave up on (not a job-service state)."""

STATE_STYLES = {
    JobState.SUCCEEDED.value: "green",
    JobState.FAILED.value: "red",
    JobState.CANCELLED.value: "yellow",
    JobState.RUNNING.value: "cyan",
    JobState.SUBMITTED.value: "blue",
    JobState.JOB_ID_NOT_FOUND.value: "dim",
    JobState.CONNECTION_ERR.value: "magenta",
    TIMED_OUT: "red",
}
"""How the live view colours each state; a state not listed is left plain."""


def job_state(state: str) -> JobState | None:
    """The job-service state a state column names, or ``None`` for the CLI's own labels."""
    try:
        return JobState(state)
    except ValueError:
        return None


def is_ended(state: str) -> bool:
    """Whether a state column is final: a terminal job-service state, or ``TIMED_OUT``."""
    if state == TIMED_OUT:
        return True
    parsed = job_state(state)
    return parsed is not None and parsed.is_terminal


def is_problem(state: str) -> bool:
    """Whether a state column is an unsuccessful end (FAILED, CANCELLED or ``TIMED_OUT``)."""
    parsed = job_state(state)
    return is_ended(state) and (parsed is None or not parsed.is_success)


@dataclass(slots=True)
class _Job:
    state: str
    error: str = ""


class ProgressView:
    """Many jobs' latest states, shown live or as one line per change; a context manager."""

    MAX_ROWS = 15
    """Jobs not yet ended that the live view lists; the rest are counted."""

    def __init__(
        self, job_ids: Sequence[str], *, live: bool, console: Console | None = None
    ) -> None:
        self.jobs: dict[str, _Job] = {job_id: _Job(WAITING) for job_id in job_ids}
        self.live = live
        self.console = console if console is not None else Console(file=sys.stderr)
        self._started = time.monotonic()
        self._live: Live | None = None

    def update(self, job_id: str, state: str, error: str = "") -> None:
        """Record a job's latest state and error; in plain mode print the state if it changed."""
        job = self.jobs.setdefault(job_id, _Job(WAITING))
        changed = job.state != state
        job.state, job.error = state, error
        if not changed:
            return
        if not self.live:
            # print(), not console.print(): the line must never be wrapped or
            # marked up, since scripts read it.
            print(f"{job_id}: {state}", file=self.console.file, flush=True)
        elif self._live is not None:
            self._live.refresh()

    def state(self, job_id: str) -> str:
        """The latest state of *job_id*."""
        return self.jobs[job_id].state

    def counts(self) -> dict[str, int]:
        """The number of jobs in each state."""
        counts: dict[str, int] = {}
        for job in self.jobs.values():
            counts[job.state] = counts.get(job.state, 0) + 1
        return counts

    @property
    def ended(self) -> int:
        """How many jobs have ended (or been given up on)."""
        return sum(is_ended(job.state) for job in self.jobs.values())

    def render(self) -> Group:
        """Build the view: the bar and counts, the unfinished jobs, then the problems."""
        total = len(self.jobs)
        ended = self.ended
        header = Table.grid(padding=(0, 2))
        header.add_row(
            ProgressBar(total=max(total, 1), completed=ended, width=30),
            Text(f"{ended}/{total} ended"),
            Text(_elapsed(time.monotonic() - self._started), style="dim"),
        )
        counts = Text("  ").join(
            Text(f"{state}: {n}", style=STATE_STYLES.get(state, ""))
            for state, n in sorted(self.counts().items())
        )
        parts: list[Any] = [header, counts]
        pending = [(j, job.state) for j, job in self.jobs.items() if not is_ended(job.state)]
        if pending:
            table = Table(box=None, show_header=True, pad_edge=False)
            table.add_column("job")
            table.add_column("state")
            for job_id, state in pending[: self.MAX_ROWS]:
                table.add_row(job_id, Text(state, style=STATE_STYLES.get(state, "")))
            parts.append(table)
            if len(pending) > self.MAX_ROWS:
                parts.append(Text(f"... and {len(pending) - self.MAX_ROWS} more"))
        problems = [(j, job) for j, job in self.jobs.items() if is_problem(job.state)]
        if problems:
            table = Table(title="failures and cancellations", title_justify="left")
            table.add_column("job", overflow="fold")
            table.add_column("state")
            table.add_column("reason")
            for job_id, job in problems:
                # Error texts can span lines (container messages); one job stays one row.
                reason = " ".join(job.error.split())
                table.add_row(job_id, Text(job.state, style=STATE_STYLES[job.state]), reason)
            parts.append(table)
        return Group(*parts)

    def __enter__(self) -> ProgressView:
        if self.live:
            self._live = Live(
                get_renderable=self.render, console=self.console, refresh_per_second=4
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc_info)
            self._live = None


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"
