"""Hypothesis profiles and the long-lived servers of the property tests.

``HYPOTHESIS_PROFILE`` picks the profile: ``ci`` (the default: derandomized,
so every run tries the same examples, and sized so that the property tests
add well under a minute on two cores), ``dev`` (random, a few times more) or
``long`` (random, many more, for an hour's hunt). The fake Armada and the job
service are started once per module, not once per example: each example uses
job sets of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from .harness import Running

_COMMON: dict[str, Any] = {
    # Each example makes real calls; their time is no property of the code.
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow],
}
settings.register_profile(
    "ci", max_examples=100, derandomize=True, database=None, print_blob=True, **_COMMON
)
settings.register_profile("dev", max_examples=500, print_blob=True, **_COMMON)
settings.register_profile("long", max_examples=5_000, print_blob=True, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A fake Armada and the job service reading it, shared by the tests of one module."""
    servers = Running(tmp_path_factory.mktemp("service"))
    servers.start()
    yield servers
    servers.stop()
