"""Recorded runs: each run's JSON kept in a folder, and ``BENCHMARKS.md`` rendered from all of them.

``bench --record DIR`` writes one file per run (its figures, errors, the
command, when and where it ran, the versions and the machine's load);
``bench report DIR`` prints every recorded run, oldest first, none left out,
with a first table of the targeted figures of every run side by side. The
output is the whole of ``BENCHMARKS.md``: nobody edits it by hand.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from armada_jobservice.bench.report import Figure, table

#: The distributions whose versions a record keeps.
VERSIONED = ("armada-jobservice", "grpcio", "protobuf", "uvloop", "armada-client")


def machine_info() -> dict[str, Any]:
    """Where and with what a run is made: CPUs, CPU model, versions, git commit, load."""
    versions: dict[str, str] = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return {
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "versions": versions,
        "git_commit": _git_commit(),
        "load_before": list(os.getloadavg()),
    }


def record(run: dict[str, Any], folder: Path) -> Path:
    """Write *run* (a report's JSON form) to a new file in *folder*; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    run["info"]["load_after"] = list(os.getloadavg())
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = folder / f"{stamp}-{run['mode']}.json"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{run['mode']}-{n}.json"
    path.write_text(json.dumps(run, indent=2) + "\n")
    return path


def load_runs(folder: Path) -> list[dict[str, Any]]:
    """Every recorded run in *folder*, oldest first (by file name, which starts with the time)."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def render(runs: Sequence[dict[str, Any]], command: str) -> str:
    """``BENCHMARKS.md``: every run of *runs*, the targeted figures first, side by side."""
    out = [
        "# Benchmarks: every recorded run",
        "",
        f"Written by `{command}` from the JSON of every run recorded with "
        "`armada-jobservice bench --record`; do not edit by hand. How runs are made, "
        "what each scenario measures and the history of the targets: "
        "[docs/benchmarks.md](docs/benchmarks.md). Each value is the median over "
        "its rounds with their range in brackets; `ratio` is value / baseline; a "
        "target missed is `NO`. Absolute figures drift by tens of percent from hour "
        "to hour on a shared machine: compare ratios within a run.",
        "",
        f"{len(runs)} recorded run(s).",
        "",
    ]
    if not runs:
        return "\n".join(out)
    out += ["## Targets, run by run", "", _targets_table(runs), ""]
    for n, run in enumerate(runs, 1):
        out += _run_section(n, run)
    return "\n".join(out)


def _targets_table(runs: Sequence[dict[str, Any]]) -> str:
    """Every targeted figure of every run, one row each, run after run."""
    header = ["run", "mode", "load (1 min)", "errors", "figure", "target", "ratio or value", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n, run in enumerate(runs, 1):
        for fig in (Figure.from_json(f) for f in run["figures"]):
            if not fig.target:
                continue
            by_ratio = fig.min_ratio is not None or fig.max_ratio is not None
            shown = fig.ratio if by_ratio else fig.value
            cells = [
                f"{n}: {run['info'].get('started', '?')}",
                run["mode"],
                _load(run),
                str(len(run["errors"])),
                f"{fig.scenario.split()[0]}: {fig.name}",
                fig.target,
                "-" if shown is None or not math.isfinite(shown) else f"{shown:.3g}",
                {True: "yes", False: "NO", None: "-"}[fig.met],
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load(run: dict[str, Any]) -> str:
    info = run["info"]
    before, after = info.get("load_before"), info.get("load_after")
    if before is None:
        return "-"
    return f"{before[0]:.2f} -> {after[0]:.2f}" if after else f"{before[0]:.2f}"


def _run_section(n: int, run: dict[str, Any]) -> list[str]:
    info = run["info"]
    versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
    out = [
        f"## Run {n}: {info.get('started', '?')}, {run['mode']}",
        "",
        "```sh",
        run["command"],
        "```",
        "",
        f"- machine: {info.get('cpus', '?')} CPUs ({info.get('cpu_model', '?')}, "
        f"{info.get('machine', '?')}), kernel {info.get('kernel', '?')}; load average "
        f"(1 min) {_load(run)}",
        f"- Python {info.get('python', '?')}, SQLite {info.get('sqlite', '?')}; {versions}",
        f"- commit {info.get('git_commit', '?')}; {info.get('total_s', '?')} s in all",
        "- server CPU seconds: "
        + ", ".join(f"{k} {v:.1f}" for k, v in run.get("cpu_s", {}).items()),
        "",
        table([Figure.from_json(f) for f in run["figures"]]),
        "",
    ]
    if run["errors"]:
        out += ["Errors in this run:", ""] + [f"- {e}" for e in run["errors"]] + [""]
    else:
        out += ["No errors in this run.", ""]
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "-"
    return done.stdout.strip() or "-"
