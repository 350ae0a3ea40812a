"""``ArmadaJobServiceOperator``: submit one job to Armada and follow it through the job service."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from armada_jobservice._client import JobServiceClient
from armada_jobservice._exceptions import JobNotFoundTimeout, JobServiceError, WaitTimeout
from armada_jobservice._types import JobState, JobStatus
from armada_jobservice._wait import (
    DEFAULT_CONNECTION_ERROR_TIMEOUT_S,
    DEFAULT_POLL_INTERVAL_S,
)
from armada_jobservice.airflow import _armada, reattach
from armada_jobservice.airflow._compat import (
    AirflowException,
    AirflowFailException,
    BaseOperator,
    default_deferrable,
)
from armada_jobservice.airflow.hook import DEFAULT_CONN_ID, ArmadaJobServiceHook, Endpoints
from armada_jobservice.airflow.links import LOOKOUT_XCOM_KEY, LookoutLink, lookout_url
from armada_jobservice.airflow.trigger import (
    ERROR,
    TIMED_OUT,
    UNACKNOWLEDGED,
    ArmadaJobServiceTrigger,
)

DEFAULT_JOB_ACKNOWLEDGEMENT_TIMEOUT_S = 300.0
"""Seconds a submitted job may stay unknown to the job service before the task fails."""

JobRequestFactory = Callable[[Any, Any], Any]
"""``(context, jinja_env) -> JobSubmitRequestItem``: builds the job when the task runs."""


def default_job_set_id(context: Mapping[str, Any]) -> str:
    """A job set id unique to the DAG run: ``<dag_id>-<run_id>``."""
    return f"{context['dag'].dag_id}-{context['run_id']}"


class ArmadaJobServiceOperator(BaseOperator):  # type: ignore[misc]
    """Submit one job to Armada (or find the one an earlier try submitted), then wait for it.

    The job is a ``pod_spec`` (with ``priority``, ``namespace``, ``labels``,
    ``annotations``) or a ``job_request``: an ``armada_client``
    ``JobSubmitRequestItem``, or a callable ``(context, jinja_env)`` returning
    one. Succeeds when the job SUCCEEDED and returns its id; raises with the
    job's error text when it FAILED or was CANCELLED, and when the wait times
    out or Armada never acknowledged the job (cancelling the job then). XCom
    keys: ``job_id``, ``job_set_id``, ``lookout_url``, ``job_state``,
    ``job_error``. With ``deferrable=True`` the waiting happens in the
    triggerer and holds no worker slot. See docs/airflow.md.
    """

    template_fields: Sequence[str] = (
        "armada_queue",
        "job_set_id",
        "pod_spec",
        "namespace",
        "labels",
        "annotations",
        "job_request",
    )
    template_fields_renderers = {"pod_spec": "json", "job_request": "json"}
    # Clients hold sockets and a callable may close over anything: Airflow's
    # deep copies of the task must share them, not copy them.
    shallow_copy_attrs: Sequence[str] = ("armada_client", "jobservice_client", "job_request")
    ui_color = "#c3e6f5"

    def __init__(
        self,
        *,
        armada_queue: str,
        pod_spec: Any = None,
        job_request: Any = None,
        job_set_id: str | None = None,
        priority: float = 1.0,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        conn_id: str | None = DEFAULT_CONN_ID,
        armada_url: str | None = None,
        jobservice_url: str | None = None,
        tls: bool | None = None,
        armada_client: Any = None,
        jobservice_client: JobServiceClient | None = None,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        job_acknowledgement_timeout_s: float = DEFAULT_JOB_ACKNOWLEDGEMENT_TIMEOUT_S,
        not_found_timeout_s: float | None = None,
        connection_error_timeout_s: float = DEFAULT_CONNECTION_ERROR_TIMEOUT_S,
        wait_timeout_s: float | None = None,
        reattach_policy: str | reattach.ReattachPolicy | None = None,
        lookout_url_template: str | None = None,
        dry_run: bool = False,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (pod_spec is None) == (job_request is None):
            raise ValueError("give exactly one of pod_spec and job_request")
        # Not ``queue``: BaseOperator's ``queue`` is the Airflow executor's queue.
        self.armada_queue = armada_queue
        self.pod_spec = pod_spec
        self.job_request = job_request
        self.job_set_id = job_set_id
        self.priority = priority
        self.namespace = namespace
        self.labels = dict(labels or {})
        self.annotations = dict(annotations or {})
        self.conn_id = conn_id
        self.armada_url = armada_url
        self.jobservice_url = jobservice_url
        self.tls = tls
        self.armada_client = armada_client
        self.jobservice_client = jobservice_client
        self.poll_interval_s = poll_interval_s
        self.job_acknowledgement_timeout_s = job_acknowledgement_timeout_s
        # One clock for "not seen yet" unless the caller wants another.
        self.not_found_timeout_s = (
            job_acknowledgement_timeout_s if not_found_timeout_s is None else not_found_timeout_s
        )
        self.connection_error_timeout_s = connection_error_timeout_s
        self.wait_timeout_s = wait_timeout_s
        self.reattach_policy = reattach_policy
        reattach.resolve_policy(reattach_policy)  # a misspelt name fails when the DAG loads
        self.lookout_url_template = lookout_url_template
        if lookout_url_template:
            # Only then: Airflow 2's webserver logs an error for every task
            # whose link class no plugin registered.
            self.operator_extra_links = (LookoutLink(),)
        self.dry_run = dry_run
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self._submitted: tuple[str, str] | None = None

    # -- the request ----------------------------------------------------------

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Build ``job_request`` if it is a callable, then render every templated field.

        A request item is rendered in its JSON form (proto field names), so
        every string in it is a template: container args, env values, labels,
        annotations, namespace, and so on.
        """
        if callable(self.job_request):
            env = jinja_env if jinja_env is not None else self.get_template_env()
            self.job_request = self.job_request(context, env)
        if self.job_request is not None and not isinstance(self.job_request, Mapping):
            self.job_request = _armada.item_to_dict(_armada.item_from(self.job_request))
        super().render_template_fields(context, jinja_env)

    def build_request(self, context: Any, job_set_id: str) -> Any:
        """The ``JobSubmitRequestItem`` to submit, with the task-instance annotations added."""
        if self.job_request is not None:
            item = _armada.item_from(self.job_request)
        else:
            item = _armada.request_item(
                pod_spec=self.pod_spec,
                priority=self.priority,
                namespace=self.namespace,
                labels=self.labels,
                annotations=self.annotations,
            )
        ti = context["ti"]
        item.annotations.update(
            reattach.task_annotations(
                dag_id=ti.dag_id,
                task_id=ti.task_id,
                run_id=context["run_id"],
                map_index=getattr(ti, "map_index", -1),
                job_set_id=job_set_id,
                prefix=reattach.annotation_prefix(),
            )
        )
        return item

    # -- clients ----------------------------------------------------------------

    def _endpoints(self, required: tuple[str, ...]) -> Endpoints:
        hook = ArmadaJobServiceHook(
            self.conn_id,
            armada_url=self.armada_url,
            jobservice_url=self.jobservice_url,
            tls=self.tls,
        )
        return hook.endpoints(required)

    @contextmanager
    def _armada(self) -> Iterator[Any]:
        """The Armada client handed in, or one on a channel opened (and closed) here."""
        if self.armada_client is not None:
            yield self.armada_client
            return
        with self._endpoints(("armada_url",)).armada_channel() as channel:
            yield _armada.armada_client(channel)

    @contextmanager
    def _jobservice(self) -> Iterator[JobServiceClient]:
        """The job service client handed in, or one opened (and closed) here."""
        if self.jobservice_client is not None:
            yield self.jobservice_client
            return
        endpoints = self._endpoints(("jobservice_url",))
        with JobServiceClient(
            endpoints.jobservice_url,
            tls=endpoints.tls,
            call_credentials=endpoints.call_credentials(),
        ) as client:
            yield client

    # -- execution --------------------------------------------------------------

    def execute(self, context: Any) -> str | None:
        """Submit the job or re-attach to an earlier try's, push its ids, then wait for it."""
        job_set_id = self.job_set_id or default_job_set_id(context)
        item = self.build_request(context, job_set_id)
        if self.dry_run:
            body = json.dumps(_armada.item_to_dict(item), indent=2, sort_keys=True)
            self.log.info(
                "dry run: would submit to Armada queue %s, job set %s:\n%s",
                self.armada_queue,
                job_set_id,
                body,
            )
            return None
        with self._armada() as client:
            try:
                job_id = self._reattach(context, client, job_set_id, item)
            except Exception as exc:  # grpc's errors, from armada-client's stubs
                raise AirflowException(f"looking for the earlier try's job failed: {exc}") from exc
            if job_id is None:
                try:
                    job_id = _armada.submit_item(
                        client, queue=self.armada_queue, job_set_id=job_set_id, item=item
                    )
                except Exception as exc:
                    raise AirflowException(f"submitting to Armada failed: {exc}") from exc
                self.log.info(
                    "submitted Armada job %s to %s/%s", job_id, self.armada_queue, job_set_id
                )
        self._submitted = (job_set_id, job_id)
        url = lookout_url(self.lookout_url_template, job_id)
        ti = context["ti"]
        ti.xcom_push(key="job_id", value=job_id)
        ti.xcom_push(key="job_set_id", value=job_set_id)
        if url:
            ti.xcom_push(key=LOOKOUT_XCOM_KEY, value=url)
            self.log.info("Armada job %s in Lookout: %s", job_id, url)
        if self.deferrable:
            self._defer(job_set_id, job_id)
        return self._wait(context, job_set_id, job_id)

    def _reattach(self, context: Any, client: Any, job_set_id: str, item: Any) -> str | None:
        """On a retry, the earlier try's job if the policy accepts it; otherwise ``None``."""
        policy = reattach.resolve_policy(self.reattach_policy)
        ti = context["ti"]
        if policy is reattach.never or not reattach.is_retry(
            ti.try_number, ti.max_tries, self.retries
        ):
            return None
        key = f"{reattach.annotation_prefix()}externalJobUri"
        uri = item.annotations[key]
        job_id = _armada.find_job(
            client, queue=self.armada_queue, job_set_id=job_set_id, key=key, value=uri
        )
        if job_id is None:
            self.log.info("no earlier Armada job of %s in job set %s", uri, job_set_id)
            return None
        state, reason = _armada.query_state(client, job_id)
        if not policy(state, reason):
            self.log.info("Armada job %s is %s: not re-attaching, by policy", job_id, state.name)
            return None
        self.log.info("re-attached to Armada job %s (%s) of an earlier try", job_id, state.name)
        return job_id

    def _defer(self, job_set_id: str, job_id: str) -> None:
        # The trigger runs in another process: it gets addresses, not clients.
        endpoints = self._endpoints(("jobservice_url",))
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
                armada_url=endpoints.armada_url,
            ),
            method_name="execute_complete",
        )

    def _wait(self, context: Any, job_set_id: str, job_id: str) -> str:
        last: list[JobState] = []

        def log_change(status: JobStatus) -> None:
            if not last or last[-1] is not status.state:
                self.log.info("Armada job %s: %s", job_id, status.state)
                last.append(status.state)

        with self._jobservice() as client:
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
            except JobNotFoundTimeout as exc:
                return self._finish(context, job_set_id, job_id, UNACKNOWLEDGED, str(exc))
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
        message = f"Armada job {job_id} {state}" + (f": {error}" if error else "")
        if state in (TIMED_OUT, ERROR, UNACKNOWLEDGED):
            # The task is about to fail; a job left running would hold cluster
            # resources for a result nobody will collect.
            self._cancel(job_set_id, job_id)
        elif self._retry_would_reattach(job_id):
            # A retry would find this same ended job and wait for it again.
            raise AirflowFailException(message + " (not retried: the re-attach policy keeps it)")
        raise AirflowException(message)

    def _retry_would_reattach(self, job_id: str) -> bool:
        policy = reattach.resolve_policy(self.reattach_policy)
        if policy is reattach.never or not self.retries:
            return False
        try:
            with self._armada() as client:
                state, reason = _armada.query_state(client, job_id)
        except Exception as exc:  # then let Airflow's retries decide
            self.log.warning("could not read Armada job %s's state: %s", job_id, exc)
            return False
        return bool(policy(state, reason))

    def _cancel(self, job_set_id: str, job_id: str) -> None:
        try:
            with self._armada() as client:
                _armada.cancel(
                    client, queue=self.armada_queue, job_set_id=job_set_id, job_id=job_id
                )
            self.log.info("cancelled Armada job %s", job_id)
        except Exception as exc:  # cancelling is best effort on the way out
            self.log.warning("could not cancel Armada job %s: %s", job_id, exc)

    def on_kill(self) -> None:
        """Cancel the Armada job when Airflow kills the task."""
        if self._submitted is not None:
            job_set_id, job_id = self._submitted
            self._cancel(job_set_id, job_id)
