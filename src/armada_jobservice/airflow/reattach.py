"""Re-attach on retry: which task instance a job belongs to, and whether to wait for it again.

Every job the operator submits carries annotations naming its task instance,
under the prefix ``armadaproject.io/`` (or ``$ANNOTATION_KEY_PREFIX``), with
the keys armada-airflow 1.x uses, so either operator can find the other's
jobs: ``taskId``, ``taskRunId``, ``dagId``, ``jobSet`` and ``externalJobUri``
(``airflow://<dag_id>/<task_id>/<run_id>/<map_index>``). On a retry the
operator looks for the last job with its ``externalJobUri`` in the job set
and asks the policy whether to wait for that job instead of submitting again.

A policy is a callable ``(state, termination_reason) -> bool`` over the
job's state in Armada's query API (``armada_client.typings.JobState``) and,
for a failed, preempted or rejected job, Armada's error text.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

ReattachPolicy = Callable[[Any, str], bool]
"""``(armada_client.typings.JobState, termination_reason) -> bool``: re-attach or not."""

DEFAULT_ANNOTATION_PREFIX = "armadaproject.io/"
"""The annotation prefix unless ``ANNOTATION_KEY_PREFIX`` is set (as in armada-airflow)."""


def annotation_prefix(environ: Mapping[str, str] = os.environ) -> str:
    """The prefix of the task annotations: ``$ANNOTATION_KEY_PREFIX`` or ``armadaproject.io/``."""
    return environ.get("ANNOTATION_KEY_PREFIX", DEFAULT_ANNOTATION_PREFIX)


def external_job_uri(dag_id: str, task_id: str, run_id: str, map_index: int) -> str:
    """The URI that names one task instance: ``airflow://dag/task/run/map_index``."""
    return f"airflow://{dag_id}/{task_id}/{run_id}/{map_index}"


def task_annotations(
    *, dag_id: str, task_id: str, run_id: str, map_index: int, job_set_id: str, prefix: str
) -> dict[str, str]:
    """The annotations that tie a job to its task instance."""
    return {
        f"{prefix}taskId": task_id,
        f"{prefix}taskRunId": run_id,
        f"{prefix}dagId": dag_id,
        f"{prefix}jobSet": job_set_id,
        f"{prefix}externalJobUri": external_job_uri(dag_id, task_id, run_id, map_index),
    }


def is_retry(try_number: int, max_tries: int, retries: int) -> bool:
    """Whether this try follows a failed try of the same run (not a first try, not a re-run).

    A first try, and the first try after a manual clear, start with every retry
    still ahead (Airflow raises ``max_tries`` by ``retries`` on a clear); a
    retry has used some of them.
    """
    return try_number > 1 and max_tries - try_number + 1 != retries


def never(state: Any, termination_reason: str) -> bool:
    """Never re-attach: every try submits a new job."""
    return False


def always(state: Any, termination_reason: str) -> bool:
    """Always re-attach to the earlier try's job, whatever its state."""
    return True


def running_or_succeeded(state: Any, termination_reason: str) -> bool:
    """Re-attach unless the job failed or was rejected (a preempted job is waited for too)."""
    return getattr(state, "name", str(state)) not in ("FAILED", "REJECTED")


POLICIES: Mapping[str, ReattachPolicy] = {
    "never": never,
    "always": always,
    "running_or_succeeded": running_or_succeeded,
}
"""The named policies, by the names the operator's ``reattach_policy`` takes."""


def resolve_policy(policy: str | ReattachPolicy | None) -> ReattachPolicy:
    """The policy named by ``policy`` (case-insensitive), a callable as is, ``never`` for None."""
    if policy is None:
        return never
    if callable(policy):
        return policy
    try:
        return POLICIES[policy.lower()]
    except KeyError:
        names = ", ".join(POLICIES)
        message = f"reattach_policy {policy!r} is not a callable or one of {names}"
        raise ValueError(message) from None
