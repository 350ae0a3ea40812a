"""The run's databases and what it does to them: snapshots, a proxy, a small disk, a restart.

- ``read_snapshot``: the jobs and stream positions a database holds now, read
  directly (never through the proxy), for the checker.
- ``DbProxy``: a TCP proxy between one replica and PostgreSQL that can cut
  every connection (``cut``/``heal``) or delay every chunk (``slow``).
- ``SmallDisk``: a tmpfs the run mounts for the SQLite file, fills to the last
  byte for a full disk, and unmounts at the end.
- ``restart_postgresql``: a real restart of the machine's PostgreSQL cluster.
- ``fresh_schema``/``drop_schema``: each PostgreSQL run in a schema of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from armada_jobservice._types import JobState
from armada_jobservice._wire import WireState
from armada_jobservice.chaos.truth import JobKey, SetKey, Snapshot


class CannotFault(RuntimeError):
    """A fault cannot be made on this machine; the run skips it and says why."""


def _state(value: int) -> JobState:
    return JobState(WireState(value).name)


def read_snapshot(database: str) -> Snapshot:
    """The jobs and positions in *database* (``sqlite:///path`` or a PostgreSQL URL)."""
    jobs_sql = "SELECT queue, job_set_id, job_id, state FROM jobs"
    sets_sql = "SELECT queue, job_set_id, last_message_id FROM job_sets"
    states: dict[JobKey, JobState] = {}
    positions: dict[SetKey, str] = {}
    if database.startswith("sqlite:///"):
        path = database.removeprefix("sqlite:///")
        if not Path(path).exists():
            return Snapshot(states, positions)
        db = sqlite3.connect(path, timeout=30)
        try:
            rows = db.execute(jobs_sql).fetchall()
            sets = db.execute(sets_sql).fetchall()
        except sqlite3.OperationalError:
            # Before the service's first migration there are no tables.
            rows, sets = [], []
        finally:
            db.close()
    else:
        import psycopg

        with psycopg.connect(database, connect_timeout=30) as conn:
            try:
                rows = conn.execute(jobs_sql).fetchall()
                sets = conn.execute(sets_sql).fetchall()
            except psycopg.errors.UndefinedTable:
                rows, sets = [], []
    for queue, job_set_id, job_id, state in rows:
        states[(queue, job_set_id, job_id)] = _state(state)
    for queue, job_set_id, last in sets:
        positions[(queue, job_set_id)] = last or ""
    return Snapshot(states, positions)


def fresh_schema(url: str) -> tuple[str, str]:
    """Create a new schema in the PostgreSQL database; return (its name, a URL using it)."""
    import psycopg

    schema = "chaos_" + uuid.uuid4().hex[:12]
    with psycopg.connect(url, autocommit=True, connect_timeout=30) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    return schema, f"{url}{sep}options=-csearch_path%3D{schema}"


def drop_schema(url: str, schema: str) -> None:
    """Drop the run's schema and everything in it."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=30) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def restart_postgresql() -> None:
    """Restart the local PostgreSQL cluster; ``CannotFault`` when there is none to restart."""
    clusters = sorted(Path("/etc/postgresql").glob("*/main"))
    if not clusters:
        raise CannotFault("no local PostgreSQL cluster (/etc/postgresql/*/main)")
    version = clusters[0].parent.name
    try:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CannotFault(f"pg_ctlcluster restart failed: {exc}") from exc


class DbProxy:
    """A TCP proxy on 127.0.0.1 in front of PostgreSQL: cut, heal, slow."""

    def __init__(self, upstream_url: str) -> None:
        """Proxy the server *upstream_url* names; nothing listens until ``start()``."""
        self.upstream_url = upstream_url
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._cut = False
        self.delay_s = 0.0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """The upstream URL with the proxy in place of the server."""
        parts = urlsplit(self.upstream_url)
        user = parts.netloc.rpartition("@")[0]
        netloc = (user + "@" if user else "") + f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        """Abort every connection and refuse new ones until ``heal()``."""
        self._cut = True
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    def heal(self) -> None:
        """Accept connections again."""
        self._cut = False

    async def stop(self) -> None:
        """Drop everything and stop listening; safe to call twice."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        self._transports.update((writer.transport, up_writer.transport))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One direction gone means the connection is gone, as on a real network.
            self._transports.discard(sink.transport)
            sink.transport.abort()


class SmallDisk:
    """A tmpfs of *size_mib* at *path* for the SQLite file; ``fill`` makes it full."""

    def __init__(self, path: Path, size_mib: int = 64) -> None:
        """Describe the disk; nothing is mounted until ``mount()``."""
        self.path = path
        self.size_mib = size_mib
        self._filler = path / "filler"
        self.mounted = False

    def mount(self) -> None:
        """Mount it; ``CannotFault`` saying why when this process may not."""
        if os.geteuid() != 0:
            raise CannotFault("mounting a tmpfs needs root")
        self.path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise CannotFault(f"mount -t tmpfs failed: {result.stderr.strip()}")
        self.mounted = True

    def unmount(self) -> None:
        """Unmount it (lazily, so a file still open cannot block it); safe to call twice."""
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self.mounted = False

    def fill(self) -> None:
        """Take every free byte with a filler file."""
        # Unbuffered: the write that meets ENOSPC is the one that stops, nothing
        # waits in a buffer. Large chunks first, then single bytes.
        with open(self._filler, "ab", buffering=0) as fh:
            for chunk in (b"\0" * (1 << 20), b"\0" * 4096, b"\0"):
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
