"""Builders of Armada ``EventMessage``s, for the engine and for scripted tests.

``build_event("failed", queue, job_set_id, job_id, reason=...)`` returns an
``event_pb2.EventMessage`` with the ``failed`` member of its oneof set; extra
keyword arguments are fields of that member (``JobFailedEvent`` here).
"""

from __future__ import annotations

import time
import zlib
from typing import Any

from armada_client.armada import event_pb2
from google.protobuf import timestamp_pb2

from armada_jobservice.sim.lifecycle import cause_value

EVENT_KINDS: tuple[str, ...] = tuple(
    f.name for f in event_pb2.EventMessage.DESCRIPTOR.oneofs_by_name["events"].fields
)

CLUSTER_ID = "sim-cluster"
POOL = "default"
NAMESPACE = "default"
CONTAINER = "main"


def _message_class(kind: str) -> Any:
    field = event_pb2.EventMessage.DESCRIPTOR.fields_by_name.get(kind)
    if field is None or field.containing_oneof is None:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
    assert field.message_type is not None
    return getattr(event_pb2, field.message_type.name)


def now_timestamp() -> timestamp_pb2.Timestamp:
    """Return the current wall-clock time as a protobuf Timestamp."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


def build_event(
    kind: str,
    queue: str,
    job_set_id: str,
    job_id: str,
    **fields: Any,
) -> event_pb2.EventMessage:
    """Return an ``EventMessage`` whose ``kind`` member is set for the given job.

    ``created`` defaults to now; other keyword arguments are passed to the
    member's message constructor.
    """
    cls = _message_class(kind)
    fields.setdefault("created", now_timestamp())
    inner = cls(job_id=job_id, job_set_id=job_set_id, queue=queue, **fields)
    return event_pb2.EventMessage(**{kind: inner})


def failure_fields(reason: str, exit_code: int, cause: str = "Error") -> dict[str, Any]:
    """Return the ``JobFailedEvent`` fields of a single-container pod failure."""
    cause_enum = cause_value(cause)
    return {
        "cluster_id": CLUSTER_ID,
        "reason": reason,
        "exit_codes": {CONTAINER: exit_code},
        "container_statuses": [
            event_pb2.ContainerStatus(
                name=CONTAINER,
                exitCode=exit_code,
                message=reason,
                reason=reason.split(":", 1)[0],
                cause=cause_enum,
            )
        ],
        "cause": cause_enum,
        "failure_category": cause,
        "retryable": cause in ("Evicted",),
        "pod_namespace": NAMESPACE,
    }


def run_fields(kind: str, job_id: str, attempt: int) -> dict[str, Any]:
    """Return the cluster/pod fields that a lease, pending, running or outcome event carries."""
    pod = f"armada-{job_id}-{attempt}"
    node = f"sim-node-{zlib.crc32(job_id.encode()) % 8}"
    if kind == "leased":
        return {"cluster_id": CLUSTER_ID, "pool": POOL}
    if kind == "pending":
        return {
            "cluster_id": CLUSTER_ID,
            "kubernetes_id": pod,
            "pod_name": pod,
            "pod_namespace": NAMESPACE,
            "pool": POOL,
            "pod_number": 0,
        }
    if kind == "running":
        return {
            "cluster_id": CLUSTER_ID,
            "kubernetes_id": pod,
            "pod_name": pod,
            "pod_namespace": NAMESPACE,
            "pool": POOL,
            "node_name": node,
        }
    if kind == "succeeded":
        return {
            "cluster_id": CLUSTER_ID,
            "kubernetes_id": pod,
            "pod_name": pod,
            "pod_namespace": NAMESPACE,
            "node_name": node,
        }
    return {}


def event_kind(message: event_pb2.EventMessage) -> str:
    """Return the name of the member set in an ``EventMessage`` (``""`` if none)."""
    return message.WhichOneof("events") or ""


def event_job_id(message: event_pb2.EventMessage) -> str:
    """Return the job id carried by an ``EventMessage`` (``""`` if none)."""
    kind = message.WhichOneof("events")
    if kind is None:
        return ""
    return str(getattr(message, kind).job_id)
