"""Run the Armada simulator and the job service in one process, for the Airflow tests.

Prints ``{"armada": "host:port", "jobservice": "host:port"}`` on one line once
both listen, then serves until its standard input closes. An optional
argument names a file of bearer tokens the job service then requires. Queues:
``airflow`` for the tests' DAGs, ``demo`` for examples/dags. A process of its
own keeps Airflow's event loops (triggers run in one) apart from the servers'.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile

from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.config import Settings
from armada_jobservice.sim import ArmadaSimulator


async def main() -> None:
    """Serve until stdin reaches EOF."""
    with tempfile.TemporaryDirectory() as tmp:
        async with ArmadaSimulator(queues=["airflow", "demo"], time_scale=0.01, seed=7) as sim:
            settings = Settings(
                grpc_host="127.0.0.1",
                grpc_port=0,
                armada_url=sim.address,
                database=f"sqlite:///{tmp}/js.db",
                metrics_port=None,
                client_tokens_file=sys.argv[1] if len(sys.argv) > 1 else None,
            )
            async with JobServiceApp(settings) as app:
                addresses = {"armada": sim.address, "jobservice": f"127.0.0.1:{app.grpc_port}"}
                print(json.dumps(addresses), flush=True)
                await asyncio.to_thread(sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
