"""``armada-jobservice status | wait | health``: ask a running job service from the shell.

Exit codes are ``ExitCode`` (``cli/exit_codes.py``, listed in ``docs/cli.md``);
with several jobs the worst decides (``exit_code_for``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc

from armada_jobservice._async_client import AsyncJobServiceClient
from armada_jobservice._channel import DEFAULT_TARGET
from armada_jobservice._client import DEFAULT_CALL_TIMEOUT_S
from armada_jobservice._exceptions import JobServiceError, TransportError, WaitTimeout
from armada_jobservice._types import JobState, ServingStatus
from armada_jobservice._wait import (
    DEFAULT_CONNECTION_ERROR_TIMEOUT_S,
    DEFAULT_NOT_FOUND_TIMEOUT_S,
    DEFAULT_POLL_INTERVAL_S,
)
from armada_jobservice.cli.exit_codes import ExitCode
from armada_jobservice.cli.progress import TIMED_OUT, ProgressView, job_state

TARGET_ENV = "ARMADA_JOBSERVICE_TARGET"
TOKEN_ENV = "ARMADA_JOBSERVICE_TOKEN"


@dataclass(frozen=True, slots=True)
class Row:
    """One job's line of output."""

    job_id: str
    state: str
    error: str = ""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``status``, ``wait`` and ``health`` sub-commands."""
    status = subparsers.add_parser(
        "status",
        help="print the state of jobs",
        description="Print one line per job, asked in one call. Exit code: "
        + _codes(
            (ExitCode.OK, "all succeeded"),
            (ExitCode.FAILED, "one failed or was cancelled"),
            (ExitCode.IN_PROGRESS, "one is still in progress"),
            (ExitCode.NOT_FOUND, "one is not found"),
            (ExitCode.SERVICE_ERROR, "service error"),
        ),
    )
    _job_arguments(status)
    _connection_arguments(status)
    status.set_defaults(handler=run_status)

    wait = subparsers.add_parser(
        "wait",
        help="wait until jobs end",
        description="Watch until every job has ended (poll a service older than the "
        "watch), then print one line per job. Exit code: "
        + _codes(
            (ExitCode.OK, "all succeeded"),
            (ExitCode.FAILED, "one failed or was cancelled"),
            (ExitCode.TIMEOUT, "gave up on one"),
            (ExitCode.SERVICE_ERROR, "service error"),
        ),
    )
    _job_arguments(wait)
    wait.add_argument(
        "--poll-interval",
        type=_seconds,
        default=DEFAULT_POLL_INTERVAL_S,
        metavar="S",
        help="seconds between polls of one job, when the service cannot be watched "
        f"(default: {DEFAULT_POLL_INTERVAL_S:g})",
    )
    wait.add_argument(
        "--not-found-timeout",
        type=_seconds,
        default=DEFAULT_NOT_FOUND_TIMEOUT_S,
        metavar="S",
        help="give up on a job not found for this long, counted from when it was first "
        f"missing (default: {DEFAULT_NOT_FOUND_TIMEOUT_S:g})",
    )
    wait.add_argument(
        "--connection-error-timeout",
        type=_seconds,
        default=DEFAULT_CONNECTION_ERROR_TIMEOUT_S,
        metavar="S",
        help="give up after CONNECTION_ERR or an unreachable service for this "
        f"long (default: {DEFAULT_CONNECTION_ERROR_TIMEOUT_S:g})",
    )
    wait.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="S",
        help="give up on the whole wait after this long (default: no limit)",
    )
    wait.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="live progress view on stderr: auto shows it on a terminal (default: auto)",
    )
    _connection_arguments(wait)
    wait.set_defaults(handler=run_wait)

    health = subparsers.add_parser(
        "health",
        help="check that the service is serving",
        description=f"Exit code {int(ExitCode.OK)} only when the service answers SERVING; "
        f"{int(ExitCode.FAILED)} when it answers anything else, "
        f"{int(ExitCode.SERVICE_ERROR)} when it cannot be asked.",
    )
    _connection_arguments(health)
    health.set_defaults(handler=run_health)


def _codes(*meanings: tuple[ExitCode, str]) -> str:
    """Describe exit codes for a ``--help`` text, numbered from ``ExitCode`` itself."""
    return ", ".join(f"{int(code)} {text}" for code, text in meanings) + "."


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queue", metavar="QUEUE")
    parser.add_argument("job_set_id", metavar="JOB_SET")
    parser.add_argument("job_ids", metavar="JOB_ID", nargs="+")


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        default=None,
        metavar="HOST:PORT",
        help=f"the job service (default: ${TARGET_ENV} or {DEFAULT_TARGET})",
    )
    parser.add_argument("--tls", action="store_true", help="connect with TLS (system CAs)")
    parser.add_argument(
        "--ca-cert",
        type=Path,
        default=None,
        metavar="FILE",
        help="connect with TLS, trusting this PEM file (implies --tls)",
    )
    parser.add_argument(
        "--tls-server-name",
        default=None,
        metavar="NAME",
        help="check the server's certificate for this name instead of the target's host "
        "(implies --tls), e.g. the Service's DNS name when probing 127.0.0.1",
    )
    parser.add_argument(
        "--client-cert",
        type=Path,
        default=None,
        metavar="FILE",
        help="present this PEM client certificate, for mutual TLS (implies --tls; with "
        "--client-key)",
    )
    parser.add_argument(
        "--client-key", type=Path, default=None, metavar="FILE", help="its PEM private key"
    )
    parser.add_argument(
        "--call-timeout",
        type=_seconds,
        default=DEFAULT_CALL_TIMEOUT_S,
        metavar="S",
        help=f"deadline of one call, retries included (default: {DEFAULT_CALL_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="text lines, or one JSON document for scripts (default: text)",
    )


def _client(args: argparse.Namespace) -> AsyncJobServiceClient:
    """Build the client from the flags and the environment (a token is never a flag)."""
    tls: bool | grpc.ChannelCredentials = bool(args.tls or args.tls_server_name)
    if (args.client_cert is None) != (args.client_key is None):
        raise _UsageError("--client-cert and --client-key go together")
    if args.ca_cert is not None or args.client_cert is not None:
        pem: dict[str, bytes | None] = {}
        for flag, path in (
            ("--ca-cert", args.ca_cert),
            ("--client-cert", args.client_cert),
            ("--client-key", args.client_key),
        ):
            try:
                pem[flag] = None if path is None else path.read_bytes()
            except OSError as exc:
                raise _UsageError(f"cannot read {flag}: {exc.strerror}: {path}") from exc
        tls = grpc.ssl_channel_credentials(
            root_certificates=pem["--ca-cert"],
            private_key=pem["--client-key"],
            certificate_chain=pem["--client-cert"],
        )
    token = os.environ.get(TOKEN_ENV)
    creds = grpc.access_token_call_credentials(token) if token else None
    target = args.target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET
    options = (
        (("grpc.ssl_target_name_override", args.tls_server_name),) if args.tls_server_name else ()
    )
    return AsyncJobServiceClient(
        target, tls=tls, call_credentials=creds, call_timeout_s=args.call_timeout, options=options
    )


class _UsageError(Exception):
    """A bad argument found after parsing; reported like argparse's own errors."""


