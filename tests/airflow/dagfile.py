"""Write a real DAG file around one ``ArmadaJobServiceOperator``, ``dag.test()`` it, read its XComs.

Airflow 3 runs ``dag.test()`` only for DAGs it parsed from its dags folder, as
in production, so each test writes a file. A reporter task, run whatever the
operator's outcome, writes the operator's XComs to a JSON file the test reads.
"""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

POD = {
    "containers": [
        {
            "name": "main",
            "image": "busybox:1.36",
            "args": ["sleep", "1"],
            "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
        }
    ]
}

XCOM_KEYS = ("job_id", "job_set_id", "job_state", "job_error", "lookout_url", "return_value")

DAG_FILE = """
import json
from armada_jobservice.airflow import ArmadaJobServiceOperator
try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task

{prelude}

with DAG(dag_id={dag_id!r}, schedule=None, catchup=False) as dag:
    job = ArmadaJobServiceOperator(
        task_id="job", armada_queue="airflow", poll_interval_s=0.05, {code_kw}**{op_kw!r}
    )

    @task(trigger_rule="all_done")
    def report(ti=None):
        with open({out!r}, "w") as f:
            json.dump({{k: ti.xcom_pull(task_ids="job", key=k) for k in {keys!r}}}, f)

    job >> report()
"""


def run_dag(
    stack: dict[str, str],
    annotations: dict[str, str] | None = None,
    *,
    prelude: str = "",
    code_kw: str = "",
    **op_kw: Any,
) -> tuple[Any, dict[str, Any]]:
    """dag.test() a DAG of the operator and a reporter; return the operator's TI and its XComs.

    ``op_kw`` are literal operator arguments (``None`` drops one); ``code_kw``
    is source text of further arguments (``"job_request=make, "``) using names
    that ``prelude`` (module-level source) defines. Without ``job_request``,
    the job is ``POD`` with ``annotations``.
    """
    op_kw.setdefault("armada_url", stack["armada"])
    op_kw.setdefault("jobservice_url", stack["jobservice"])
    if "job_request" not in code_kw:
        op_kw.setdefault("pod_spec", POD)
        op_kw.setdefault("annotations", annotations or {})
    op_kw = {k: v for k, v in op_kw.items() if v is not None}
    dag_id = f"armada_{uuid.uuid4().hex[:8]}"
    dags = Path(os.environ["AIRFLOW_HOME"]) / "dags"
    dags.mkdir(exist_ok=True)
    out = dags.parent / f"{dag_id}.json"
    path = dags / f"{dag_id}.py"
    source = DAG_FILE.format(
        dag_id=dag_id, prelude=prelude, code_kw=code_kw, op_kw=op_kw, out=str(out), keys=XCOM_KEYS
    )
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(dag_id, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = module.dag.test()
    return run.get_task_instance("job"), json.loads(out.read_text())


def use_connection(
    monkeypatch: pytest.MonkeyPatch, stack: dict[str, str], token: str | None = None
) -> None:
    """Point the armada_jobservice_default connection at *stack*, with an optional token."""
    host, port = stack["jobservice"].rsplit(":", 1)
    auth = f":{token}@" if token else ""
    uri = f"armada-jobservice://{auth}{host}:{port}?armada_url={stack['armada']}"
    monkeypatch.setenv("AIRFLOW_CONN_ARMADA_JOBSERVICE_DEFAULT", uri)


def submitted_jobs(stack: dict[str, str], job_set_id: str) -> dict[str, dict[str, str]]:
    """Every job Armada accepted into the job set (from its events): id -> annotations."""
    import grpc
    from armada_client.armada import event_pb2, event_pb2_grpc

    jobs: dict[str, dict[str, str]] = {}
    with grpc.insecure_channel(stack["armada"]) as channel:
        stub = event_pb2_grpc.EventStub(channel)
        request = event_pb2.JobSetRequest(id=job_set_id, queue="airflow", watch=False)
        for message in stub.GetJobSetEvents(request, timeout=30):
            if message.message.WhichOneof("events") == "submitted":
                job = message.message.submitted.job
                jobs[job.id] = dict(job.annotations)
    return jobs


def armada_state(stack: dict[str, str], job_id: str) -> str:
    """The job's state in Armada's query API, by name (``UNKNOWN`` for an unseen job)."""
    import grpc

    from armada_jobservice.airflow import _armada

    with grpc.insecure_channel(stack["armada"]) as channel:
        state, _ = _armada.query_state(_armada.armada_client(channel), job_id)
    return str(state.name)
