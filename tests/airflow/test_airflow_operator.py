"""``ArmadaJobServiceOperator`` in real DAGs (``dag.test()``) against the simulator and service."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("airflow", reason="Airflow is not installed; run scripts/test-airflow")

from airflow.utils.state import TaskInstanceState

from .dagfile import POD, run_dag, use_connection


@pytest.mark.parametrize("deferrable", [False, True], ids=["polling", "deferrable"])
def test_successful_job(stack: dict[str, str], deferrable: bool) -> None:
    """A job that succeeds makes the task succeed and pushes its id, job set and state."""
    ti, xcom = run_dag(
        stack,
        {"armada-sim/outcome": "succeeded", "armada-sim/run-seconds": "2"},
        deferrable=deferrable,
    )
    assert ti.state == TaskInstanceState.SUCCESS
    assert xcom["job_state"] == "SUCCEEDED"
    assert xcom["return_value"] == xcom["job_id"]
    assert xcom["job_set_id"].startswith("armada_")


@pytest.mark.parametrize("deferrable", [False, True], ids=["polling", "deferrable"])
def test_failed_job_fails_the_task_with_its_reason(stack: dict[str, str], deferrable: bool) -> None:
    """A failed job fails the task; its state and Armada's reason reach XCom."""
    ti, xcom = run_dag(
        stack,
        {"armada-sim/outcome": "failed", "armada-sim/failure-reason": "disk full on node-7"},
        deferrable=deferrable,
    )
    assert ti.state == TaskInstanceState.FAILED
    assert xcom["job_state"] == "FAILED"
    assert "disk full on node-7" in xcom["job_error"]


@pytest.mark.parametrize("deferrable", [False, True], ids=["polling", "deferrable"])
def test_cancelled_job_fails_the_task(stack: dict[str, str], deferrable: bool) -> None:
    """A job cancelled in Armada fails the task with CANCELLED and the reason."""
    ti, xcom = run_dag(
        stack,
        {"armada-sim/outcome": "cancelled", "armada-sim/cancel-reason": "operator said so"},
        deferrable=deferrable,
    )
    assert ti.state == TaskInstanceState.FAILED
    assert xcom["job_state"] == "CANCELLED"


def test_wait_timeout_fails_the_task_and_cancels_the_job(stack: dict[str, str]) -> None:
    """A job still running at the wait timeout fails the task and is cancelled in Armada."""
    ti, xcom = run_dag(
        stack, {"armada-sim/hold-at": "running"}, deferrable=True, wait_timeout_s=1.0
    )
    assert ti.state == TaskInstanceState.FAILED
    assert xcom["job_state"] == "TIMED_OUT"
    from armada_jobservice import JobServiceClient

    with JobServiceClient(stack["jobservice"]) as client:
        final = client.wait_for_job(
            "airflow", xcom["job_set_id"], xcom["job_id"], poll_interval_s=0.05, timeout_s=30
        )
    assert final.state.value == "CANCELLED"


