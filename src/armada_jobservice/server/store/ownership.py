"""Whether a database that holds no schema history of ours is ours to migrate.

A store migrates a database at start. Pointed by mistake at a database of
some other program, it must not add to it, change it or drop anything in it:
``CREATE TABLE IF NOT EXISTS jobs`` would quietly keep somebody else's
``jobs`` table and the next migration would alter it. So before the first
migration of a database without ``jobservice_schema``:

- every table that has one of our names must have exactly the columns an
  earlier release of ours created (releases before versioned migrations
  wrote the tables without a history), else ``NotOurDatabase``;
- an SQLite file (one file, one program) must hold nothing but our tables.

A PostgreSQL database or schema shared with other programs' tables of other
names is fine: our tables sit beside them.
"""

from __future__ import annotations

from collections.abc import Mapping

from armada_jobservice.server.errors import StoreError

#: The columns of each table as the releases before versioned migrations left
#: them; a set in the list is one acceptable shape.
EARLIER_SHAPES: dict[str, list[frozenset[str]]] = {
    "job_sets": [frozenset({"queue", "job_set_id", "last_message_id", "last_activity"})],
    "jobs": [
        frozenset({"queue", "job_set_id", "job_id", "state", "error"}),
        frozenset({"queue", "job_set_id", "job_id", "state", "error", "xid"}),
    ],
    "job_set_owners": [
        frozenset(
            {
                "queue",
                "job_set_id",
                "owner",
                "epoch",
                "expires_at",
                "last_poll_at",
                "failure",
                "refused",
                "failing_since",
            }
        )
    ],
}


class NotOurDatabase(StoreError):
    """The database holds tables the job service did not make: it is left untouched."""

    def __init__(self, database: str, found: str) -> None:
        super().__init__(
            f"{database} is not a job service database ({found}); nothing in it was changed: "
            "point --database at an empty database, or at one the job service made"
        )
        self.database = database
        self.found = found


def check_unversioned(
    database: str,
    tables: Mapping[str, set[str]],
    *,
    whole_file: bool,
) -> None:
    """Refuse a database without our schema history that holds what is not ours.

    *tables*: each table's name and column names, as found. *whole_file*:
    the database is one program's alone (SQLite), so a table of any other
    name is not ours either.
    """
    for name in sorted(tables):
        columns = tables[name]
        shapes = EARLIER_SHAPES.get(name)
        if shapes is None:
            if whole_file:
                raise NotOurDatabase(database, f"it holds a table {name}")
            continue
        if frozenset(columns) not in shapes:
            raise NotOurDatabase(
                database, f"its table {name} has the columns {', '.join(sorted(columns))}"
            )
