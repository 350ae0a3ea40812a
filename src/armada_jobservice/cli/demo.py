"""``armada-jobservice demo``: the whole system on one machine, in well under a minute.

It starts the Armada simulator and the job service (SQLite in a temporary
directory) in this process, submits a seeded, mixed batch of jobs across a few
job sets through armada-client, cancels one of them and lets another be
preempted, and polls every job through the job service's gRPC API, as the
Airflow operator does, showing a live view until all are terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import grpc
from armada_client.armada import submit_pb2
from armada_client.asyncio_client import ArmadaAsyncIOClient
from armada_client.k8s.io.api.core.v1 import generated_pb2 as core_v1
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from armada_jobservice._gen import jobservice_pb2, jobservice_pb2_grpc
from armada_jobservice.cli.exit_codes import ExitCode
from armada_jobservice.sim import ArmadaSimulator, Mix

QUEUE = "demo"
State = jobservice_pb2.JobServiceResponse.State
TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})
STATE_NAMES = [name for name, _ in State.items()]
STATE_STYLES = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "SUBMITTED": "blue",
    "JOB_ID_NOT_FOUND": "dim",
    "CONNECTION_ERR": "magenta",
    "DUPLICATE_FOUND": "white",
}


@dataclasses.dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the demo runs; every field has a default so it needs no configuration."""

    jobs: int = 30
    """Jobs submitted in total, spread over the job sets."""
    job_sets: int = 3
    """Job sets (Airflow runs, say) the jobs are spread over."""
    seed: int = 1
    """Seed of the simulator's mix, so two runs look alike."""
    time_scale: float = 0.4
    """Real seconds per simulated second."""
    poll_interval_s: float = 0.25
    """Pause between two polling rounds through the job service."""
    timeout_s: float = 50.0
    """Give up (exit 1) if the jobs are not all terminal by then."""
    live: bool | None = None
    """Live view on (True), off (False) or only on a terminal (None)."""


@dataclasses.dataclass(slots=True)
class Tracked:
    """A submitted job and what the job service last said about it."""

    job_id: str
    job_set_id: str
    role: str = ""
    state: int = State.JOB_ID_NOT_FOUND
    error: str = ""


def _pod_spec() -> core_v1.PodSpec:
    return core_v1.PodSpec(containers=[core_v1.Container(name="main", image="busybox:latest")])


def _annotations(index: int) -> dict[str, str]:
    # The first job is cancelled by the demo once running; the second is
    # preempted; the rest follow the simulator's seeded mix.
    if index == 0:
        return {"armada-sim/hold-at": "running"}
    if index == 1:
        return {"armada-sim/outcome": "preempted", "armada-sim/run-seconds": "4"}
    return {}


async def _submit(client: ArmadaAsyncIOClient, options: DemoOptions) -> list[Tracked]:
    await client.create_queue(client.create_queue_request(QUEUE, priority_factor=1.0))
    per_set: dict[str, list[int]] = {}
    for index in range(options.jobs):
        per_set.setdefault(f"demo-run-{index % options.job_sets + 1}", []).append(index)
    tracked = []
    for job_set_id, indices in per_set.items():
        items = [
            client.create_job_request_item(
                pod_spec=_pod_spec(), namespace="default", annotations=_annotations(i)
            )
            for i in indices
        ]
        # armada-client annotates submit_jobs' result wrongly (as an iterator).
        response = cast(
            submit_pb2.JobSubmitResponse, await client.submit_jobs(QUEUE, job_set_id, items)
        )
        for index, item in zip(indices, response.job_response_items, strict=True):
            role = {0: "cancelled by the demo", 1: "preempted"}.get(index, "")
            tracked.append(Tracked(item.job_id, job_set_id, role))
    return tracked


