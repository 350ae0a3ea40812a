"""``armada-jobservice chaos``: a seeded fault run with a truth checker (docs/reliability.md)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from armada_jobservice.cli.exit_codes import ExitCode

#: The fault kinds ``--skip`` takes, written here so that ``--help`` does not import the run
#: (a test checks them against ``chaos.plan.FaultKind``).
FAULT_KINDS = (
    "kill_9",
    "sigterm",
    "stream_break",
    "stream_end",
    "stream_stall",
    "slow_streams",
    "armada_outage",
    "armada_refusal",
    "disk_full",
    "pg_restart",
    "db_cut",
    "slow_db",
)
#: ``--event-retention``'s default, written here for the same reason (the same test checks
#: it against ``chaos.workload.EVENT_RETENTION_S``).
EVENT_RETENTION_DEFAULT = "45s"
#: On a plain output, one progress line this often (seconds).
PLAIN_EVERY_S = 10.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``chaos`` sub-command."""
    parser = subparsers.add_parser(
        "chaos",
        help="run the service through seeded faults and check every answer against the truth",
        description=(
            "Start the Armada simulator with a realistic mix, the job service (SQLite, or "
            "PostgreSQL with one or more replicas) and pollers; inject seeded faults; check "
            "every answer against the simulator's record. Exit 1 on any violation, naming "
            "the first with its seed and time. See docs/reliability.md."
        ),
    )
    parser.add_argument(
        "--duration", default="10m", help="how long to inject faults: 90s, 10m, 1h (default: 10m)"
    )
    parser.add_argument(
        "--faults",
        type=int,
        default=None,
        metavar="N",
        help="inject exactly N faults however long they take, instead of for --duration",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of everything drawn")
    parser.add_argument(
        "--database",
        default="sqlite",
        help="sqlite, or a PostgreSQL URL (the run makes and drops a schema in it)",
    )
    parser.add_argument("--replicas", type=int, default=1, help="replicas (PostgreSQL only)")
    parser.add_argument("--pollers", type=int, default=4, help="concurrent poll loops")
    parser.add_argument(
        "--event-retention",
        default=None,
        metavar="DURATION",
        help=(
            "the simulator drops a job set's events this long after its last one "
            f"(default: {EVENT_RETENTION_DEFAULT})"
        ),
    )
    parser.add_argument(
        "--skip", action="append", default=[], choices=FAULT_KINDS, help="a fault kind to leave out"
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="write the report here")
    parser.add_argument("--workdir", type=Path, help="keep databases and service logs here")
    parser.add_argument(
        "--markdown",
        metavar="REPORT.json",
        type=Path,
        nargs="+",
        help="print the given JSON reports as RELIABILITY.md's tables instead of running",
    )
    parser.set_defaults(handler=run)


def _command(args: argparse.Namespace, seed: int) -> str:
    parts = ["armada-jobservice", "chaos", "--duration", args.duration, "--seed", str(seed)]
    if args.database != "sqlite":
        parts += ["--database", args.database]
    if args.faults is not None:
        parts += ["--faults", str(args.faults)]
    if args.replicas != 1:
        parts += ["--replicas", str(args.replicas)]
    if args.event_retention is not None:
        parts += ["--event-retention", args.event_retention]
    for kind in args.skip:
        parts += ["--skip", kind]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    """Run the chaos run (or render reports) and return the exit code."""
    import asyncio
    import random

    from armada_jobservice.bench.procs import BenchError
    from armada_jobservice.chaos.plan import FaultKind, parse_duration
    from armada_jobservice.chaos.report import markdown
    from armada_jobservice.chaos.runner import ChaosConfig, ChaosRun

    if args.markdown:
        print(markdown([json.loads(p.read_text()) for p in args.markdown]))
        return ExitCode.OK
    try:
        duration_s = parse_duration(args.duration)
    except ValueError as exc:
        print(f"armada-jobservice chaos: --duration {args.duration!r}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        retention_s = parse_duration(args.event_retention or EVENT_RETENTION_DEFAULT)
    except ValueError as exc:
        print(
            f"armada-jobservice chaos: --event-retention {args.event_retention!r}: {exc}",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    if args.replicas < 1 or (args.replicas > 1 and args.database == "sqlite"):
        print("armada-jobservice chaos: several replicas need PostgreSQL", file=sys.stderr)
        return ExitCode.USAGE
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    terminal = sys.stdout.isatty()
    last_plain = [0.0]

    def line(text: str) -> None:
        print(("\r\033[K" if terminal else "") + text, flush=True)

    def status(text: str) -> None:
        if terminal:
            print("\r\033[K" + text, end="", flush=True)
        elif time.monotonic() - last_plain[0] >= PLAIN_EVERY_S:
            last_plain[0] = time.monotonic()
            print(text, flush=True)

    config = ChaosConfig(
        duration_s=duration_s,
        seed=seed,
        database=args.database,
        replicas=args.replicas,
        pollers=args.pollers,
        event_retention_s=retention_s,
        skip=tuple(FaultKind(k) for k in args.skip),
        fault_count=args.faults,
        workdir=args.workdir,
        command=_command(args, seed),
        line=line,
        status=status,
    )
    line(f"chaos run, seed {seed}: {config.command}")
    try:
        report = asyncio.run(ChaosRun(config).run())
    except BenchError as exc:
        # A replica that does not start again is the run's end, and a finding of its own.
        print(f"armada-jobservice chaos: {exc} (replay: {config.command})", file=sys.stderr)
        return ExitCode.FAILED
    data = report.to_json()
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    line(
        f"polls checked {report.polls_checked}, faults {sum(report.faults.values())}, "
        f"violations {len(report.violations)}, events lost {report.events_lost}"
    )
    for kind, summary in data["recovery"].items():
        line(
            f"  {kind:<15} x{summary['count']:<3} recovery median {summary['median_s']} s, "
            f"worst {summary['worst_s']} s, not recovered {summary['not_recovered']}"
        )
    if report.violations:
        print(f"first violation: {report.first_violation}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK
