"""``armada-jobservice armada-sim``: run the local Armada simulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import grpc

from armada_jobservice._ready import Ready, remove_ready_file, write_ready_file
from armada_jobservice._scopes import parse_token_scopes
from armada_jobservice.cli.exit_codes import ExitCode
from armada_jobservice.sim.faults import Faults
from armada_jobservice.sim.lifecycle import Mix
from armada_jobservice.sim.simulator import ArmadaSimulator, SimulatorError

log = logging.getLogger("armada_jobservice.sim")


_BREAK_CODES = {"unavailable": grpc.StatusCode.UNAVAILABLE, "internal": grpc.StatusCode.INTERNAL}


def _range(text: str) -> tuple[float, float]:
    """Parse ``LOW:HIGH`` (or one number) into a range of seconds."""
    low, _, high = text.partition(":")
    try:
        values = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SECONDS or LOW:HIGH, got {text!r}") from None
    return values


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``armada-sim`` sub-command."""
    parser = subparsers.add_parser(
        "armada-sim",
        help="run a local Armada simulator (no cluster needed)",
        description=(
            "Serve Armada's gRPC API (api.Submit, api.QueueService, api.Event, api.Jobs) "
            "with simulated jobs. Per-job annotations armada-sim/* script what happens; "
            "the mix flags decide the rest. See docs/simulator.md."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=50051, help="port (default: %(default)s; 0 picks one)"
    )
    parser.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="NAME",
        help="create this queue at start (repeatable)",
    )
    mix = parser.add_argument_group("job mix (what annotations leave open)")
    mix.add_argument("--seed", type=int, default=None, help="seed of the random mix")
    mix.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="FACTOR",
        help="real seconds per simulated second (0.1 runs 10x faster; default: %(default)s)",
    )
    mix.add_argument("--fail-ratio", type=float, default=0.0, metavar="P")
    mix.add_argument("--cancel-ratio", type=float, default=0.0, metavar="P")
    mix.add_argument("--preempt-ratio", type=float, default=0.0, metavar="P")
    mix.add_argument("--lease-return-ratio", type=float, default=0.0, metavar="P")
    defaults = Mix()
    for name, value in (
        ("queue", defaults.queue_s),
        ("pending", defaults.pending_s),
        ("run", defaults.run_s),
    ):
        mix.add_argument(
            f"--{name}-seconds",
            type=_range,
            default=value,
            metavar="LOW:HIGH",
            help=f"simulated seconds (default: {value[0]}:{value[1]})",
        )
    faults = parser.add_argument_group("fault injection")
    faults.add_argument(
        "--end-streams-after",
        type=int,
        metavar="N",
        help="end every event stream cleanly after N events",
    )
    faults.add_argument(
        "--break-streams-after",
        type=int,
        metavar="N",
        help="fail every event stream after N events",
    )
    faults.add_argument(
        "--break-code",
        choices=sorted(_BREAK_CODES),
        default="unavailable",
        help="status of --break-streams-after (default: %(default)s)",
    )
    faults.add_argument(
        "--deny-queue",
        action="append",
        default=[],
        metavar="NAME",
        help="answer PERMISSION_DENIED for this queue (repeatable)",
    )
    faults.add_argument(
        "--unavailable-for",
        type=float,
        metavar="SECONDS",
        help="answer UNAVAILABLE for the first SECONDS after start",
    )
    faults.add_argument(
        "--stream-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay each streamed event by SECONDS",
    )
    parser.add_argument(
        "--permissions-file",
        metavar="FILE",
        help="per-caller permissions, lines TOKEN [PATTERN[,PATTERN...]]: every call needs "
        "a listed bearer token (else UNAUTHENTICATED), per-queue calls a matching queue "
        "(else PERMISSION_DENIED); see docs/simulator.md",
    )
    parser.add_argument("--log-level", default="INFO", help="(default: %(default)s)")
    parser.add_argument(
        "--ready-file",
        metavar="FILE",
        help="once listening, write {pid, address, grpc_port} as JSON here (removed at exit)",
    )
    parser.set_defaults(handler=run)


def build(args: argparse.Namespace) -> ArmadaSimulator:
    """Build (not start) the simulator the parsed flags describe."""
    mix = Mix(
        fail_ratio=args.fail_ratio,
        cancel_ratio=args.cancel_ratio,
        preempt_ratio=args.preempt_ratio,
        lease_return_ratio=args.lease_return_ratio,
        queue_s=args.queue_seconds,
        pending_s=args.pending_seconds,
        run_s=args.run_seconds,
    )
    faults = Faults()
    if args.end_streams_after is not None:
        faults.end_streams_after(args.end_streams_after)
    if args.break_streams_after is not None:
        faults.break_streams_after(args.break_streams_after, _BREAK_CODES[args.break_code])
    for queue in args.deny_queue:
        faults.deny_queue(queue)
    faults.slow_streams(args.stream_delay)
    permissions = None
    if args.permissions_file is not None:
        try:
            with open(args.permissions_file) as fh:
                permissions = parse_token_scopes(fh.read(), args.permissions_file)
        except OSError as exc:
            raise ValueError(f"cannot read {args.permissions_file}: {exc.strerror}") from exc
    return ArmadaSimulator(
        args.host,
        args.port,
        queues=args.queue,
        mix=mix,
        seed=args.seed,
        time_scale=args.time_scale,
        faults=faults,
        permissions=permissions,
    )


async def serve(
    sim: ArmadaSimulator, unavailable_for_s: float | None, ready_file: str | None = None
) -> None:
    """Run ``sim`` until SIGINT or SIGTERM; tell *ready_file* once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with sim:
        if unavailable_for_s:
            sim.faults.unavailable_for(unavailable_for_s)
        queues = ", ".join(sim.queues) or "none (create one with CreateQueue)"
        print(f"armada simulator listening on {sim.address}; queues: {queues}", flush=True)
        if ready_file is not None:
            write_ready_file(ready_file, Ready(os.getpid(), sim.address, sim.port))
        try:
            await stop.wait()
        finally:
            if ready_file is not None:
                remove_ready_file(ready_file)


def _runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """Return uvloop's runner where available: it makes each streamed event cheaper."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run
    return uvloop.run


def run(args: argparse.Namespace) -> int:
    """Handle ``armada-sim``: build, serve, and map errors to exit codes."""
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        sim = build(args)
    except ValueError as exc:
        print(f"armada-sim: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        _runner()(serve(sim, args.unavailable_for, args.ready_file))
    except SimulatorError as exc:
        print(f"armada-sim: {exc}", file=sys.stderr)
        return ExitCode.CANNOT_LISTEN
    return ExitCode.OK
