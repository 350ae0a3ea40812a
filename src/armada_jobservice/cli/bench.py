"""``armada-jobservice bench``: every scenario, each figure beside its baseline."""

from __future__ import annotations

import argparse
import platform
import shlex
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from armada_jobservice.cli.exit_codes import ExitCode

#: Where scenario 7 finds PostgreSQL (``bench.harness.DEFAULT_POSTGRES``, which a test checks).
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

#: The scenario numbers ``--only`` takes (``bench.scenarios.SCENARIOS``'s keys, which a
#: test checks): written here so that ``--help`` does not import the bench.
SCENARIO_NUMBERS = ("1", "3", "4", "5", "6", "7", "8", "9")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` sub-command."""
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the job service against baselines measured in the same run",
        description=(
            "Start the Armada simulator, the job service and each baseline as separate "
            "processes on 127.0.0.1, load them from separate processes and print every "
            "figure beside its baseline, with their ratio. See docs/benchmarks.md."
        ),
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=("run", "report"),
        default="run",
        help="run the scenarios (default), or 'report DIR': print BENCHMARKS.md from "
        "every run recorded in DIR",
    )
    parser.add_argument("folder", nargs="?", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smaller and shorter (< 2 min)")
    parser.add_argument(
        "--smoke", action="store_true", help=argparse.SUPPRESS
    )  # tiny sizes: the smoke test's run through the same code
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results here")
    parser.add_argument(
        "--only",
        metavar="N,N",
        default=",".join(SCENARIO_NUMBERS),
        help="scenarios to run (default: all; 1 includes 2)",
    )
    parser.add_argument("--workdir", type=Path, help="keep databases and logs here")
    parser.add_argument(
        "--record",
        metavar="DIR",
        type=Path,
        help="add this run's JSON (with date, machine, command, versions, load) to DIR, "
        "from which 'bench report DIR' writes BENCHMARKS.md",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=DEFAULT_POSTGRES,
        help="PostgreSQL for scenario 7 (the fleet); each run uses a fresh schema "
        "(default: %(default)s)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the selected scenarios and print (and optionally write) the report."""
    if args.action == "report":
        return _report(args)
    if args.folder is not None:
        print("armada-jobservice bench: a folder goes with 'report' only", file=sys.stderr)
        return ExitCode.USAGE
    from armada_jobservice.bench.harness import Bench
    from armada_jobservice.bench.records import machine_info, record
    from armada_jobservice.bench.report import Report, table
    from armada_jobservice.bench.scenarios import SCENARIOS
    from armada_jobservice.bench.sizes import SIZES

    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in SCENARIOS]
    if unknown:
        print(f"armada-jobservice bench: no scenario {', '.join(unknown)}", file=sys.stderr)
        return ExitCode.USAGE
    command = "armada-jobservice " + shlex.join(sys.argv[1:])
    report = Report(command=command, mode=mode)
    report.info.update(
        python=platform.python_version(),
        sqlite=sqlite3.sqlite_version,
        machine=platform.machine(),
        cpus=_cpus(),
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **machine_info(),
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jobservice-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        bench = Bench(report, SIZES[mode], workdir, args.postgres)
        try:
            for n in wanted:
                t0 = time.perf_counter()
                print(f"scenario {n}: {SCENARIOS[n].__doc__}", file=sys.stderr)
                try:
                    SCENARIOS[n](bench)
                except Exception as exc:
                    report.errors.append(f"scenario {n} failed: {exc!r}")
                report.info[f"scenario_{n}_s"] = round(time.perf_counter() - t0, 1)
        finally:
            bench.close()
    report.info["total_s"] = round(time.perf_counter() - started, 1)
    print(table(sorted(report.figures, key=lambda f: f.scenario[:1])))
    print()
    print("CPU seconds used: " + ", ".join(f"{k} {v:.1f}" for k, v in report.cpu_s.items()))
    print(f"total {report.info['total_s']} s, mode {mode}")
    for error in report.errors:
        print(f"problem: {error}")
    if args.json is not None:
        report.write_json(args.json)
    if args.record is not None:
        print(f"recorded in {record(report.as_json(), args.record)}")
    return ExitCode.FAILED if report.errors else ExitCode.OK


def _report(args: argparse.Namespace) -> int:
    """``bench report DIR``: BENCHMARKS.md from every run recorded in DIR, on stdout."""
    from armada_jobservice.bench.records import load_runs, render

    if args.folder is None or not args.folder.is_dir():
        print("armada-jobservice bench report: give the folder of recorded runs", file=sys.stderr)
        return ExitCode.USAGE
    print(render(load_runs(args.folder), f"armada-jobservice bench report {args.folder}"))
    return ExitCode.OK


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))
