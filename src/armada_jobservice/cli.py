"""The ``armada-jobservice`` command line: one sub-command per module.

Each command module exposes ``register(subparsers)``, which adds its parser and
sets ``handler`` (a callable taking the parsed namespace and returning the exit
code). Only this layer reads argv, configures logging and turns errors into
one-line messages with an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# Modules that contribute sub-commands, in the order `--help` lists them.
_COMMAND_MODULES = (
    "armada_jobservice.serve_cli",
    "armada_jobservice.client_cli",
    "armada_jobservice.sim.cli",
    "armada_jobservice.demo",
    "armada_jobservice.bench.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="armada-jobservice",
        description="Track Armada jobs by polling: the job service and its tools.",
    )
    from armada_jobservice import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
