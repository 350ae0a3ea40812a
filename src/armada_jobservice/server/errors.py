"""The service's exceptions. Errors of grpc, sqlite3 and the Postgres driver are
translated into these where they enter the code (``raise ... from exc``).
They share the package's one base with the client's (``_exceptions.py``)::

    JobServiceError
    ├── ConfigError        a setting cannot work; names the setting
    ├── StoreError         the database failed or cannot be reached
    └── (the client's errors, see _exceptions.py)
"""

from __future__ import annotations

from armada_jobservice._exceptions import JobServiceError

__all__ = ["ConfigError", "JobServiceError", "StoreError"]


class ConfigError(JobServiceError):
    """A setting is unknown, of the wrong type, or cannot work."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class StoreError(JobServiceError):
    """The database could not be opened, read or written."""
