"""armada-airflow 1.1.3's operator features in ours: real DAGs against the simulator and service.

Job requests (items and callables, templated), re-attach on retry by policy,
the acknowledgement timeout, dry runs, the Lookout link, ready clients and
``[operators] default_deferrable``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("airflow", reason="Airflow is not installed; run scripts/test-airflow")

from airflow.utils.state import TaskInstanceState

from .dagfile import POD, armada_state, run_dag, submitted_jobs, use_connection

# A request item whose strings are templates, built where users build theirs:
# in the DAG file, with armada_client's classes (through the import shim).
ITEM_PRELUDE = """
from armada_jobservice.airflow import import_armada_client
from google.protobuf import json_format
submit_pb2 = import_armada_client()
from armada_client.k8s.io.api.core.v1 import generated_pb2 as core_v1

def item(reason):
    return submit_pb2.JobSubmitRequestItem(
        priority=1.0,
        namespace="default",
        annotations={"armada-sim/outcome": "failed", "armada-sim/failure-reason": reason},
        pod_spec=core_v1.PodSpec(containers=[core_v1.Container(name="main", image="busybox")]),
    )

ITEM = item("{{ dag.dag_id }} broke in {{ ti.task_id }}")

def make(context, jinja_env):
    # Built when the task runs; what it returns is rendered too.
    return item("made for " + context["dag"].dag_id + " by {{ ti.task_id }}")
"""


@pytest.mark.parametrize(
    ("code_kw", "expected"),
    [
        ("job_request=ITEM, ", "{dag_id} broke in job"),
        ("job_request=make, ", "made for {dag_id} by job"),
    ],
    ids=["item", "callable"],
)
def test_job_request_is_rendered_and_submitted(
    stack: dict[str, str], code_kw: str, expected: str
) -> None:
    """A JobSubmitRequestItem, or a callable's, reaches Armada with its templates rendered."""
    ti, xcom = run_dag(stack, prelude=ITEM_PRELUDE, code_kw=code_kw)
    assert ti.state == TaskInstanceState.FAILED
    assert xcom["job_state"] == "FAILED"
    assert expected.format(dag_id=ti.dag_id) in xcom["job_error"]


def test_jobs_carry_their_task_instance(stack: dict[str, str]) -> None:
    """Each job is annotated with its DAG, task, run, job set and external job URI."""
    ti, xcom = run_dag(stack, {"armada-sim/outcome": "succeeded"})
    annotations = submitted_jobs(stack, xcom["job_set_id"])[xcom["job_id"]]
    prefix = "armadaproject.io/"
    assert {k: v for k, v in annotations.items() if k.startswith(prefix)} == {
        f"{prefix}dagId": ti.dag_id,
        f"{prefix}taskId": "job",
        f"{prefix}taskRunId": ti.run_id,
        f"{prefix}jobSet": xcom["job_set_id"],
        f"{prefix}externalJobUri": f"airflow://{ti.dag_id}/job/{ti.run_id}/-1",
    }


# The first try's job succeeds, then the try fails anyway (as when a worker
# dies after the job ended): its retry decides whether to submit again.
DIES_ONCE = """
def die_on_first_try(context, result):
    if context["ti"].try_number == 1:
        with open({record!r}, "w") as f:
            f.write(result)
        raise RuntimeError("the first try dies after its job succeeded")
"""


@pytest.mark.parametrize(
    ("policy", "reattaches", "deferrable"),
    [
        ("running_or_succeeded", True, False),
        ("running_or_succeeded", True, True),
        ("always", True, False),
        ("never", False, False),
        (None, False, True),
    ],
)
def test_retry_reattaches_by_policy(
    stack: dict[str, str], tmp_path: Path, policy: str | None, reattaches: bool, deferrable: bool
) -> None:
    """A retry waits for the earlier try's job when the policy accepts it, else submits anew."""
    record = tmp_path / "first-job-id"
    ti, xcom = run_dag(
        stack,
        {"armada-sim/outcome": "succeeded"},
        prelude=DIES_ONCE.format(record=str(record)),
        code_kw="post_execute=die_on_first_try, retry_delay=0.0, ",
        retries=1,
        reattach_policy=policy,
        deferrable=deferrable,
    )
    assert (ti.state, ti.try_number) == (TaskInstanceState.SUCCESS, 2)
    first = record.read_text()
    jobs = submitted_jobs(stack, xcom["job_set_id"])
    if reattaches:
        assert xcom["return_value"] == first
        assert list(jobs) == [first]
    else:
        assert xcom["return_value"] != first
        assert sorted(jobs) == sorted([first, xcom["return_value"]])


