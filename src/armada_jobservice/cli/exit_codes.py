"""The exit codes of every ``armada-jobservice`` command, defined once.

A code means the same in every command that can end that way (see
``docs/cli.md`` for which command uses which)::

    0  OK             the command did what it was asked; every job SUCCEEDED
    1  FAILED         a job FAILED or was CANCELLED; health: not SERVING; bench: a scenario failed
    2  USAGE          bad arguments or a setting that cannot work
    3  IN_PROGRESS    a job has not ended yet (status)
    4  NOT_FOUND      a job is JOB_ID_NOT_FOUND (status)
    5  SERVICE_ERROR  the job service could not be asked (status, wait, health, demo)
    6  TIMEOUT        gave up waiting (wait, demo)
    7  CANNOT_LISTEN  a server could not listen on its address (armada-sim)
  130  INTERRUPTED    stopped by Ctrl-C (SIGINT) where that is not the normal way out
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What a command's exit status says."""

    OK = 0
    FAILED = 1
    USAGE = 2
    IN_PROGRESS = 3
    NOT_FOUND = 4
    SERVICE_ERROR = 5
    TIMEOUT = 6
    CANNOT_LISTEN = 7
    INTERRUPTED = 130
