"""Example DAG: three Armada jobs followed through the job service, one deferrable.

Run it against the simulator and a local job service::

    armada-jobservice armada-sim --port 50051 --queue demo &
    armada-jobservice serve --armada-url 127.0.0.1:50051 &
    export AIRFLOW_CONN_ARMADA_JOBSERVICE_DEFAULT=\
'armada-jobservice://127.0.0.1:60003?armada_url=127.0.0.1:50051'
    airflow dags test armada_jobservice_example

The ``armada-sim/*`` annotations script the simulator (see docs/simulator.md);
a real Armada ignores them. ``transform`` shows a job given as armada_client's
``JobSubmitRequestItem``, built when the task runs, with re-attach on retry.
"""

from __future__ import annotations

from typing import Any

from armada_jobservice.airflow import ArmadaJobServiceOperator, import_armada_client

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG

POD = {
    "containers": [
        {
            "name": "main",
            "image": "busybox:1.36",
            "args": ["sh", "-c", "echo hello from {{ run_id }}"],
            "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
        }
    ]
}
LOOKOUT = "http://localhost:10000/?jobId=<job_id>"


def transform_request(context: Any, jinja_env: Any) -> Any:
    """The transform job, built when the task runs; its strings are templates too."""
    submit_pb2 = import_armada_client()  # first: it makes armada_client importable here
    from armada_client.k8s.io.api.core.v1 import generated_pb2 as core_v1

    container = core_v1.Container(
        name="main",
        image="busybox:1.36",
        args=["sh", "-c", "echo transforming {{ ds }} for " + context["dag"].dag_id],
    )
    return submit_pb2.JobSubmitRequestItem(
        priority=1.0,
        namespace="default",
        annotations={"armada-sim/outcome": "succeeded", "armada-sim/run-seconds": "10"},
        pod_spec=core_v1.PodSpec(containers=[container]),
    )


with DAG(dag_id="armada_jobservice_example", schedule=None, catchup=False) as dag:
    extract = ArmadaJobServiceOperator(
        task_id="extract",
        armada_queue="demo",
        pod_spec=POD,
        annotations={"armada-sim/outcome": "succeeded", "armada-sim/run-seconds": "3"},
        lookout_url_template=LOOKOUT,
        poll_interval_s=1.0,
    )
    transform = ArmadaJobServiceOperator(
        task_id="transform",
        armada_queue="demo",
        job_request=transform_request,
        retries=2,
        reattach_policy="running_or_succeeded",
        lookout_url_template=LOOKOUT,
        deferrable=True,
        poll_interval_s=1.0,
    )
    load = ArmadaJobServiceOperator(
        task_id="load",
        armada_queue="demo",
        pod_spec=POD,
        labels={"step": "load"},
        annotations={"armada-sim/outcome": "succeeded"},
        poll_interval_s=1.0,
    )
    extract >> transform >> load