def _fail(message: str, code: ExitCode) -> int:
    print(f"armada-jobservice: error: {message}", file=sys.stderr)
    return code


def _guarded(args: argparse.Namespace, body: Any) -> int:
    """Run the command's coroutine, turning every expected error into one line."""
    try:
        return int(asyncio.run(body(args)))
    except _UsageError as exc:
        return _fail(str(exc), ExitCode.USAGE)
    except JobServiceError as exc:
        return _fail(str(exc) + _tls_hint(args, exc), ExitCode.SERVICE_ERROR)


def _tls_hint(args: argparse.Namespace, exc: JobServiceError) -> str:
    """Say which flag decides trust when a TLS handshake failed; gRPC's text names no flag."""
    if not isinstance(exc, TransportError):
        return ""
    if "hostname verification" in exc.details.lower():
        name = args.tls_server_name or args.target or "the target's host"
        return f" (the service's certificate does not name {name}; see --tls-server-name)"
    if "handshake" not in exc.details.lower():
        return ""
    if args.ca_cert is not None:
        return f" (the service's certificate is not signed by a CA in --ca-cert {args.ca_cert})"
    if args.tls:
        return " (the service's certificate is not signed by a system CA; see --ca-cert)"
    return ""


def run_status(args: argparse.Namespace) -> int:
    """Print each job's state and return the exit code for them."""
    return _guarded(args, _status)


