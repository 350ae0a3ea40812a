"""The ``serve`` command as a real process: signals, crash recovery, start-up errors."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from armada_jobservice import JobState
from armada_jobservice._ready import read_ready_file
from armada_jobservice._wire import WireState
from armada_jobservice.server.store import open_store
from armada_jobservice.server.store.migrations import MIGRATIONS

from ..fake_armada import FakeArmada
from ..helpers import (
    Connect,
    eventually,
    next_migration,
    query,
    schema_history,
    schema_version,
)

Q, JS = "queue-a", "set-1"


class ServeProcess:
    """``armada-jobservice serve`` in a child process."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: list[str]) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    @classmethod
    async def start(cls, *args: str) -> ServeProcess:
        """Start it and wait for its ready file, which names the port it listens on."""
        ready_file = Path(tempfile.mkdtemp(prefix="serve-ready-")) / "ready.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "armada_jobservice.cli",
            "serve",
            "--grpc-host",
            "127.0.0.1",
            "--grpc-port",
            "0",
            "--ready-file",
            str(ready_file),
            *args,
            stderr=asyncio.subprocess.PIPE,
        )
        self = cls(proc, 0, [])
        self._drain = asyncio.get_running_loop().create_task(self._read_rest())
        deadline = time.monotonic() + 30
        while (ready := read_ready_file(ready_file)) is None:
            if proc.returncode is not None or time.monotonic() > deadline:
                await self._drain
                raise AssertionError("serve did not become ready:\n" + "".join(self.log))
            await asyncio.sleep(0.02)
        assert ready.pid == proc.pid
        self.port = ready.grpc_port
        self.ready_file = ready_file
        return self

    async def _read_rest(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.log.append(line.decode())

    async def wait(self, timeout: float = 20) -> int:
        """Wait for the exit code."""
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await self._drain
        return code


Spawn = Callable[..., Awaitable[ServeProcess]]


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """Start ``serve`` processes; any still running when the test ends is killed."""
    started: list[ServeProcess] = []

    async def start(*args: str) -> ServeProcess:
        proc = await ServeProcess.start(*args)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc.returncode is None:
            proc.proc.kill()
            await proc.wait()


@pytest.fixture
async def fake() -> AsyncIterator[FakeArmada]:
    """A fake Armada for a child-process service."""
    armada = FakeArmada()
    await armada.start()
    yield armada
    await armada.stop()


def stored(db: Path) -> tuple[str | None, dict[str, int]]:
    """The stored resume position and job states of the test's job set."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT last_message_id FROM job_sets WHERE queue=? AND job_set_id=?", (Q, JS)
        ).fetchone()
        jobs = dict(
            conn.execute(
                "SELECT job_id, state FROM jobs WHERE queue=? AND job_set_id=?", (Q, JS)
            ).fetchall()
        )
    return (row[0] if row else None), jobs


async def test_sigkill_and_restart_resumes_from_stored_position(
    fake: FakeArmada, tmp_path: Path, spawn: Spawn, connect: Connect
) -> None:
    """After SIGKILL a restarted service keeps what it flushed and resumes after it."""
    db = tmp_path / "js.db"
    args = (
        "--armada-url",
        f"127.0.0.1:{fake.port}",
        "--database",
        f"sqlite:///{db}",
        "--flush-interval-s",
        "0.1",
    )
    first = await spawn(*args)
    client = connect(first.port)
    assert (await client.get_job_status(Q, JS, "job-0")).state == JobState.JOB_ID_NOT_FOUND
    for n in range(50):
        fake.publish(Q, JS, "submitted", f"job-{n}")
    for n in range(0, 50, 2):
        fake.publish(Q, JS, "running", f"job-{n}")
    last = fake.publish(Q, JS, "succeeded", "job-0")
    await eventually(lambda: stored(db), lambda s: s[0] == last, timeout=20)
    first.proc.send_signal(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL

    # While the service is down, Armada moves on.
    fake.publish(Q, JS, "failed", "job-2", reason="disk full")
    fake.publish(Q, JS, "cancelled", "job-3", reason="not needed")
    requests_before = len(fake.stream_requests(Q, JS))

    second = await spawn(*args)
    client = connect(second.port)
    assert (await client.get_job_status(Q, JS, "job-0")).state == JobState.SUCCEEDED
    assert (await client.get_job_status(Q, JS, "job-49")).state == JobState.SUBMITTED
    reply = await eventually(
        lambda: client.get_job_status(Q, JS, "job-2"), lambda r: r.state == JobState.FAILED
    )
    assert reply.error == "disk full"
    reply = await eventually(
        lambda: client.get_job_status(Q, JS, "job-3"), lambda r: r.state == JobState.CANCELLED
    )
    assert (await client.get_job_status(Q, JS, "job-4")).state == JobState.RUNNING
    resumed = fake.stream_requests(Q, JS)[requests_before:]
    assert [r.from_message_id for r in resumed] == [last]
    second.proc.send_signal(signal.SIGTERM)
    assert await second.wait() == 0


async def test_sigterm_flushes_and_exits_zero(
    fake: FakeArmada, tmp_path: Path, spawn: Spawn, connect: Connect
) -> None:
    """SIGTERM finishes, writes what is cached (even before a flush was due) and exits 0."""
    db = tmp_path / "js.db"
    proc = await spawn(
        "--armada-url",
        f"127.0.0.1:{fake.port}",
        "--database",
        f"sqlite:///{db}",
        "--flush-interval-s",
        "3600",
    )
    client = connect(proc.port)
    await client.get_job_status(Q, JS, "job-1")
    last = fake.publish(Q, JS, "succeeded", "job-1")
    await eventually(
        lambda: client.get_job_status(Q, JS, "job-1"), lambda r: r.state == JobState.SUCCEEDED
    )
    assert stored(db) == (None, {})
    assert proc.ready_file.exists()
    proc.proc.send_signal(signal.SIGTERM)
    assert await proc.wait(timeout=10) == 0
    assert not proc.ready_file.exists(), "the ready file outlived the service"
    assert stored(db) == (last, {"job-1": WireState.SUCCEEDED})
    assert any("final flush wrote 1 jobs" in line for line in proc.log)


def run_serve(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``serve`` expecting it to stop at start-up."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ARMADA_JOBSERVICE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "armada_jobservice.cli", "serve", "--grpc-port", "0", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=30,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("args", "env", "config", "setting"),
    [
        (["--grpc-port", "many"], {}, None, "grpc_port"),
        (["--flush-interval-s", "0"], {}, None, "flush_interval_s"),
        ([], {"ARMADA_JOBSERVICE_MAX_SUBSCRIPTIONS": "lots"}, None, "max_subscriptions"),
        ([], {"ARMADA_JOBSERVICE_NO_SUCH_THING": "1"}, None, "NO_SUCH_THING"),
        ([], {}, "grpc_port: 1\nflush_intervall_s: 2\n", "flush_intervall_s"),
        ([], {}, "subscription_expiry_s: [1, 2]\n", "subscription_expiry_s"),
        (["--database", "sqlite:////no/such/folder/js.db"], {}, None, "database"),
        (["--database", "mysql://x"], {}, None, "database"),
        (["--log-level", "LOUD"], {}, None, "log_level"),
    ],
)
def test_bad_setting_stops_start_up_with_exit_code_2(
    tmp_path: Path, args: list[str], env: dict[str, str], config: str | None, setting: str
) -> None:
    """A bad setting is one line on stderr naming it, and exit code 2."""
    if config is not None:
        path = tmp_path / "settings.yaml"
        path.write_text(config)
        args = [*args, "--config", str(path)]
    result = run_serve("--database", f"sqlite:///{tmp_path}/js.db", *args, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0]
    assert "Traceback" not in result.stderr


def test_help_documents_every_setting_with_its_default() -> None:
    """``serve --help`` lists each setting's flag and default."""
    from armada_jobservice.cli.serve import default_text
    from armada_jobservice.server import config

    result = subprocess.run(
        [sys.executable, "-m", "armada_jobservice.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    text = " ".join(result.stdout.split())
    for name in config.field_names():
        assert "--" + name.replace("_", "-") in text
        assert f"(default: {default_text(name)})" in text
    assert "--grpc-port GRPC_PORT Port of the gRPC API (0 picks one). (default: 60003)" in text


async def assert_serving(port: int) -> None:
    """The service on *port* answers the standard health check SERVING."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        await eventually(
            lambda: stub.Check(health_pb2.HealthCheckRequest()),
            lambda a: a.status == health_pb2.HealthCheckResponse.SERVING,
        )


async def test_replicas_started_together_on_an_empty_postgres_all_serve(
    fake: FakeArmada, pg_url: str, spawn: Spawn
) -> None:
    """Four replicas started at once on an empty database: all serve, each migration ran once.

    Before migrations took an advisory lock, concurrent CREATE TABLEs made
    some of them exit with ``pg_type_typname_nsp_index`` violated.
    """
    args = ("--armada-url", f"127.0.0.1:{fake.port}", "--database", pg_url)
    replicas = await asyncio.gather(*(spawn(*args) for _ in range(4)))
    for replica in replicas:
        await assert_serving(replica.port)
    history = schema_history(pg_url)
    assert [row[0] for row in history] == [m.version for m in MIGRATIONS]
    assert {row[4] for row in history} <= {r.proc.pid for r in replicas}


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
async def test_a_schema_newer_than_ours_stops_start_up_with_exit_code_2(store_url: str) -> None:
    """A database migrated by a newer release: one line naming it and both versions, exit 2."""
    from psycopg.conninfo import conninfo_to_dict

    newer = (*MIGRATIONS, next_migration(MIGRATIONS[-1].version + 1))
    store = open_store(store_url, newer)
    store.open()
    store.close()
    result = await asyncio.to_thread(run_serve, "--database", store_url)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    if store_url.startswith("sqlite:///"):
        assert store_url[len("sqlite:///") :] in lines[0]
    else:
        assert f"PostgreSQL database {conninfo_to_dict(store_url)['dbname']} " in lines[0]
    ours = MIGRATIONS[-1].version
    assert f"has schema version {ours + 1}, newer than this release's {ours}" in lines[0]
    assert schema_version(store_url) == ours + 1


async def refused_on(db: Path) -> str:
    """Start ``serve`` on a SQLite file expected to be in use: its one line, after exit code 2."""
    result = await asyncio.to_thread(run_serve, "--database", f"sqlite:///{db}")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


async def test_a_second_service_on_one_sqlite_file_is_refused_until_the_first_stops(
    fake: FakeArmada, tmp_path: Path, spawn: Spawn
) -> None:
    """One line naming the file and the running service (pid, host, since); exit 2."""
    db = tmp_path / "js.db"
    args = ("--armada-url", f"127.0.0.1:{fake.port}", "--database", f"sqlite:///{db}")
    first = await spawn(*args)
    line = await refused_on(db)
    assert f"{db} is in use by another job service" in line
    assert f"pid {first.proc.pid} on host {socket.gethostname()} since 20" in line
    await assert_serving(first.port)  # the refused one disturbed nothing
    first.proc.send_signal(signal.SIGTERM)
    assert await first.wait() == 0
    second = await spawn(*args)  # a clean stop let go of the file
    await assert_serving(second.port)
    assert f"pid {second.proc.pid} on host" in await refused_on(db)


async def test_a_killed_service_does_not_keep_its_sqlite_file(
    fake: FakeArmada, tmp_path: Path, spawn: Spawn
) -> None:
    """After kill -9 of the service holding a file, a new one starts on it at once."""
    db = tmp_path / "js.db"
    args = ("--armada-url", f"127.0.0.1:{fake.port}", "--database", f"sqlite:///{db}")
    first = await spawn(*args)
    first.proc.send_signal(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    second = await spawn(*args)
    await assert_serving(second.port)
    line = await refused_on(db)
    assert f"pid {second.proc.pid} on host" in line
    assert f"pid {first.proc.pid} " not in line


async def test_services_on_sqlite_in_memory_need_no_lock(fake: FakeArmada, spawn: Spawn) -> None:
    """``sqlite:///:memory:`` is a database of each process's own: two start side by side."""
    args = ("--armada-url", f"127.0.0.1:{fake.port}", "--database", "sqlite:///:memory:")
    for replica in [await spawn(*args), await spawn(*args)]:
        await assert_serving(replica.port)


async def test_the_database_password_never_reaches_the_log(
    spawn: Spawn, fake: FakeArmada, pg_url: str
) -> None:
    """The start-up line names the database without the password in its URL."""
    secret = "hunter2-do-not-log"
    url = pg_url.replace("postgres@", f"postgres:{secret}@", 1)
    assert secret in url
    proc = await spawn("--armada-url", f"127.0.0.1:{fake.port}", "--database", url)
    proc.proc.send_signal(signal.SIGTERM)
    assert await proc.wait() == 0
    log = "".join(proc.log)
    assert "listening on" in log
    assert "postgres:***@" in log
    assert secret not in log


def _pg_execute(url: str, sql: str) -> None:
    """Run one statement that returns no rows (DDL, INSERT), committed."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def _pg_dump_of(url: str) -> list[tuple[object, ...]]:
    """Every table of the URL's schema with its columns and rows: what must stay untouched."""
    tables = query(
        url,
        "SELECT table_name, string_agg(column_name || ' ' || data_type, ', ' ORDER BY column_name)"
        " FROM information_schema.columns WHERE table_schema = current_schema()"
        " GROUP BY table_name ORDER BY table_name",
    )
    return [*tables, *query(url, "SELECT * FROM jobs ORDER BY 1")]


async def test_a_postgres_schema_with_someone_elses_jobs_table_is_refused_untouched(
    pg_url: str,
) -> None:
    """Same table names, other columns: one line naming the table, exit 2, nothing changed."""
    _pg_execute(pg_url, "CREATE TABLE jobs (id SERIAL PRIMARY KEY, title TEXT)")
    _pg_execute(pg_url, "INSERT INTO jobs (title) VALUES ('payroll')")
    before = _pg_dump_of(pg_url)
    result = await asyncio.to_thread(run_serve, "--database", pg_url)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "is not a job service database (its table jobs has the columns id, title)" in lines[0]
    assert _pg_dump_of(pg_url) == before


async def test_a_postgres_schema_with_other_tables_is_shared(pg_url: str) -> None:
    """Tables of other names are another program's neighbours: the service starts beside them."""
    _pg_execute(pg_url, "CREATE TABLE invoices (id INTEGER)")
    store = open_store(pg_url)
    store.open()
    store.close()
    assert query(pg_url, "SELECT count(*) FROM invoices") == [(0,)]
    assert schema_version(pg_url) == MIGRATIONS[-1].version


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"PK\x03\x04 a zip archive, not a database" * 40, "file is not a database"),
        (None, "is not a job service database (it holds a table contacts)"),
        (b"", None),
    ],
    ids=["garbage", "another-programs-sqlite", "empty-file-is-ours"],
)
async def test_a_sqlite_file_that_is_not_ours_is_refused_untouched(
    tmp_path: Path, content: bytes | None, found: str | None
) -> None:
    """A file of another program or no database at all: one line, exit 2, its bytes unchanged."""
    path = tmp_path / "their.db"
    if content is None:
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE contacts (name TEXT)")
            conn.execute("INSERT INTO contacts VALUES ('ada')")
        conn.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    if found is None:  # an empty file is what a new database looks like: it becomes ours
        store = open_store(f"sqlite:///{path}")
        store.open()
        store.close()
        assert schema_version(f"sqlite:///{path}") == MIGRATIONS[-1].version
        return
    result = await asyncio.to_thread(run_serve, "--database", f"sqlite:///{path}")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0], lines[0]
    assert found in lines[0], lines[0]
    assert path.read_bytes() == before
