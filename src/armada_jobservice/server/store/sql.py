"""What the SQL backends share: the queries of the ``Store`` Protocol over a DB-API cursor.

A backend supplies its parameter style, its name for the larger of two
values and ``_transaction(fn)``, which runs ``fn(cursor)`` in one transaction and
turns driver errors into ``StoreError``. The tables come from ``migrations.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from armada_jobservice.server.model import JobRow, JobSetKey, RowToWrite
from armada_jobservice.server.store.base import JobSetWrite, StoredJobSet

T = TypeVar("T")

#: Rows per multi-row INSERT; at five columns, 2,500 parameters, well under
#: SQLite's 32,766 and PostgreSQL's 65,535.
CHUNK_ROWS = 500


def not_terminal_sql(column: str) -> str:
    """A condition true while *column* holds no terminal state, for the upserts' guard.

    Spelled as ``<>`` comparisons: SQLite builds an ephemeral index for each
    execution of ``NOT IN (...)``, which tripled the cost of an updated row.
    """
    from armada_jobservice._wire import TERMINAL_STATES

    return " AND ".join(f"{column} <> {int(s)}" for s in sorted(TERMINAL_STATES))


#: Insert or update jobs' rows (before and after the VALUES rows), never
#: overwriting a stored terminal state.
UPSERT_JOBS = (
    "INSERT INTO jobs (queue, job_set_id, job_id, state, error) VALUES ",
    f"""
    ON CONFLICT (queue, job_set_id, job_id) DO UPDATE SET
        state = excluded.state, error = excluded.error
    WHERE {not_terminal_sql("jobs.state")}
    """,
)


class SQLStore:
    """The ``Store`` queries, written once with ``?`` parameters."""

    upsert_jobs_sql = UPSERT_JOBS
    #: More conditions a job set must meet to be deleted for retention.
    retention_guard = ""
    #: What else goes with a job set deleted for retention (parameters: queue, job set).
    delete_job_set_sql: tuple[str, ...] = ("DELETE FROM jobs WHERE queue = ? AND job_set_id = ?",)

    #: The driver's parameter marker, substituted for ``?``.
    param = "?"
    #: The dialect's function for the larger of two values.
    greatest = "MAX"

    @property
    def upsert_job_sets_sql(self) -> tuple[str, str]:
        """Insert or update job set rows (the part before and after the VALUES rows).

        The position only moves to a known one; the activity time only forward.
        """
        return (
            "INSERT INTO job_sets (queue, job_set_id, last_message_id, last_activity) VALUES ",
            f"""
            ON CONFLICT (queue, job_set_id) DO UPDATE SET
                last_message_id = COALESCE(excluded.last_message_id, job_sets.last_message_id),
                last_activity = {self.greatest}(excluded.last_activity, job_sets.last_activity)
            """,
        )

    def _transaction(self, fn: Callable[[Any], T], write: bool = False) -> T:
        """Run ``fn(cursor)`` in one transaction (*write*: one that will write)."""
        raise NotImplementedError

    def _q(self, sql: str) -> str:
        return sql if self.param == "?" else sql.replace("?", self.param)

    def ping(self) -> None:
        """Run a trivial query."""
        self._transaction(lambda cur: cur.execute("SELECT 1").fetchone())

    def write(self, batch: Iterable[JobSetWrite]) -> list[JobSetKey]:
        """Upsert a batch in one transaction; stored terminal states are kept.

        A job set named twice in a batch is written as its later entry over
        its earlier one (one statement may not touch a row twice in PostgreSQL).
        Returns the job sets left unwritten by the fence (see ``_fenced``).
        """
        batch = list(batch)
        if len({entry.key for entry in batch}) < len(batch):
            batch = _merge_entries(batch)

        def upsert(cur: Any) -> list[JobSetKey]:
            rejected = self._fenced(cur, batch)
            set_rows: list[tuple[str, str, str | None, float]] = []
            job_rows: list[tuple[str, str, str, int, str | None]] = []
            for entry in batch:
                if entry.key in rejected:
                    continue
                queue, job_set_id = entry.key
                set_rows.append((queue, job_set_id, entry.last_message_id, entry.last_activity))
                job_rows.extend((queue, job_set_id, j, s, e) for j, s, e in entry.rows)
            self._insert_rows(cur, self.upsert_job_sets_sql, set_rows)
            self._insert_rows(cur, self.upsert_jobs_sql, job_rows)
            return list(rejected)

        return self._transaction(upsert, write=True)

    def _fenced(self, cur: Any, batch: Sequence[JobSetWrite]) -> set[JobSetKey]:
        """The entries of *batch* this replica may no longer write (none outside a fleet)."""
        return set()

    def _insert_rows(self, cur: Any, sql: tuple[str, str], rows: Sequence[tuple[Any, ...]]) -> None:
        """Run a multi-row INSERT (*sql*: before and after its VALUES) over *rows* in chunks.

        One statement per ``CHUNK_ROWS`` rows, not one per row: a driver lets go
        of the GIL around every statement it steps, and taking it back from a
        busy event loop costs far more than the statement (measured by the
        SQLite GIL probe; figures in ``docs/benchmarks.md``).
        """
        if not rows:
            return
        before, after = sql
        one = "(" + ", ".join("?" * len(rows[0])) + ")"
        full = None
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[start : start + CHUNK_ROWS]
            if len(chunk) == CHUNK_ROWS:
                if full is None:
                    full = self._q(before + ", ".join([one] * CHUNK_ROWS) + after)
                statement = full
            else:
                statement = self._q(before + ", ".join([one] * len(chunk)) + after)
            cur.execute(statement, list(itertools.chain.from_iterable(chunk)))

    def load_job_set(self, key: JobSetKey) -> StoredJobSet | None:
        """Read one job set and its jobs."""
        return self.load_job_sets([key]).get(key)

    def load_job_sets(self, keys: Sequence[JobSetKey]) -> dict[JobSetKey, StoredJobSet]:
        """Read several job sets in one transaction: one query for the job sets, one per found set.

        A job set not stored costs no query of its own, so a batch of first
        polls of new job sets is one statement.
        """

        def read(cur: Any) -> dict[JobSetKey, StoredJobSet]:
            found = {}
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), CHUNK_ROWS):
                chunk = unique[start : start + CHUNK_ROWS]
                cur.execute(
                    self._q(
                        "SELECT queue, job_set_id, last_message_id, last_activity FROM job_sets "
                        "WHERE (queue, job_set_id) IN (VALUES "
                        + ", ".join(["(?, ?)"] * len(chunk))
                        + ")"
                    ),
                    list(itertools.chain.from_iterable(chunk)),
                )
                for queue, job_set_id, last_message_id, last_activity in cur.fetchall():
                    key = JobSetKey(queue, job_set_id)
                    found[key] = StoredJobSet(last_message_id, last_activity, [])
            for key, stored in found.items():
                stored.rows.extend(self._job_rows(cur, key))
            return found

        return self._transaction(read)

    def _job_rows(self, cur: Any, key: JobSetKey) -> list[JobRow]:
        """The stored jobs of one job set."""
        cur.execute(
            self._q("SELECT job_id, state, error FROM jobs WHERE queue = ? AND job_set_id = ?"),
            tuple(key),
        )
        return [JobRow(*r) for r in cur.fetchall()]

    def idle_job_sets(self, cutoff: float, limit: int) -> list[JobSetKey]:
        """Job sets idle since before *cutoff*."""

        def read(cur: Any) -> list[JobSetKey]:
            cur.execute(
                self._q("SELECT queue, job_set_id FROM job_sets WHERE last_activity < ? LIMIT ?"),
                (cutoff, limit),
            )
            return [JobSetKey(*r) for r in cur.fetchall()]

        return self._transaction(read)

    def delete_job_sets(self, keys: Iterable[JobSetKey], cutoff: float) -> int:
        """Delete job sets still idle since *cutoff*, with all their jobs."""
        keys = list(keys)

        def delete(cur: Any) -> int:
            deleted = 0
            for queue, job_set_id in keys:
                cur.execute(
                    self._q(
                        "DELETE FROM job_sets WHERE queue = ? AND job_set_id = ?"
                        " AND last_activity < ?" + self.retention_guard
                    ),
                    (queue, job_set_id, cutoff),
                )
                if cur.rowcount:
                    deleted += 1
                    for statement in self.delete_job_set_sql:
                        cur.execute(self._q(statement), (queue, job_set_id))
            return deleted

        return self._transaction(delete, write=True)

    def counts(self) -> tuple[int, int]:
        """Numbers of stored job sets and jobs."""

        def count(cur: Any) -> tuple[int, int]:
            sets = cur.execute("SELECT count(*) FROM job_sets").fetchone()[0]
            jobs = cur.execute("SELECT count(*) FROM jobs").fetchone()[0]
            return int(sets), int(jobs)

        return self._transaction(count)


def _merge_entries(batch: list[JobSetWrite]) -> list[JobSetWrite]:
    """One entry per job set, as if its entries had been written one after another.

    A later row of a job replaces an earlier one; the position is the last
    one given (an entry without one keeps the earlier); the activity time
    is the latest.
    """
    merged: dict[JobSetKey, tuple[JobSetWrite, dict[str, RowToWrite]]] = {}
    for entry in batch:
        if entry.key in merged:
            earlier, rows = merged[entry.key]
            entry = entry._replace(
                last_message_id=entry.last_message_id or earlier.last_message_id,
                last_activity=max(entry.last_activity, earlier.last_activity),
            )
        else:
            rows = {}
        rows.update((row[0], row) for row in entry.rows)
        merged[entry.key] = (entry, rows)
    return [entry._replace(rows=list(rows.values())) for entry, rows in merged.values()]
