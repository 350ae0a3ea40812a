"""Real database failures under a test's control, for the service's outage tests.

- ``PostgresProxy``: the chaos run's TCP proxy between the service and PostgreSQL. ``cut()``
  drops every connection through it and turns new ones away until ``heal()``:
  to the service it looks like the database server went away.
- ``TinyDisk``: a small tmpfs holding a SQLite file. ``fill()`` takes its last
  free byte, so SQLite's writes fail with "database or disk is full" until
  ``free()``; reads keep working, as on a real full disk.

Both present the same face, ``DatabaseOutage``: a database URL, ``begin()``
and ``end()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from pathlib import Path
from typing import Protocol

from armada_jobservice.chaos.databases import DbProxy as PostgresProxy


class DatabaseOutage(Protocol):
    """A database that a test can take away from the service and give back."""

    #: What the service is configured with (``Settings.database``).
    database_url: str
    #: What the service cannot do during the outage: "read and write" or "write".
    lost: str

    async def begin(self) -> None:
        """Make the database fail from now on."""

    async def end(self) -> None:
        """Make the database work again."""


class PostgresDown:
    """``DatabaseOutage`` of PostgreSQL: the proxy between service and database is cut."""

    lost = "read and write"

    def __init__(self, proxy: PostgresProxy) -> None:
        self.proxy = proxy
        self.database_url = proxy.url

    async def begin(self) -> None:
        """Cut the proxy."""
        self.proxy.cut()

    async def end(self) -> None:
        """Heal the proxy."""
        self.proxy.heal()


class MountNotPermitted(Exception):
    """This process may not mount a tmpfs (not root, or in a container without the capability)."""


class TinyDisk:
    """A tmpfs of a few hundred KiB mounted at *path*, which a test can fill to the last byte."""

    def __init__(self, path: Path, size_kib: int = 512) -> None:
        self.path = path
        self.size_kib = size_kib
        self._filler = path / "filler"
        self._mounted = False

    def mount(self) -> None:
        """Mount it; raise ``MountNotPermitted`` saying why when that is not allowed here."""
        if os.geteuid() != 0:
            raise MountNotPermitted("mounting a tmpfs needs root")
        self.path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_kib}k", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise MountNotPermitted(f"mount -t tmpfs failed: {result.stderr.strip()}")
        self._mounted = True

    def unmount(self) -> None:
        """Unmount it; idempotent. Lazily, so a file still open elsewhere cannot block it."""
        if self._mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=True, capture_output=True)
            self._mounted = False

    def fill(self) -> None:
        """Write a filler file until the disk has no free byte left."""
        # Unbuffered, so that ENOSPC comes from the write that hit it and no
        # bytes wait in a buffer; whole pages first, then single bytes for the
        # rest of the last page.
        with open(self._filler, "ab", buffering=0) as fh:
            for chunk in (b"\0" * 4096, b"\0"):
                while True:
                    try:
                        fh.write(chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break

    def free(self) -> None:
        """Delete the filler file."""
        with contextlib.suppress(FileNotFoundError):
            self._filler.unlink()


class SqliteDiskFull:
    """``DatabaseOutage`` of SQLite: the disk holding the file is full."""

    lost = "write"

    def __init__(self, disk: TinyDisk) -> None:
        self.disk = disk
        self.database_url = f"sqlite:///{disk.path / 'jobservice.db'}"

    async def begin(self) -> None:
        """Fill the disk."""
        await asyncio.to_thread(self.disk.fill)

    async def end(self) -> None:
        """Free the disk."""
        await asyncio.to_thread(self.disk.free)
