"""What SQLite costs per row when another Python thread keeps the GIL busy.

The job service writes and reads SQLite on its store thread while the event
loop thread is busy. Python's sqlite3 module lets go of the GIL around every
step of a statement (each row written by ``executemany``, each row fetched),
and taking it back from a busy thread costs far more than the row. This
script measures, idle and beside a thread that spins in Python:

- 30,000 upserts by ``executemany`` (one statement per row) against
  multi-row ``INSERT ... VALUES (...), (...)`` statements of 500 rows, the
  way ``store/sql.py`` writes;
- 200,000 rows read with ``fetchall`` against the same rows fetched as one
  JSON value (``json_group_array``), the way ``store/sqlite.py`` reads.

    .venv/bin/python scripts/probes/sqlite_gil_probe.py
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

UPSERT = (
    "INSERT INTO jobs (queue, job_set_id, job_id, state, error) VALUES {values} "
    "ON CONFLICT (queue, job_set_id, job_id) DO UPDATE SET "
    "state = excluded.state, error = excluded.error"
)
CHUNK = 500


@contextmanager
def busy(on: bool) -> Iterator[None]:
    """A thread that runs Python (holding the GIL) until the block ends."""
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    thread = threading.Thread(target=spin)
    if on:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if on:
            thread.join()


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS jobs (queue TEXT, job_set_id TEXT, job_id TEXT, "
        "state INTEGER, error TEXT, PRIMARY KEY (queue, job_set_id, job_id)) WITHOUT ROWID"
    )
    return conn


def rows(n_sets: int, jobs: int, state: int) -> list[tuple[str, str, str, int, None]]:
    return [
        ("q", f"s{s:05d}", f"01m8hsccff33qrfhk1103{j:05d}", state, None)
        for s in range(n_sets)
        for j in range(jobs)
    ]


def write_one_by_one(cur: sqlite3.Cursor, batch: Sequence[tuple[object, ...]]) -> None:
    cur.executemany(UPSERT.format(values="(?, ?, ?, ?, ?)"), batch)


def write_in_chunks(cur: sqlite3.Cursor, batch: Sequence[tuple[object, ...]]) -> None:
    for start in range(0, len(batch), CHUNK):
        chunk = batch[start : start + CHUNK]
        values = ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
        cur.execute(UPSERT.format(values=values), list(itertools.chain.from_iterable(chunk)))


def read_row_by_row(cur: sqlite3.Cursor, job_set_id: str) -> int:
    cur.execute(
        "SELECT job_id, state, error FROM jobs WHERE queue = 'q' AND job_set_id = ?", (job_set_id,)
    )
    return len(cur.fetchall())


def read_as_json(cur: sqlite3.Cursor, job_set_id: str) -> int:
    cur.execute(
        "SELECT json_group_array(json_array(job_id, state, error)) FROM jobs "
        "WHERE queue = 'q' AND job_set_id = ?",
        (job_set_id,),
    )
    return len(json.loads(cur.fetchone()[0]))


def per_row_us(fn: Callable[[], int]) -> tuple[float, float]:
    """(wall us, this thread's CPU us) per row of one call of *fn*, which returns the rows."""
    wall, cpu = time.perf_counter(), time.thread_time()
    n = fn()
    return (time.perf_counter() - wall) / n * 1e6, (time.thread_time() - cpu) / n * 1e6


def timed_write(
    conn: sqlite3.Connection, write: Callable[..., None], batch: Sequence[tuple[object, ...]]
) -> tuple[float, float]:
    """Per-row cost of writing *batch* in one transaction."""

    def run() -> int:
        cur = conn.cursor()
        cur.execute("BEGIN")
        write(cur, batch)
        cur.execute("COMMIT")
        return len(batch)

    return per_row_us(run)


def timed_read(cur: sqlite3.Cursor, read: Callable[..., int], sets: int) -> tuple[float, float]:
    """Per-row cost of reading *sets* job sets one after another."""
    return per_row_us(lambda: sum(read(cur, f"s{s:05d}") for s in range(sets)))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print("writes: 30,000 upserts (1,000 job sets x 30 jobs), three rounds (insert, update x2)")
        writers = (
            ("one statement per row", write_one_by_one),
            ("500 rows per statement", write_in_chunks),
        )
        for name, write in writers:
            for loaded in (False, True):
                conn = connect(Path(tmp) / f"w-{name[:3]}-{loaded}.db")
                with busy(loaded):
                    results = [timed_write(conn, write, rows(1_000, 30, st)) for st in (0, 2, 4)]
                conn.close()
                shown = ", ".join(f"{w:.1f}/{c:.1f}" for w, c in results)
                print(f"  {name:24s} {'busy' if loaded else 'idle'}: wall/CPU us per row {shown}")

        conn = connect(Path(tmp) / "r.db")
        conn.execute("BEGIN")
        write_in_chunks(conn.cursor(), rows(20, 10_000, 4))
        conn.execute("COMMIT")
        print("reads: 20 job sets x 10,000 jobs")
        readers = (("row by row (fetchall)", read_row_by_row), ("one JSON value", read_as_json))
        for name, read in readers:
            for loaded in (False, True):
                with busy(loaded):
                    wall, cpu = timed_read(conn.cursor(), read, 20)
                state = "busy" if loaded else "idle"
                print(f"  {name:24s} {state}: {wall:.2f} us wall, {cpu:.2f} us CPU per row")
        conn.close()


if __name__ == "__main__":
    main()
