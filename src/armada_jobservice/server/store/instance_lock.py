"""One job service per SQLite file: an exclusive ``flock`` on a lock file beside it.

The lock file (``<database>.lock``) holds, as JSON, who holds it: pid, host
and since when, for the message that refuses a second service. The kernel
releases a ``flock`` when its holder's file is closed, also when the process
is killed (``kill -9``), so a stale lock file never blocks a restart; the
file itself stays (removing it would let two processes lock two different
files of one name).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import time
from pathlib import Path

from armada_jobservice.server.errors import StoreError
from armada_jobservice.server.store.migrations import applier

#: How long to wait for a holder that has just taken the lock to write who it is.
_DESCRIBE_WAIT_S = 1.0


class InstanceHeld(StoreError):
    """Another process holds the database's instance lock."""


class InstanceLock:
    """An exclusive, non-blocking lock on *path* (a file beside the database)."""

    def __init__(self, path: Path, database: str) -> None:
        self.path = path
        self.database = database
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write who holds it, or raise ``InstanceHeld`` naming the holder."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open lock file {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InstanceHeld(
                f"{self.database} is in use by another job service ({self._holder()}); "
                "SQLite serves one replica: stop that one, or use PostgreSQL for several"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from exc
        host, pid = applier()
        since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        record = json.dumps({"pid": pid, "host": host, "since": since}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot write lock file {self.path}: {exc.strerror}") from exc
        self._fd = fd

    def release(self) -> None:
        """Empty the lock file and let go of the lock; idempotent."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor releases the flock

    def _holder(self) -> str:
        """'pid P on host H since T' as the holder wrote it, waiting briefly for a new holder."""
        deadline = time.monotonic() + _DESCRIBE_WAIT_S
        while True:
            try:
                record = json.loads(self.path.read_bytes())
                pid, host, since = int(record["pid"]), str(record["host"]), record["since"]
                # A record of a killed holder, not yet replaced by the new one's.
                if host != applier()[0] or _alive(pid):
                    return f"pid {pid} on host {host} since {since}"
            except (OSError, ValueError, KeyError, TypeError):
                # Just locked, not yet written (or emptied by a holder letting go).
                pass
            if time.monotonic() > deadline:
                return f"whose lock file {self.path} does not say who it is"
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    """Whether a process of this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
