"""The chaos tests' marker: ``-m "not chaos"`` leaves out the minutes-long fault run."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``chaos`` marker (the suite runs with ``--strict-markers``)."""
    config.addinivalue_line("markers", "chaos: a fault run of about two minutes; deselectable")
