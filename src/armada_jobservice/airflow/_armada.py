"""Armada through ``armada-client``: import it safely, submit and cancel one job.

``armada-client`` 0.5.1 ships its own copy of ``google/api/http.proto`` and
``annotations.proto`` under ``armada_client.google.api``. Airflow installs
``googleapis-common-protos`` (through OpenTelemetry), whose modules register
the same file names in protobuf's default descriptor pool; whichever is
imported second fails with ``duplicate file name google/api/http.proto``.
``import_armada_client`` makes both orders work: when googleapis-common-protos
is installed, its modules are imported first and stand in for the vendored
copies, which describe the same messages.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

_VENDORED = ("http_pb2", "annotations_pb2")


def import_armada_client() -> ModuleType:
    """Import ``armada_client``'s stubs in a way that tolerates googleapis-common-protos."""
    if "armada_client.armada.submit_pb2" not in sys.modules:
        for name in _VENDORED:
            vendored = f"armada_client.google.api.{name}"
            if vendored in sys.modules:
                # The vendored copy won the race already; googleapis' modules
                # are then the ones that cannot be imported, not ours.
                continue
            try:
                shared = importlib.import_module(f"google.api.{name}")
            except ImportError:
                continue
            sys.modules[vendored] = shared
    return importlib.import_module("armada_client.armada.submit_pb2")


def pod_spec_from(spec: Any) -> Any:
    """Turn a pod spec given as a mapping (as in Kubernetes' JSON) into armada-client's proto."""
    import_armada_client()
    from armada_client.k8s.io.api.core.v1 import generated_pb2 as core_v1
    from google.protobuf import json_format

    if isinstance(spec, core_v1.PodSpec):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError(f"pod_spec must be a mapping or a PodSpec, not {type(spec).__name__}")
    return json_format.ParseDict(_wrap_quantities(spec), core_v1.PodSpec())


def _wrap_quantities(value: Any) -> Any:
    """Rewrite Kubernetes' quantity strings (``"100m"``) as the proto's ``{"string": ...}``."""
    # Kubernetes' JSON writes a resource quantity as a bare string; the
    # generated Quantity message wants it in its one string field.
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if key in ("limits", "requests") and isinstance(item, Mapping):
                out[key] = {
                    k: {"string": str(v)} if isinstance(v, str | int | float) else v
                    for k, v in item.items()
                }
            else:
                out[key] = _wrap_quantities(item)
        return out
    if isinstance(value, list):
        return [_wrap_quantities(v) for v in value]
    return value


def submit_job(
    channel: Any,
    *,
    queue: str,
    job_set_id: str,
    pod_spec: Any,
    priority: float,
    namespace: str | None,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> str:
    """Submit one job and return its id; raises ``RuntimeError`` with Armada's reason."""
    import_armada_client()
    from armada_client.client import ArmadaClient

    client = ArmadaClient(channel)
    item = client.create_job_request_item(
        priority=priority,
        pod_spec=pod_spec_from(pod_spec),
        namespace=namespace,
        labels=dict(labels),
        annotations=dict(annotations),
    )
    response = client.submit_jobs(queue=queue, job_set_id=job_set_id, job_request_items=[item])
    [result] = response.job_response_items
    if result.error:
        raise RuntimeError(f"Armada refused the job: {result.error}")
    return str(result.job_id)


def cancel_job(channel: Any, *, queue: str, job_set_id: str, job_id: str) -> None:
    """Ask Armada to cancel one job."""
    import_armada_client()
    from armada_client.client import ArmadaClient

    ArmadaClient(channel).cancel_jobs(queue=queue, job_set_id=job_set_id, job_id=job_id)
