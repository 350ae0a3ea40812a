"""``ArmadaJobServiceOperator``: submit one job to Armada and follow it through the job service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from armada_jobservice._client import JobServiceClient
from armada_jobservice._exceptions import JobServiceError, WaitTimeout
from armada_jobservice._types import JobState, JobStatus
from armada_jobservice._wait import (
    DEFAULT_CONNECTION_ERROR_TIMEOUT_S,
    DEFAULT_NOT_FOUND_TIMEOUT_S,
    DEFAULT_POLL_INTERVAL_S,
)
from armada_jobservice.airflow._armada import cancel_job, submit_job
from armada_jobservice.airflow._compat import AirflowException, BaseOperator
from armada_jobservice.airflow.hook import DEFAULT_CONN_ID, ArmadaJobServiceHook, Endpoints
from armada_jobservice.airflow.trigger import ERROR, TIMED_OUT, ArmadaJobServiceTrigger


def default_job_set_id(context: Mapping[str, Any]) -> str:
    """A job set id unique to the DAG run: ``<dag_id>-<run_id>``."""
    return f"{context['dag'].dag_id}-{context['run_id']}"


class ArmadaJobServiceOperator(BaseOperator):  # type: ignore[misc]
    """Submit one job to Armada, then wait for it through the job service.

    Succeeds when the job SUCCEEDED and returns its id; raises with the job's
    error text when it FAILED or was CANCELLED, and when the wait times out
    (cancelling the job then). XCom keys: ``job_id``, ``job_set_id``,
    ``job_state``, ``job_error``. With ``deferrable=True`` the waiting happens in the
    triggerer and holds no worker slot.
    """

    template_fields: Sequence[str] = (
        "armada_queue",
        "job_set_id",
        "pod_spec",
        "namespace",
        "labels",
        "annotations",
    )
    ui_color = "#c3e6f5"

    def __init__(
        self,
        *,
        armada_queue: str,
        pod_spec: Any,
        job_set_id: str | None = None,
        priority: float = 1.0,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        conn_id: str | None = DEFAULT_CONN_ID,
        armada_url: str | None = None,
        jobservice_url: str | None = None,
        tls: bool | None = None,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        not_found_timeout_s: float = DEFAULT_NOT_FOUND_TIMEOUT_S,
        connection_error_timeout_s: float = DEFAULT_CONNECTION_ERROR_TIMEOUT_S,
        wait_timeout_s: float | None = None,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Not ``queue``: BaseOperator's ``queue`` is the Airflow executor's queue.
        self.armada_queue = armada_queue
        self.pod_spec = pod_spec
        self.job_set_id = job_set_id
        self.priority = priority
        self.namespace = namespace
        self.labels = dict(labels or {})
        self.annotations = dict(annotations or {})
        self.conn_id = conn_id
        self.armada_url = armada_url
        self.jobservice_url = jobservice_url
        self.tls = tls
        self.poll_interval_s = poll_interval_s
        self.not_found_timeout_s = not_found_timeout_s
        self.connection_error_timeout_s = connection_error_timeout_s
        self.wait_timeout_s = wait_timeout_s
        self.deferrable = deferrable
        self._submitted: tuple[str, str] | None = None

    def _endpoints(self) -> Endpoints:
        hook = ArmadaJobServiceHook(
            self.conn_id,
            armada_url=self.armada_url,
            jobservice_url=self.jobservice_url,
            tls=self.tls,
        )
        return hook.endpoints()

    def execute(self, context: Any) -> str:
        """Submit the job, push its ids to XCom, then wait (here, or deferred to the trigger)."""
        endpoints = self._endpoints()
        job_set_id = self.job_set_id or default_job_set_id(context)
        with endpoints.armada_channel() as channel:
            try:
                job_id = submit_job(
                    channel,
                    queue=self.armada_queue,
                    job_set_id=job_set_id,
                    pod_spec=self.pod_spec,
                    priority=self.priority,
                    namespace=self.namespace,
                    labels=self.labels,
                    annotations=self.annotations,
                )
            except Exception as exc:
                raise AirflowException(f"submitting to Armada failed: {exc}") from exc
        self._submitted = (job_set_id, job_id)
        context["ti"].xcom_push(key="job_id", value=job_id)
        context["ti"].xcom_push(key="job_set_id", value=job_set_id)
        self.log.info("submitted Armada job %s to %s/%s", job_id, self.armada_queue, job_set_id)
        if self.deferrable:
            self.defer(
                trigger=ArmadaJobServiceTrigger(
                    queue=self.armada_queue,
                    job_set_id=job_set_id,
                    job_id=job_id,
                    jobservice_url=endpoints.jobservice_url,
                    tls=endpoints.tls,
                    conn_id=self.conn_id if endpoints.token else None,
                    poll_interval_s=self.poll_interval_s,
                    not_found_timeout_s=self.not_found_timeout_s,
                    connection_error_timeout_s=self.connection_error_timeout_s,
                    wait_timeout_s=self.wait_timeout_s,
                ),
                method_name="execute_complete",
            )
        last: list[JobState] = []

        def log_change(status: JobStatus) -> None:
            if not last or last[-1] is not status.state:
                self.log.info("Armada job %s: %s", job_id, status.state)
                last.append(status.state)

        with JobServiceClient(
            endpoints.jobservice_url,
            tls=endpoints.tls,
            call_credentials=endpoints.call_credentials(),
        ) as client:
            try:
                status = client.wait_for_job(
                    self.armada_queue,
                    job_set_id,
                    job_id,
                    poll_interval_s=self.poll_interval_s,
                    not_found_timeout_s=self.not_found_timeout_s,
                    connection_error_timeout_s=self.connection_error_timeout_s,
                    timeout_s=self.wait_timeout_s,
                    on_status=log_change,
                )
            except WaitTimeout as exc:
                return self._finish(context, job_set_id, job_id, TIMED_OUT, str(exc))
            except JobServiceError as exc:
                return self._finish(context, job_set_id, job_id, ERROR, str(exc))
        return self._finish(context, job_set_id, job_id, status.state.value, status.error)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> str:
        """Finish after the trigger fired: succeed on SUCCEEDED, raise otherwise."""
        return self._finish(
            context, event["job_set_id"], event["job_id"], event["state"], event["error"]
        )

    def _finish(self, context: Any, job_set_id: str, job_id: str, state: str, error: str) -> str:
        context["ti"].xcom_push(key="job_state", value=state)
        context["ti"].xcom_push(key="job_error", value=error)
        if state == JobState.SUCCEEDED.value:
            self.log.info("Armada job %s succeeded", job_id)
            return job_id
        if state in (TIMED_OUT, ERROR):
            # The task is about to fail; a job left running would hold cluster
            # resources for a result nobody will collect.
            self._cancel(job_set_id, job_id)
        raise AirflowException(f"Armada job {job_id} {state}" + (f": {error}" if error else ""))

    def _cancel(self, job_set_id: str, job_id: str) -> None:
        try:
            with self._endpoints().armada_channel() as channel:
                cancel_job(channel, queue=self.armada_queue, job_set_id=job_set_id, job_id=job_id)
            self.log.info("cancelled Armada job %s", job_id)
        except Exception as exc:  # cancelling is best effort on the way out
            self.log.warning("could not cancel Armada job %s: %s", job_id, exc)

    def on_kill(self) -> None:
        """Cancel the Armada job when Airflow kills the task."""
        if self._submitted is not None:
            job_set_id, job_id = self._submitted
            self._cancel(job_set_id, job_id)