KEEP_DISK_FULL = """
def keep_disk_full(state, reason):
    return state.name == "FAILED" and "disk full" in reason
"""


@pytest.mark.parametrize(
    ("policy", "tries"),
    [("always", 1), ("keep_disk_full", 1), ("running_or_succeeded", 2), ("never", 2)],
)
def test_failed_job_is_retried_unless_the_policy_would_keep_it(
    stack: dict[str, str], policy: str, tries: int
) -> None:
    """A failed job the policy would keep fails the task for good; else a retry resubmits."""
    code_kw = "retry_delay=0.0, "
    if policy == "keep_disk_full":
        code_kw += "reattach_policy=keep_disk_full, "
    ti, xcom = run_dag(
        stack,
        {"armada-sim/outcome": "failed", "armada-sim/failure-reason": "disk full on node-3"},
        prelude=KEEP_DISK_FULL,
        code_kw=code_kw,
        retries=1,
        reattach_policy=None if policy == "keep_disk_full" else policy,
    )
    assert (ti.state, ti.try_number) == (TaskInstanceState.FAILED, tries)
    assert len(submitted_jobs(stack, xcom["job_set_id"])) == tries


@pytest.mark.parametrize("deferrable", [False, True], ids=["polling", "deferrable"])
def test_unacknowledged_job_fails_the_task_and_is_cancelled(
    stack: dict[str, str], deferrable: bool
) -> None:
    """A job Armada never acknowledges fails the task after the timeout and is cancelled."""
    ti, xcom = run_dag(
        stack,
        {"armada-sim/unacknowledged": "true"},
        job_acknowledgement_timeout_s=1.0,
        deferrable=deferrable,
    )
    assert ti.state == TaskInstanceState.FAILED
    assert xcom["job_state"] == "UNACKNOWLEDGED"
    assert armada_state(stack, xcom["job_id"]) == "CANCELLED"


def test_dry_run_submits_nothing(stack: dict[str, str]) -> None:
    """A dry run succeeds without submitting a job or pushing a job id."""
    ti, xcom = run_dag(stack, {"armada-sim/outcome": "failed"}, dry_run=True)
    assert ti.state == TaskInstanceState.SUCCESS
    assert xcom["job_id"] is None
    assert submitted_jobs(stack, f"{ti.dag_id}-{ti.run_id}") == {}


def test_lookout_link(stack: dict[str, str]) -> None:
    """The Lookout URL of the job reaches XCom and the task's extra link."""
    import airflow
    from armada_jobservice.airflow import LookoutLink

    template = "https://lookout.example/jobs?jobId=<job_id>"
    ti, xcom = run_dag(stack, {"armada-sim/outcome": "succeeded"}, lookout_url_template=template)
    url = f"https://lookout.example/jobs?jobId={xcom['job_id']}"
    assert xcom["lookout_url"] == url
    if airflow.__version__.startswith("2."):
        # Airflow 2's webserver asks the link, which reads the XCom.
        assert LookoutLink().get_link(None, ti_key=ti.key) == url
    else:
        # Airflow 3's UI reads the XCom under the link's key (the worker
        # re-stores get_link's answer there when the task ends).
        assert LookoutLink().xcom_key == "lookout_url"


READY_CLIENTS = """
import grpc
from armada_jobservice import JobServiceClient
from armada_jobservice.airflow import import_armada_client
import_armada_client()
from armada_client.client import ArmadaClient

ARMADA = ArmadaClient(grpc.insecure_channel({armada!r}))
JOBSERVICE = JobServiceClient({jobservice!r})
"""


