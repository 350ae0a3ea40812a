"""The service's exceptions. Errors of grpc, sqlite3 and the Postgres driver are
translated into these where they enter the code (``raise ... from exc``)::

    JobServiceError
    ├── ConfigError        a setting cannot work; names the setting
    └── StoreError         the database failed or cannot be reached
"""

from __future__ import annotations


class JobServiceError(Exception):
    """Base of every error the job service raises on purpose."""


class ConfigError(JobServiceError):
    """A setting is unknown, of the wrong type, or cannot work."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class StoreError(JobServiceError):
    """The database could not be opened, read or written."""
