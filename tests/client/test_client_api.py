"""The public API: exported names, docstrings and value types."""

from __future__ import annotations

import pytest

import armada_jobservice
from armada_jobservice import JobState, ServingStatus
from armada_jobservice._gen import jobservice_pb2

EXPORTED = {
    "DEFAULT_TARGET",
    "RETRY_POLICY",
    "AsyncJobServiceClient",
    "CallTimeout",
    "ConnectionErrorTimeout",
    "JobNotFoundTimeout",
    "JobRef",
    "JobServiceClient",
    "JobServiceError",
    "JobState",
    "JobStatus",
    "JobUpdate",
    "ProtocolError",
    "RPCError",
    "ServiceOverloaded",
    "ServiceUnavailable",
    "ServingStatus",
    "TransportError",
    "WaitTimeout",
    "__version__",
}


def test_exported_names_are_pinned() -> None:
    """``__all__`` lists exactly the pinned public names, and each one exists."""
    assert set(armada_jobservice.__all__) == EXPORTED
    for name in EXPORTED:
        assert hasattr(armada_jobservice, name)


@pytest.mark.parametrize(
    "name", sorted(EXPORTED - {"__version__", "DEFAULT_TARGET", "RETRY_POLICY"})
)
def test_public_classes_have_docstrings(name: str) -> None:
    """Every exported class says in its docstring what it is."""
    assert getattr(armada_jobservice, name).__doc__


def test_importing_the_package_does_not_import_airflow() -> None:
    """The main package never pulls in Airflow, even where Airflow is installed."""
    import subprocess
    import sys

    code = "import sys, armada_jobservice; print('airflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("number", "state", "terminal"),
    [
        (0, JobState.SUBMITTED, False),
        (1, JobState.DUPLICATE_FOUND, False),
        (2, JobState.RUNNING, False),
        (3, JobState.FAILED, True),
        (4, JobState.SUCCEEDED, True),
        (5, JobState.CANCELLED, True),
        (6, JobState.JOB_ID_NOT_FOUND, False),
        (7, JobState.CONNECTION_ERR, False),
    ],
)
def test_job_state_maps_every_wire_number(number: int, state: JobState, terminal: bool) -> None:
    """Each wire number maps to the state of the same name, and only three are terminal."""
    assert JobState.from_proto(number) is state
    assert jobservice_pb2.JobServiceResponse.State.Value(state.value) == number
    assert state.is_terminal is terminal
    assert str(state) == state.name


def test_job_state_rejects_unknown_numbers() -> None:
    """A number outside the contract is a ValueError, not a silent default."""
    with pytest.raises(ValueError, match="99"):
        JobState.from_proto(99)


@pytest.mark.parametrize(
    ("number", "status"),
    [
        (0, ServingStatus.UNKNOWN),
        (1, ServingStatus.SERVING),
        (2, ServingStatus.NOT_SERVING),
        (42, ServingStatus.UNKNOWN),
    ],
)
def test_serving_status_maps_wire_numbers(number: int, status: ServingStatus) -> None:
    """Serving numbers map by name, and an unknown one reads as UNKNOWN."""
    assert ServingStatus.from_proto(number) is status
