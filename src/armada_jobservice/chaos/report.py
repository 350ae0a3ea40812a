"""The figures of a chaos run: collected while it runs, written as JSON, rendered as text.

``Report`` is what ``--json`` writes; ``progress_line`` is the line the CLI
prints (or keeps redrawing on a terminal); ``markdown`` renders one or more
JSON reports as the section ``RELIABILITY.md`` records, so that file is
written by a command from the reports, never by hand.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from armada_jobservice.chaos.truth import Violation


@dataclass(slots=True)
class Recovery:
    """Recovery times after one kind of fault, in seconds."""

    times_s: list[float] = field(default_factory=list)
    not_recovered: int = 0

    def summary(self) -> dict[str, Any]:
        """Count, median and worst."""
        times = self.times_s
        return {
            "count": len(times),
            "median_s": round(statistics.median(times), 3) if times else None,
            "worst_s": round(max(times), 3) if times else None,
            "not_recovered": self.not_recovered,
        }


@dataclass(slots=True)
class Report:
    """Everything a run found; ``to_json`` is the ``--json`` file."""

    seed: int
    database: str
    replicas: int
    duration_s: float
    command: str
    faults: dict[str, int] = field(default_factory=dict)
    skipped_faults: list[str] = field(default_factory=list)
    fault_log: list[dict[str, Any]] = field(default_factory=list)
    recovery: dict[str, Recovery] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    polls_checked: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0
    first_polls: int = 0
    expired_first_polls: int = 0
    """First polls of job sets whose events had expired (answered from the query API)."""
    events_expired: int = 0
    """Events the simulator dropped by retention."""
    events_unread_by_truth: int = 0
    """Events dropped before the checker read them (must be 0, or some answers went unjudged)."""
    jobs: int = 0
    job_sets: int = 0
    events: int = 0
    streams_opened: int = 0
    cancelled_by_run: int = 0
    preempted_by_run: int = 0
    events_lost: int = 0
    final_answers_checked: int = 0
    terminal_answers_lost_to_kill_9: int = 0
    follower_lag_answers: int = 0
    connection_err_after_restart: int = 0
    resources: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_s: float = 0.0
    settle_s: float = 0.0
    settled: bool = False
    finished_at: str = ""

    def fault_done(self, entry: dict[str, Any], recovered_s: float | None) -> None:
        """Count one injected fault and its recovery time (None: not recovered)."""
        kind = entry["kind"]
        self.faults[kind] = self.faults.get(kind, 0) + 1
        recovery = self.recovery.setdefault(kind, Recovery())
        if recovered_s is None:
            recovery.not_recovered += 1
        else:
            recovery.times_s.append(recovered_s)
        self.fault_log.append({**entry, "recovered_s": recovered_s})

    @property
    def first_violation(self) -> str | None:
        """The first violation, with the seed and time that replay it."""
        if not self.violations:
            return None
        first = min(self.violations, key=lambda v: v.at_s)
        return (
            f"{first.rule} at {first.at_s:.1f} s of seed {self.seed}: {first.detail} "
            f"(replay: {self.command})"
        )

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        data = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if name not in ("violations", "recovery")
        }
        data["recovery"] = {k: r.summary() for k, r in sorted(self.recovery.items())}
        data["violations"] = [asdict(v) for v in self.violations]
        data["violation_count"] = len(self.violations)
        data["first_violation"] = self.first_violation
        return data


def progress_line(report: Report, elapsed_s: float, phase: str) -> str:
    """One line of progress: time, phase, faults, polls, violations."""
    faults = sum(report.faults.values())
    return (
        f"{elapsed_s:7.1f} s  {phase:<8}  faults {faults:3d}  polls {report.polls_checked:7d}  "
        f"jobs {report.jobs:5d}  unanswered {report.unanswered:5d}  "
        f"violations {len(report.violations)}"
    )


def fault_line(entry: dict[str, Any], recovered_s: float | None) -> str:
    """One line per injected fault."""
    target = f" replica {entry['replica']}" if entry.get("replica") is not None else ""
    recovered = "not recovered" if recovered_s is None else f"recovered in {recovered_s:.2f} s"
    return (
        f"  fault {entry['number']:3d} at {entry['at_s']:7.1f} s: {entry['kind']}{target} "
        f"for {entry['hold_s']:.1f} s, {recovered}"
    )


def _figure(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


#: The issue's bar for a recorded run, per database.
LONG_RUN_S = 30 * 60


def markdown(reports: Sequence[dict[str, Any]]) -> str:
    """``RELIABILITY.md``: the recorded runs as Markdown tables, one section per JSON report."""
    out = [
        "# Reliability figures",
        "",
        "Written by `armada-jobservice chaos --markdown docs/reliability-runs/*.json`",
        "from the JSON reports of chaos runs (`--json`); do not edit by hand. What the runs",
        "do and what the checker's rules are: [docs/reliability.md](docs/reliability.md).",
        "",
    ]
    for database in ("sqlite", "postgresql"):
        longest = max((r["duration_s"] for r in reports if r["database"] == database), default=0.0)
        if longest < LONG_RUN_S:
            out.append(
                f"- Still to be done: a run of at least 30 minutes on {database} "
                f"(longest recorded: {longest / 60:g} min)."
            )
    out.append("")
    for data in reports:
        minutes = data["duration_s"] / 60
        out.append(
            f"### {data['database']}, {data['replicas']} replica(s), "
            f"{minutes:g} min of faults, seed {data['seed']}"
        )
        out.append("")
        out.append(f"`{data['command']}`, finished {data['finished_at']}.")
        out.append("")
        out.append("| figure | value |")
        out.append("|---|---|")
        rows = [
            ("violations", data["violation_count"]),
            ("events lost", data["events_lost"]),
            ("polls checked", data["polls_checked"]),
            ("final answers checked", data["final_answers_checked"]),
            ("jobs / job sets", f"{data['jobs']} / {data['job_sets']}"),
            ("events published", data["events"]),
            ("events expired by the simulator", data.get("events_expired", "-")),
            (
                "events expired before the checker read them",
                data.get("events_unread_by_truth", "-"),
            ),
            (
                "first polls of job sets whose events had expired",
                data.get("expired_first_polls", "-"),
            ),
            ("event streams opened", data["streams_opened"]),
            ("polls unanswered (during faults)", data["unanswered"]),
            ("terminal answers lost to kill -9", data["terminal_answers_lost_to_kill_9"]),
            ("older answers of a follower after an owner's end", data["follower_lag_answers"]),
            (
                "CONNECTION_ERR of a restarted replica for an ended job",
                data.get("connection_err_after_restart", 0),
            ),
            ("settled", data["settled"]),
        ]
        out += [f"| {name} | {value} |" for name, value in rows]
        out.append("")
        out.append("| fault | injected | recovery median (s) | worst (s) | not recovered |")
        out.append("|---|---|---|---|---|")
        for kind, summary in data["recovery"].items():
            out.append(
                f"| {kind} | {data['faults'].get(kind, 0)} | {_figure(summary['median_s'])} "
                f"| {_figure(summary['worst_s'])} | {summary['not_recovered']} |"
            )
        for line in data["skipped_faults"]:
            out.append(f"\nSkipped: {line}")
        if data["first_violation"]:
            out.append(f"\nFirst violation: {data['first_violation']}")
        out.append("")
    return "\n".join(out)
