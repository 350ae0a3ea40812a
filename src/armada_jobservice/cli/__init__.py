"""The ``armada-jobservice`` command line: one module per sub-command, all in this package.

Each command module exposes ``register(subparsers)``, which adds its parser and
sets ``handler`` (a callable taking the parsed namespace and returning the exit
code). Only this layer reads argv, configures logging and turns errors into
one-line messages with an exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from armada_jobservice.cli import bench, chaos, client, demo, serve, sim
from armada_jobservice.cli.exit_codes import ExitCode

# The modules that contribute sub-commands, in the order `--help` lists them.
COMMANDS = (serve, client, sim, demo, bench, chaos)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="armada-jobservice",
        description="Track Armada jobs by polling: the job service and its tools.",
    )
    from armada_jobservice import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