async def _poll(stub: jobservice_pb2_grpc.JobServiceStub, jobs: list[Tracked]) -> None:
    async def one(job: Tracked) -> None:
        try:
            answer = await stub.GetJobStatus(
                jobservice_pb2.JobServiceRequest(
                    queue=QUEUE, job_set_id=job.job_set_id, job_id=job.job_id
                ),
                timeout=5,
            )
        except grpc.aio.AioRpcError as exc:
            job.state, job.error = State.CONNECTION_ERR, exc.details() or str(exc.code())
            return
        job.state, job.error = answer.state, answer.error

    await asyncio.gather(*(one(j) for j in jobs if j.state not in TERMINAL))


def _counts_table(jobs: list[Tracked]) -> Table:
    counts = Counter(State.Name(j.state) for j in jobs)
    table = Table(title="jobs by state", title_justify="left")
    for name in STATE_NAMES:
        if counts.get(name):
            table.add_column(name, style=STATE_STYLES.get(name, ""), justify="right")
    table.add_row(*(str(counts[name]) for name in STATE_NAMES if counts.get(name)))
    return table


def _problems_table(jobs: list[Tracked]) -> Table:
    table = Table(title="failures and cancellations", title_justify="left", expand=False)
    table.add_column("job set")
    table.add_column("job id", overflow="fold")
    table.add_column("state")
    table.add_column("reason")
    for job in jobs:
        if job.state in (State.FAILED, State.CANCELLED):
            name = State.Name(job.state)
            table.add_row(
                job.job_set_id, job.job_id, f"[{STATE_STYLES[name]}]{name}", job.error or job.role
            )
    return table


