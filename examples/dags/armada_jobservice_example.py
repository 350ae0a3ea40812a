"""Example DAG: three Armada jobs followed through the job service, one deferrable.

Run it against the simulator and a local job service::

    armada-jobservice armada-sim --port 50051 --queue demo &
    armada-jobservice serve --armada-url 127.0.0.1:50051 &
    export AIRFLOW_CONN_ARMADA_JOBSERVICE_DEFAULT=\
'armada-jobservice://127.0.0.1:60003?armada_url=127.0.0.1:50051'
    airflow dags test armada_jobservice_example

The ``armada-sim/*`` annotations script the simulator (see docs/simulator.md);
a real Armada ignores them.
"""

from __future__ import annotations

from armada_jobservice.airflow import ArmadaJobServiceOperator

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

with DAG(dag_id="armada_jobservice_example", schedule=None, catchup=False) as dag:
    extract = ArmadaJobServiceOperator(
        task_id="extract",
        armada_queue="demo",
        pod_spec=POD,
        annotations={"armada-sim/outcome": "succeeded", "armada-sim/run-seconds": "3"},
        poll_interval_s=1.0,
    )
    transform = ArmadaJobServiceOperator(
        task_id="transform",
        armada_queue="demo",
        pod_spec=POD,
        annotations={"armada-sim/outcome": "succeeded", "armada-sim/run-seconds": "10"},
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