def test_connection_from_the_environment(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without address arguments the operator reads the armada_jobservice_default connection."""
    use_connection(monkeypatch, stack)
    ti, xcom = run_dag(
        stack, {"armada-sim/outcome": "succeeded"}, armada_url=None, jobservice_url=None
    )
    assert (ti.state, xcom["job_state"]) == (TaskInstanceState.SUCCESS, "SUCCEEDED")


def test_operator_imports_beside_googleapis_common_protos() -> None:
    """With googleapis-common-protos loaded first (as OpenTelemetry does), the operator imports."""
    code = textwrap.dedent(
        """
        import google.api.http_pb2, google.api.annotations_pb2
        from armada_jobservice.airflow import ArmadaJobServiceOperator
        from armada_jobservice.airflow._armada import import_armada_client, pod_spec_from
        import_armada_client()
        print(pod_spec_from({"containers": [{"name": "c"}]}).containers[0].name)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "c"


def test_old_armada_airflow_client_talks_to_the_new_service(stack: dict[str, str]) -> None:
    """armada-airflow 0.5.6's JobServiceClient gets answers from the new service unchanged."""
    # Its generated jobservice.proto has the same file name as ours, so it
    # runs in a process that never imports armada_jobservice.
    code = textwrap.dedent(
        f"""
        from armada.operators.jobservice import get_retryable_job_service_client
        from armada.jobservice import jobservice_pb2
        client = get_retryable_job_service_client({stack["jobservice"]!r})
        print(jobservice_pb2.HealthCheckResponse.ServingStatus.Name(client.health().status))
        answer = client.get_job_status("airflow", "old-client-set", "no-such-job")
        print(jobservice_pb2.JobServiceResponse.State.Name(answer.state))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["SERVING", "JOB_ID_NOT_FOUND"]


def test_example_dag_parses() -> None:
    """examples/dags parses in a real DagBag without import errors, with its three tasks."""
    from airflow.models.dagbag import DagBag

    folder = Path(__file__).resolve().parents[2] / "examples" / "dags"
    bag = DagBag(dag_folder=str(folder))  # AIRFLOW__CORE__LOAD_EXAMPLES=False keeps it to ours
    assert bag.import_errors == {}
    assert sorted(bag.get_dag("armada_jobservice_example").task_ids) == [
        "extract",
        "load",
        "transform",
    ]


def test_on_kill_cancels_the_running_job(stack: dict[str, str]) -> None:
    """When Airflow kills the task, on_kill cancels the Armada job and the wait ends CANCELLED."""
    from concurrent.futures import ThreadPoolExecutor

    from airflow.exceptions import AirflowException

    from armada_jobservice import JobServiceClient, JobState
    from armada_jobservice.airflow import ArmadaJobServiceOperator

    operator = ArmadaJobServiceOperator(
        task_id="killed",
        armada_queue="airflow",
        pod_spec=POD,
        annotations={"armada-sim/hold-at": "running"},
        job_set_id=f"kill-{uuid.uuid4().hex[:8]}",
        armada_url=stack["armada"],
        jobservice_url=stack["jobservice"],
        poll_interval_s=0.05,
        wait_timeout_s=60,
    )
    pushed: dict[str, Any] = {}

    class TaskInstance:
        """Only what execute() uses of a task instance: its ids, its try and XCom pushes."""

        dag_id, task_id, map_index, try_number, max_tries = "kill", "killed", -1, 1, 0

        def xcom_push(self, key: str, value: Any) -> None:
            pushed[key] = value

    def kill_once_running() -> None:
        # Airflow calls on_kill from outside the task's own flow, as here.
        with JobServiceClient(stack["jobservice"]) as client:
            deadline = time.monotonic() + 30
            while "job_id" not in pushed or (
                client.get_job_status("airflow", pushed["job_set_id"], pushed["job_id"]).state
                is not JobState.RUNNING
            ):
                if time.monotonic() > deadline:
                    return  # execute() then never ends CANCELLED and the test fails
                time.sleep(0.05)
        operator.on_kill()

    with ThreadPoolExecutor(1) as pool:
        killer = pool.submit(kill_once_running)
        with pytest.raises(AirflowException, match="CANCELLED"):
            operator.execute({"ti": TaskInstance(), "run_id": "manual"})
        killer.result(timeout=5)
    assert pushed["job_state"] == "CANCELLED"


@pytest.mark.parametrize("deferrable", [False, True], ids=["polling", "deferrable"])
def test_token_from_the_connection_reaches_the_job_service(
    auth_stack: dict[str, str], monkeypatch: pytest.MonkeyPatch, deferrable: bool
) -> None:
    """The connection's password is sent as a bearer token, also by the trigger."""
    from .conftest import AUTH_TOKEN

    use_connection(monkeypatch, auth_stack, token=AUTH_TOKEN)
    ti, xcom = run_dag(
        auth_stack,
        {"armada-sim/outcome": "succeeded"},
        armada_url=None,
        jobservice_url=None,
        deferrable=deferrable,
    )
    assert (ti.state, xcom["job_state"]) == (TaskInstanceState.SUCCESS, "SUCCEEDED")


def test_wrong_token_fails_the_task(
    auth_stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job service that refuses the token fails the task instead of waiting forever."""
    use_connection(monkeypatch, auth_stack, token="not-the-token")
    ti, xcom = run_dag(
        auth_stack,
        {"armada-sim/outcome": "succeeded"},
        armada_url=None,
        jobservice_url=None,
        deferrable=True,
    )
    assert ti.state == TaskInstanceState.FAILED
    assert "UNAUTHENTICATED" in (xcom["job_error"] or "")
