"""The trigger of the deferrable mode: waits for the job in the triggerer (asyncio client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from armada_jobservice._exceptions import JobNotFoundTimeout, JobServiceError, WaitTimeout
from armada_jobservice._wait import (
    DEFAULT_CONNECTION_ERROR_TIMEOUT_S,
    DEFAULT_NOT_FOUND_TIMEOUT_S,
    DEFAULT_POLL_INTERVAL_S,
)
from armada_jobservice.airflow._compat import BaseTrigger, TriggerEvent
from armada_jobservice.airflow._shared import shared_client

TIMED_OUT = "TIMED_OUT"
"""Event state when the wait gave up (a ``WaitTimeout``)."""
ERROR = "ERROR"
"""Event state when the job service could not be asked."""
UNACKNOWLEDGED = "UNACKNOWLEDGED"
"""Event state when the job stayed unknown for the not-found (acknowledgement) timeout."""


class ArmadaJobServiceTrigger(BaseTrigger):  # type: ignore[misc]
    """Wait for one job through the job service, then fire one event with its final state.

    It waits with ``AsyncJobServiceClient.wait_for_job``, so it gets whatever
    that does: polling today, the job service's watch once the client watches.
    The triggers of one triggerer share one client per job service.
    """

    def __init__(
        self,
        *,
        queue: str,
        job_set_id: str,
        job_id: str,
        jobservice_url: str,
        tls: bool = False,
        conn_id: str | None = None,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        not_found_timeout_s: float = DEFAULT_NOT_FOUND_TIMEOUT_S,
        connection_error_timeout_s: float = DEFAULT_CONNECTION_ERROR_TIMEOUT_S,
        wait_timeout_s: float | None = None,
        armada_url: str = "",
    ) -> None:
        super().__init__()
        self.queue = queue
        self.job_set_id = job_set_id
        self.job_id = job_id
        self.jobservice_url = jobservice_url
        self.tls = tls
        # The token is never serialized into the trigger row; it is read again
        # from the connection when the trigger runs.
        self.conn_id = conn_id
        self.poll_interval_s = poll_interval_s
        self.not_found_timeout_s = not_found_timeout_s
        self.connection_error_timeout_s = connection_error_timeout_s
        self.wait_timeout_s = wait_timeout_s
        # Only for cancelling the job when a user kills the deferred task.
        self.armada_url = armada_url

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Name the class and the arguments that rebuild this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "queue": self.queue,
                "job_set_id": self.job_set_id,
                "job_id": self.job_id,
                "jobservice_url": self.jobservice_url,
                "tls": self.tls,
                "conn_id": self.conn_id,
                "poll_interval_s": self.poll_interval_s,
                "not_found_timeout_s": self.not_found_timeout_s,
                "connection_error_timeout_s": self.connection_error_timeout_s,
                "wait_timeout_s": self.wait_timeout_s,
                "armada_url": self.armada_url,
            },
        )

    def _token(self) -> str | None:
        if not self.conn_id:
            return None
        from armada_jobservice.airflow.hook import ArmadaJobServiceHook

        try:
            return ArmadaJobServiceHook(self.conn_id).get_connection(self.conn_id).password or None
        except Exception:  # no such connection means no token
            return None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait for the job and yield one event: its terminal state, or why the wait ended."""
        token = self._token()
        payload: dict[str, Any] = {
            "queue": self.queue,
            "job_set_id": self.job_set_id,
            "job_id": self.job_id,
        }
        async with shared_client(self.jobservice_url, tls=self.tls, token=token) as client:
            try:
                status = await client.wait_for_job(
                    self.queue,
                    self.job_set_id,
                    self.job_id,
                    poll_interval_s=self.poll_interval_s,
                    not_found_timeout_s=self.not_found_timeout_s,
                    connection_error_timeout_s=self.connection_error_timeout_s,
                    timeout_s=self.wait_timeout_s,
                )
            except JobNotFoundTimeout as exc:
                payload.update(state=UNACKNOWLEDGED, error=str(exc))
            except WaitTimeout as exc:
                payload.update(state=TIMED_OUT, error=str(exc))
            except JobServiceError as exc:
                payload.update(state=ERROR, error=str(exc))
            else:
                payload.update(state=status.state.value, error=status.error)
        yield TriggerEvent(payload)

    async def on_kill(self) -> None:
        """Cancel the Armada job when a user kills the deferred task (Airflow 3.3 calls this).

        Not called when the triggerer restarts or hands the trigger to another
        triggerer: the job then carries on and the trigger resumes its wait.
        """
        from armada_jobservice.airflow import _armada
        from armada_jobservice.airflow.hook import Endpoints

        if not self.armada_url:
            self.log.warning("no Armada address to cancel job %s with", self.job_id)
            return
        endpoints = Endpoints(
            self.armada_url, self.jobservice_url, tls=self.tls, token=self._token()
        )

        def cancel() -> None:
            with endpoints.armada_channel() as channel:
                client = _armada.armada_client(channel)
                _armada.cancel(
                    client, queue=self.queue, job_set_id=self.job_set_id, job_id=self.job_id
                )

        # armada-client is blocking; the triggerer's loop must not be.
        await asyncio.to_thread(cancel)
        self.log.info("cancelled Armada job %s", self.job_id)
