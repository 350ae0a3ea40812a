"""The committed generated code matches what scripts/gen_protos.py makes from the .proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "src" / "armada_jobservice" / "_gen"


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    """Re-running the generator changes nothing; if it fails, run scripts/gen_protos.py."""
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file()}
    committed = {p.name: p.read_text() for p in GEN.iterdir() if p.is_file()}
    assert fresh.keys() == committed.keys()
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated files {stale}: run python scripts/gen_protos.py"


def test_contract_names_and_numbers() -> None:
    """The proto keeps the names and field numbers that existing clients use."""
    from armada_jobservice._gen import jobservice_pb2

    d = jobservice_pb2.DESCRIPTOR
    assert d.package == "jobservice"
    assert d.name == "jobservice.proto"
    service = d.services_by_name["JobService"]
    assert {m.name for m in service.methods} >= {"GetJobStatus", "Health"}
    fields = {f.name: f.number for f in jobservice_pb2.JobServiceRequest.DESCRIPTOR.fields}
    assert fields == {"job_id": 1, "job_set_id": 2, "queue": 3}
    fields = {f.name: f.number for f in jobservice_pb2.JobServiceResponse.DESCRIPTOR.fields}
    assert fields == {"state": 1, "error": 2}
    health = jobservice_pb2.HealthCheckResponse.ServingStatus
    assert dict(health.items()) == {"UNKNOWN": 0, "SERVING": 1, "NOT_SERVING": 2}