class _View:
    """The live view: a progress bar, the counts per state and the problems so far."""

    def __init__(self, console: Console, total: int) -> None:
        self.progress = Progress(
            TextColumn("terminal"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task("jobs", total=total)

    def render(self, jobs: list[Tracked]) -> Group:
        """Return the view of ``jobs`` now."""
        done = sum(j.state in TERMINAL for j in jobs)
        self.progress.update(self.task, completed=done)
        parts: list[Any] = [self.progress, _counts_table(jobs)]
        if any(j.state in (State.FAILED, State.CANCELLED) for j in jobs):
            parts.append(_problems_table(jobs))
        return Group(*parts)


@contextlib.contextmanager
def _live(
    console: Console,
    view: _View,
    jobs: list[Tracked],
    enabled: bool,
) -> Iterator[Live | None]:
    if not enabled:
        yield None
        return
    with Live(view.render(jobs), console=console, refresh_per_second=8) as live:
        yield live


async def run_demo(options: DemoOptions, console: Console) -> int:
    """Run the demo end to end and return its exit code."""
    from armada_jobservice.server.app import JobServiceApp
    from armada_jobservice.server.config import Settings

    live_enabled = console.is_terminal if options.live is None else options.live
    mix = Mix(
        fail_ratio=0.25,
        lease_return_ratio=0.15,
        queue_s=(0.5, 4.0),
        pending_s=(0.5, 3.0),
        run_s=(2.0, 12.0),
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="armada-jobservice-demo-") as tmp:
        async with ArmadaSimulator(
            seed=options.seed, time_scale=options.time_scale, mix=mix
        ) as sim:
            settings = Settings(
                grpc_host="127.0.0.1",
                grpc_port=0,
                armada_url=sim.address,
                database=f"sqlite:///{Path(tmp) / 'jobservice.db'}",
                metrics_port=None,
            )
            async with (
                JobServiceApp(settings) as app,
                grpc.aio.insecure_channel(sim.address) as armada_channel,
                grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as service_channel,
            ):
                console.print(
                    f"Armada simulator on [bold]{sim.address}[/], job service on "
                    f"[bold]127.0.0.1:{app.grpc_port}[/] (SQLite in {tmp})"
                )
                armada = ArmadaAsyncIOClient(armada_channel)
                stub = jobservice_pb2_grpc.JobServiceStub(  # type: ignore[no-untyped-call]
                    service_channel
                )
                jobs = await _submit(armada, options)
                console.print(
                    f"submitted {len(jobs)} jobs to queue [bold]{QUEUE}[/] in "
                    f"{options.job_sets} job sets; polling the job service"
                )
                finished = await _watch(console, armada, stub, jobs, options, live_enabled)
    _summary(console, jobs, time.monotonic() - started, finished)
    return ExitCode.OK if finished else ExitCode.TIMEOUT


async def _watch(
    console: Console,
    armada: ArmadaAsyncIOClient,
    stub: jobservice_pb2_grpc.JobServiceStub,
    jobs: list[Tracked],
    options: DemoOptions,
    live_enabled: bool,
) -> bool:
    view = _View(console, len(jobs))
    deadline = time.monotonic() + options.timeout_s
    to_cancel = next((j for j in jobs if j.role.startswith("cancelled")), None)
    last_line = ""
    with _live(console, view, jobs, live_enabled) as live:
        while True:
            await _poll(stub, jobs)
            if to_cancel is not None and to_cancel.state == State.RUNNING:
                await armada.cancel_jobs(QUEUE, to_cancel.job_set_id, to_cancel.job_id)
                to_cancel = None
            if live is not None:
                live.update(view.render(jobs))
            else:
                counts = Counter(State.Name(j.state) for j in jobs)
                line = ", ".join(f"{counts[n]} {n}" for n in STATE_NAMES if counts.get(n))
                if line != last_line:
                    console.print(line)
                    last_line = line
            if all(j.state in TERMINAL for j in jobs):
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(options.poll_interval_s)


def _summary(console: Console, jobs: list[Tracked], elapsed_s: float, finished: bool) -> None:
    console.print()
    console.print(_counts_table(jobs))
    if any(j.state in (State.FAILED, State.CANCELLED) for j in jobs):
        console.print(_problems_table(jobs))
    counts = Counter(State.Name(j.state) for j in jobs)
    if finished:
        console.print(
            f"[bold]Summary:[/] {len(jobs)} jobs terminal in {elapsed_s:.1f} s: "
            f"{counts['SUCCEEDED']} succeeded, {counts['FAILED']} failed, "
            f"{counts['CANCELLED']} cancelled (all answered by the job service)."
        )
    else:
        waiting = len(jobs) - sum(counts[State.Name(s)] for s in TERMINAL)
        console.print(
            f"[bold red]Gave up[/] after {elapsed_s:.1f} s with {waiting} job(s) not terminal."
        )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` sub-command."""
    defaults = DemoOptions()
    parser = subparsers.add_parser(
        "demo",
        help="run the simulator and the job service locally and track a batch of jobs",
        description=(
            "Start a local Armada simulator and the job service (SQLite in a temporary "
            "directory), submit a mixed batch of jobs, and follow them through the job "
            "service until all are terminal. Needs no cluster and no configuration."
        ),
    )
    parser.add_argument(
        "--jobs", type=int, default=defaults.jobs, help="jobs to submit (default: %(default)s)"
    )
    parser.add_argument(
        "--job-sets",
        type=int,
        default=defaults.job_sets,
        help="job sets to spread them over (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seed of the outcome mix (default: %(default)s)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=defaults.time_scale,
        help="real seconds per simulated second; lower is faster (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout_s,
        dest="timeout_s",
        metavar="SECONDS",
        help="give up after this long (default: %(default)s)",
    )
    parser.add_argument(
        "--live",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="live view (default: only on a terminal)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``demo``."""
    if args.jobs < 2 or args.job_sets < 1:
        print(
            "armada-jobservice demo: --jobs must be at least 2 and --job-sets at least 1",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    options = DemoOptions(
        jobs=args.jobs,
        job_sets=args.job_sets,
        seed=args.seed,
        time_scale=args.time_scale,
        timeout_s=args.timeout_s,
        live=args.live,
    )
    return asyncio.run(run_demo(options, Console()))
