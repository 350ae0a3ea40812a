"""``armada-jobservice demo``: the whole system on one machine, in well under a minute.

It starts the Armada simulator and the job service (SQLite in a temporary
directory) in this process, submits a seeded, mixed batch of jobs across a few
job sets through armada-client, cancels one of them and lets another be
preempted, and follows every job through the public client
(``AsyncJobServiceClient.wait_for_job``), as the Airflow operator does,
showing the same progress view as ``wait`` until all have ended.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import grpc
from armada_client.armada import submit_pb2
from armada_client.asyncio_client import ArmadaAsyncIOClient
from armada_client.k8s.io.api.core.v1 import generated_pb2 as core_v1
from rich.console import Console

from armada_jobservice._async_client import AsyncJobServiceClient
from armada_jobservice._exceptions import JobServiceError, WaitTimeout
from armada_jobservice._types import JobState, JobStatus
from armada_jobservice.cli.exit_codes import ExitCode
from armada_jobservice.cli.progress import TIMED_OUT, ProgressView, is_ended
from armada_jobservice.sim import ArmadaSimulator, Mix

QUEUE = "demo"


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
    """Seconds between two polls of one job through the job service."""
    timeout_s: float = 50.0
    """Give up (exit 6, ``TIMEOUT``) on jobs that have not ended this long after submission."""
    live: bool | None = None
    """Live view on (True), off (False) or only on a terminal (None)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Submitted:
    """A job the demo submitted, and the part the demo's script gave it."""

    job_id: str
    job_set_id: str
    role: str = ""
    """Why the job will not simply run its course (cancelled, preempted), or empty."""


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


async def _submit(client: ArmadaAsyncIOClient, options: DemoOptions) -> list[Submitted]:
    await client.create_queue(client.create_queue_request(QUEUE, priority_factor=1.0))
    per_set: dict[str, list[int]] = {}
    for index in range(options.jobs):
        per_set.setdefault(f"demo-run-{index % options.job_sets + 1}", []).append(index)
    submitted = []
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
            submitted.append(Submitted(item.job_id, job_set_id, role))
    return submitted


async def run_demo(options: DemoOptions, console: Console) -> int:
    """Run the demo end to end and return its exit code."""
    from armada_jobservice.server.app import JobServiceApp
    from armada_jobservice.server.config import Settings

    live = console.is_terminal if options.live is None else options.live
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
                AsyncJobServiceClient(f"127.0.0.1:{app.grpc_port}") as client,
            ):
                console.print(
                    f"Armada simulator on [bold]{sim.address}[/], job service on "
                    f"[bold]127.0.0.1:{app.grpc_port}[/] (SQLite in {tmp})"
                )
                armada = ArmadaAsyncIOClient(armada_channel)
                jobs = await _submit(armada, options)
                console.print(
                    f"submitted {len(jobs)} jobs to queue [bold]{QUEUE}[/] in "
                    f"{options.job_sets} job sets; following them through the job service"
                )
                view = ProgressView([j.job_id for j in jobs], live=live, console=console)
                with view:
                    await _follow(client, armada, jobs, options, view)
    finished = all(view.state(j.job_id) != TIMED_OUT for j in jobs)
    _summary(console, view, live, time.monotonic() - started, finished)
    return ExitCode.OK if finished else ExitCode.TIMEOUT


async def _follow(
    client: AsyncJobServiceClient,
    armada: ArmadaAsyncIOClient,
    jobs: list[Submitted],
    options: DemoOptions,
    view: ProgressView,
) -> None:
    """Wait for every job at once; cancel the scripted one once the service says RUNNING."""
    to_cancel = next((j for j in jobs if j.role.startswith("cancelled")), None)
    running = asyncio.Event()

    async def one(job: Submitted) -> None:
        def seen(status: JobStatus) -> None:
            # A job that ended without a reason of its own is explained by its role.
            view.update(job.job_id, status.state.value, status.error or job.role)
            if job is to_cancel and status.state is JobState.RUNNING:
                running.set()

        try:
            await client.wait_for_job(
                QUEUE,
                job.job_set_id,
                job.job_id,
                poll_interval_s=options.poll_interval_s,
                timeout_s=options.timeout_s,
                on_status=seen,
            )
        except WaitTimeout as exc:
            view.update(job.job_id, TIMED_OUT, str(exc))

    async def cancel(job: Submitted) -> None:
        await running.wait()
        await armada.cancel_jobs(QUEUE, job.job_set_id, job.job_id)

    canceller = asyncio.create_task(cancel(to_cancel)) if to_cancel is not None else None
    try:
        await asyncio.gather(*(one(j) for j in jobs))
    finally:
        if canceller is not None:
            # The job may have ended (or been given up on) before it ran.
            canceller.cancel()
            await asyncio.gather(canceller, return_exceptions=True)


def _summary(
    console: Console, view: ProgressView, live: bool, elapsed_s: float, finished: bool
) -> None:
    if not live:
        # The live view leaves its last frame on screen; without it, show that frame once.
        console.print()
        console.print(view.render())
    counts = view.counts()
    console.print()
    if finished:
        console.print(
            f"[bold]Summary:[/] {len(view.jobs)} jobs terminal in {elapsed_s:.1f} s: "
            f"{counts.get(JobState.SUCCEEDED, 0)} succeeded, "
            f"{counts.get(JobState.FAILED, 0)} failed, "
            f"{counts.get(JobState.CANCELLED, 0)} cancelled (all answered by the job service)."
        )
    else:
        waiting = sum(n for state, n in counts.items() if not is_ended(state) or state == TIMED_OUT)
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
    try:
        return asyncio.run(run_demo(options, Console()))
    except JobServiceError as exc:
        print(f"armada-jobservice demo: error: {exc}", file=sys.stderr)
        return ExitCode.SERVICE_ERROR
