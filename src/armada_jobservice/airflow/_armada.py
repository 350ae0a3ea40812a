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


def request_item(
    *,
    pod_spec: Any,
    priority: float,
    namespace: str | None,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> Any:
    """Build a ``JobSubmitRequestItem`` from a pod spec and the job's metadata."""
    submit_pb2 = import_armada_client()
    item = submit_pb2.JobSubmitRequestItem(
        priority=priority,
        namespace=namespace or "",
        labels=dict(labels),
        annotations=dict(annotations),
    )
    item.pod_spec.CopyFrom(pod_spec_from(pod_spec))
    return item


def item_to_dict(item: Any) -> dict[str, Any]:
    """A request item as JSON-like data (proto field names), the form templates render."""
    from google.protobuf import json_format

    return dict(json_format.MessageToDict(item, preserving_proto_field_name=True))


def item_from(value: Any) -> Any:
    """A ``JobSubmitRequestItem`` from an item or from its ``item_to_dict`` form."""
    submit_pb2 = import_armada_client()
    from google.protobuf import json_format

    if isinstance(value, submit_pb2.JobSubmitRequestItem):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(
            f"job_request must be a JobSubmitRequestItem, a mapping or a callable returning "
            f"one, not {type(value).__name__}"
        )
    return json_format.ParseDict(dict(value), submit_pb2.JobSubmitRequestItem())


def armada_client(channel: Any) -> Any:
    """An ``armada_client.client.ArmadaClient`` on ``channel``."""
    import_armada_client()
    from armada_client.client import ArmadaClient

    return ArmadaClient(channel)


def submit_item(client: Any, *, queue: str, job_set_id: str, item: Any) -> str:
    """Submit one request item and return its job id; ``RuntimeError`` with Armada's reason."""
    response = client.submit_jobs(queue=queue, job_set_id=job_set_id, job_request_items=[item])
    [result] = response.job_response_items
    if result.error:
        raise RuntimeError(f"Armada refused the job: {result.error}")
    return str(result.job_id)


def cancel(client: Any, *, queue: str, job_set_id: str, job_id: str) -> None:
    """Ask Armada to cancel one job."""
    client.cancel_jobs(queue=queue, job_set_id=job_set_id, job_id=job_id)


def find_job(client: Any, *, queue: str, job_set_id: str, key: str, value: str) -> str | None:
    """The last job of the job set submitted with annotation ``key=value``, or ``None``.

    Reads the job set's events once, to their current end (``watch`` off), and
    looks at each ``submitted`` event's job: the event API is what every Armada
    (and the simulator) serves, where the query API's external-URI lookup is not.
    """
    from armada_client.armada import event_pb2

    request = event_pb2.JobSetRequest(id=job_set_id, queue=queue, watch=False)
    found: str | None = None
    for message in client.event_stub.GetJobSetEvents(request):
        event = message.message
        if event.WhichOneof("events") != "submitted":
            continue
        job = event.submitted.job
        if job.annotations.get(key) == value:
            found = job.id  # events come in submission order: the last one wins
    return found


def query_state(client: Any, job_id: str) -> tuple[Any, str]:
    """The job's state in Armada's query API (``armada_client.typings.JobState``) and its error."""
    import_armada_client()
    from armada_client.typings import JobState as ArmadaJobState

    states = client.get_job_status([job_id]).job_states
    state = ArmadaJobState(states[job_id]) if job_id in states else ArmadaJobState.UNKNOWN
    reason = ""
    if state in (ArmadaJobState.FAILED, ArmadaJobState.PREEMPTED, ArmadaJobState.REJECTED):
        reason = str(client.get_job_errors([job_id]).job_errors.get(job_id, ""))
    return state, reason
