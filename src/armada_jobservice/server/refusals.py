"""Refused calls: one audit log line each, and a count per reason for Prometheus.

The audit lines go to the logger ``armada_jobservice.audit`` so that an
operator can route them apart from the service's other logs. They name the
caller's identity (never its token), the method, the queue and the reason.
The reasons are a fixed set: they are the only label of the refusals metric,
which therefore stays small whatever the callers send.
"""

from __future__ import annotations

import enum
import logging

import grpc

audit_log = logging.getLogger("armada_jobservice.audit")


class Reason(enum.StrEnum):
    """Why a call was refused; the label values of ``armada_jobservice_refused_calls``."""

    UNAUTHENTICATED = "unauthenticated"
    """No credentials, or credentials nobody listed (or Armada did not accept)."""
    OUT_OF_SCOPE = "out_of_scope"
    """The caller's scope does not cover the queue."""
    ARMADA_DENIED = "armada_denied"
    """Armada refused the caller's own token for the queue (``access_check: armada``)."""
    ARMADA_UNAVAILABLE = "armada_unavailable"
    """Armada could not be asked (``access_check: armada``); not cached."""
    SUBSCRIPTION_COUNT = "subscription_count"
    """The caller has ``max_subscriptions_per_identity`` subscriptions open."""
    SUBSCRIPTION_RATE = "subscription_rate"
    """The caller opened new subscriptions faster than its rate allows."""


#: The gRPC status each reason is answered with.
STATUS = {
    Reason.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Reason.OUT_OF_SCOPE: grpc.StatusCode.PERMISSION_DENIED,
    Reason.ARMADA_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Reason.ARMADA_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Reason.SUBSCRIPTION_COUNT: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.SUBSCRIPTION_RATE: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class Refusals:
    """Counts refusals by reason and writes the audit line of each."""

    def __init__(self) -> None:
        self.counts: dict[Reason, int] = dict.fromkeys(Reason, 0)

    def record(
        self, reason: Reason, *, identity: str, method: str, queue: str, peer: str, detail: str
    ) -> None:
        """Count one refusal and log its audit line."""
        self.counts[reason] += 1
        audit_log.warning(
            "refused identity=%s method=%s queue=%r reason=%s peer=%s: %s",
            identity,
            method,
            queue,
            reason.value,
            peer,
            detail,
        )