async def _status(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        # One GetJobStatuses call (one poll per job from a service older than it).
        statuses = await client.get_job_statuses(
            [(args.queue, args.job_set_id, j) for j in args.job_ids]
        )
    rows = [Row(j, s.state.value, s.error) for j, s in zip(args.job_ids, statuses, strict=True)]
    _print_rows(args, rows, sys.stdout)
    return exit_code_for(rows)


def exit_code_for(rows: Iterable[Row]) -> int:
    """The exit code for a set of job states: the worst one decides."""
    labels = {row.state for row in rows}
    states = {job_state(label) for label in labels}
    if any(s is not None and s.is_terminal and not s.is_success for s in states):
        return ExitCode.FAILED
    if TIMED_OUT in labels:
        return ExitCode.TIMEOUT
    if JobState.JOB_ID_NOT_FOUND in states:
        return ExitCode.NOT_FOUND
    if states - {JobState.SUCCEEDED}:
        return ExitCode.IN_PROGRESS
    return ExitCode.OK


def run_wait(args: argparse.Namespace) -> int:
    """Wait for every job to end, with a progress view, and return the exit code."""
    return _guarded(args, _wait)


async def _wait(args: argparse.Namespace) -> int:
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    progress = ProgressView(args.job_ids, live=show)

    async def one(client: AsyncJobServiceClient, job_id: str) -> Row:
        try:
            status = await client.wait_for_job(
                args.queue,
                args.job_set_id,
                job_id,
                poll_interval_s=args.poll_interval,
                not_found_timeout_s=args.not_found_timeout,
                connection_error_timeout_s=args.connection_error_timeout,
                timeout_s=args.timeout,
                on_status=lambda s: progress.update(job_id, s.state.value, s.error),
            )
        except WaitTimeout as exc:
            progress.update(job_id, TIMED_OUT, str(exc))
            return Row(job_id, TIMED_OUT, str(exc))
        return Row(job_id, status.state.value, status.error)

    async with _client(args) as client:
        with progress:
            # The waits share one watch of the job set (AsyncJobServiceClient).
            rows = await asyncio.gather(*(one(client, j) for j in args.job_ids))
    _print_rows(args, rows, sys.stdout)
    return exit_code_for(rows)


def run_health(args: argparse.Namespace) -> int:
    """Print the service's serving status; exit 0 only for SERVING."""
    return _guarded(args, _health)


async def _health(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        status = await client.health()
    if args.output == "json":
        print(json.dumps({"status": status.value}))
    else:
        print(status.value)
    return ExitCode.OK if status is ServingStatus.SERVING else ExitCode.FAILED


def _print_rows(args: argparse.Namespace, rows: Sequence[Row], out: IO[str]) -> None:
    if args.output == "json":
        doc = [
            {
                "queue": args.queue,
                "job_set_id": args.job_set_id,
                "job_id": r.job_id,
                "state": r.state,
                "error": r.error,
            }
            for r in rows
        ]
        print(json.dumps(doc, indent=2), file=out)
        return
    width = max(len(r.job_id) for r in rows)
    for r in rows:
        line = f"{r.job_id:<{width}}  {r.state}"
        # Error texts can span lines (container messages); one job stays one line.
        print(line + (f"  {' '.join(r.error.split())}" if r.error else ""), file=out)