@pytest.mark.parametrize(
    ("code_kw", "armada_url", "connection"),
    [
        # Both clients: no address, no connection.
        ("armada_client=ARMADA, jobservice_client=JOBSERVICE, conn_id=None, ", None, None),
        # Armada's client, the job service from the connection, whose Armada
        # address leads nowhere: the client is what submits.
        ("armada_client=ARMADA, ", None, "armada-jobservice://{jobservice}?armada_url=127.0.0.1:9"),
        # The job service's client and Armada's address: no connection needed.
        ("jobservice_client=JOBSERVICE, ", "{armada}", None),
    ],
    ids=["both", "armada-client", "jobservice-client"],
)
def test_ready_clients(
    stack: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    code_kw: str,
    armada_url: str | None,
    connection: str | None,
) -> None:
    """Handed a client, the operator needs no address or connection for that service."""
    if connection is None:
        monkeypatch.delenv("AIRFLOW_CONN_ARMADA_JOBSERVICE_DEFAULT", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_ARMADA_JOBSERVICE_DEFAULT", connection.format(**stack))
    ti, xcom = run_dag(
        stack,
        {"armada-sim/outcome": "succeeded"},
        prelude=READY_CLIENTS.format(**stack),
        code_kw=code_kw,
        armada_url=armada_url.format(**stack) if armada_url else None,
        jobservice_url=None,
    )
    assert (ti.state, xcom["job_state"]) == (TaskInstanceState.SUCCESS, "SUCCEEDED")


@pytest.mark.parametrize(
    ("setting", "argument", "expected"),
    [("True", None, True), ("False", None, False), ("True", False, False), (None, None, False)],
)
def test_deferrable_follows_default_deferrable(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, argument: bool | None, expected: bool
) -> None:
    """Without ``deferrable``, the operator takes Airflow's ``[operators] default_deferrable``."""
    from armada_jobservice.airflow import ArmadaJobServiceOperator

    if setting is None:
        monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", setting)
    kwargs: dict[str, Any] = {} if argument is None else {"deferrable": argument}
    operator = ArmadaJobServiceOperator(
        task_id="t", armada_queue="q", pod_spec=POD, armada_url="a:1", **kwargs
    )
    assert operator.deferrable is expected


@pytest.mark.parametrize(
    ("try_number", "max_tries", "retries", "expected"),
    [
        (1, 2, 2, False),  # first try
        (2, 2, 2, True),  # first retry
        (3, 2, 2, True),  # last retry
        (3, 4, 2, False),  # first try after a manual clear
        (4, 4, 2, True),  # a retry after the clear
        (2, 1, 0, False),  # re-run of a task without retries
    ],
)
def test_is_retry(try_number: int, max_tries: int, retries: int, expected: bool) -> None:
    """Only tries that follow a failed try of the same run look for the earlier job."""
    from armada_jobservice.airflow.reattach import is_retry

    assert is_retry(try_number, max_tries, retries) is expected


@pytest.mark.parametrize(
    ("name", "state", "expected"),
    [
        ("running_or_succeeded", "RUNNING", True),
        ("running_or_succeeded", "SUCCEEDED", True),
        ("running_or_succeeded", "PREEMPTED", True),
        ("running_or_succeeded", "FAILED", False),
        ("running_or_succeeded", "REJECTED", False),
        ("always", "FAILED", True),
        ("never", "RUNNING", False),
        ("NEVER", "SUCCEEDED", False),
    ],
)
def test_named_policies(name: str, state: str, expected: bool) -> None:
    """The named re-attach policies over Armada's job states, as armada-airflow defines them."""
    from armada_jobservice.airflow import import_armada_client
    from armada_jobservice.airflow.reattach import resolve_policy

    import_armada_client()
    from armada_client.typings import JobState

    assert resolve_policy(name)(JobState[state], "") is expected


def test_unknown_policy_fails_when_the_dag_loads() -> None:
    """A misspelt policy name raises when the operator is built, not at the first retry."""
    from armada_jobservice.airflow import ArmadaJobServiceOperator

    with pytest.raises(ValueError, match="running_or_succeeded"):
        ArmadaJobServiceOperator(
            task_id="t", armada_queue="q", pod_spec=POD, reattach_policy="sometimes"
        )


def test_example_dag_runs(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/dags runs to success against the simulator and the job service, as documented."""
    import importlib.util
    import os
    import shutil

    use_connection(monkeypatch, stack)
    source = (
        Path(__file__).resolve().parents[2] / "examples" / "dags" / "armada_jobservice_example.py"
    )
    dags = Path(os.environ["AIRFLOW_HOME"]) / "dags"
    dags.mkdir(exist_ok=True)
    path = Path(shutil.copy(source, dags / source.name))
    spec = importlib.util.spec_from_file_location("armada_jobservice_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = module.dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == dict.fromkeys(["extract", "transform", "load"], TaskInstanceState.SUCCESS)
