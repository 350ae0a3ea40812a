"""``armada-jobservice serve``: run the job service until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.handlers
import os
import queue
import signal
import sys
from collections.abc import Mapping

from armada_jobservice._ready import Ready, remove_ready_file, write_ready_file
from armada_jobservice.cli.exit_codes import ExitCode
from armada_jobservice.server import config
from armada_jobservice.server.errors import ConfigError

log = logging.getLogger("armada_jobservice")


def default_text(name: str) -> str:
    """How ``--help`` shows a setting's default: lists and mappings as the JSON a flag takes."""
    default = config.default_of(name)
    if isinstance(default, Mapping):
        return json.dumps(dict(default))
    if isinstance(default, tuple):
        return json.dumps(list(default))
    return str(default)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` sub-command."""
    parser = subparsers.add_parser(
        "serve",
        help="run the job service",
        description=(
            "Run the job service. Settings come, in rising priority, from the defaults, "
            "a YAML file (--config), environment variables "
            f"{config.ENV_PREFIX}<SETTING> (e.g. {config.ENV_PREFIX}GRPC_PORT) and these flags."
        ),
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML file of settings, or the Go job service's config.yaml (docs/go-config.md)",
    )
    parser.add_argument(
        "--ready-file",
        metavar="FILE",
        help="once listening, write {pid, address, grpc_port, metrics_port} as JSON here "
        "(removed at exit), for supervisors, tests and the bench",
    )
    for name in config.field_names():
        kind = config.field_type(name)
        flag = "--" + name.replace("_", "-")
        help_text = config.field_help(name)
        default = default_text(name)
        if config.is_secret(name):
            help_text += " Prefer the environment or the config file over a flag for secrets."
        if kind is bool:
            parser.add_argument(
                flag,
                dest=name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=help_text + f" (default: {default})",
            )
        else:
            parser.add_argument(
                flag,
                dest=name,
                default=None,
                metavar=name.upper(),
                type=str,
                help=help_text + f" (default: {default})",
            )
    parser.set_defaults(handler=run)


def settings_from_args(args: argparse.Namespace, notes: list[str] | None = None) -> config.Settings:
    """Merge defaults, --config, the environment and flags into Settings.

    Warnings about the config file (a Go job service file's keys that cannot
    be honoured) are appended to *notes* when given, to be logged once
    logging is set up.
    """
    flags = {}
    for name in config.field_names():
        raw = getattr(args, name, None)
        if raw is not None:
            flags[name] = config.coerce(name, raw)
    return config.load(args.config, overrides=flags, notes=notes)


def configure_logging(level: str) -> logging.handlers.QueueListener:
    """One line per record on stderr, written by a thread of its own.

    Records are formatted where they are logged, then queued; the returned
    listener (started) writes them. A write to a slow pipe (a log collector
    that falls behind) then never stalls the event loop. Stop the listener
    to write out what is queued.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(level.upper())
    listener = logging.handlers.QueueListener(records, handler)
    listener.start()
    return listener


async def serve(settings: config.Settings, ready_file: str | None = None) -> None:
    """Run the service until a termination signal arrives; tell *ready_file* once listening."""
    from armada_jobservice.server.app import JobServiceApp

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from armada_jobservice.server.gc_policy import GcPolicy

    gc_policy = GcPolicy(now=loop.time())
    # A full collection on demand: bench scenario 4 measures its pause this way.
    loop.add_signal_handler(signal.SIGUSR1, gc_policy.full_collection)
    async with JobServiceApp(settings, gc_policy=gc_policy) as app:
        if app.metrics_port is not None:
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host, app.metrics_port)
        if ready_file is not None:
            ready = Ready(
                pid=os.getpid(),
                address=f"{settings.grpc_host}:{app.grpc_port}",
                grpc_port=app.grpc_port,
                metrics_port=app.metrics_port,
            )
            write_ready_file(ready_file, ready)
        try:
            await stop.wait()
            log.info("termination signal received; shutting down")
        finally:
            if ready_file is not None:
                remove_ready_file(ready_file)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``serve``."""
    notes: list[str] = []
    try:
        settings = settings_from_args(args, notes)
    except ConfigError as exc:
        print(f"armada-jobservice: bad setting {exc}", file=sys.stderr)
        return ExitCode.USAGE
    listener = configure_logging(settings.log_level)
    for note in notes:
        log.warning("%s", note)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(settings, args.ready_file))
    except ConfigError as exc:
        failure: ConfigError | None = exc
    else:
        failure = None
    finally:
        listener.stop()
    if failure is not None:
        print(f"armada-jobservice: bad setting {failure}", file=sys.stderr)
        return ExitCode.USAGE
    return ExitCode.OK
