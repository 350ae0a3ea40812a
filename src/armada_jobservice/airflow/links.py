"""The Lookout link on an Armada task: an operator extra link read from XCom.

The operator renders its ``lookout_url_template`` once the job id is known
and pushes the URL to XCom under ``lookout_url``. Airflow 3 stores each extra
link in XCom under the link's ``xcom_key`` when the task ends (so the key is
the same one) and the UI reads it from there; Airflow 2's webserver calls
``get_link``, which reads the same XCom. The UI only shows links of classes a
plugin registers: ``ArmadaJobServicePlugin`` does, when it is on Airflow's
plugin path (see docs/airflow.md).
"""

from __future__ import annotations

from typing import Any

from armada_jobservice.airflow._compat import AirflowPlugin, BaseOperatorLink

LOOKOUT_XCOM_KEY = "lookout_url"
"""XCom key of the job's Lookout URL."""


def lookout_url(template: str | None, job_id: str) -> str | None:
    """The template with ``<job_id>`` replaced (armada-airflow's placeholder), or ``None``."""
    return template.replace("<job_id>", job_id) if template else None


class LookoutLink(BaseOperatorLink):  # type: ignore[misc]
    """The "Lookout" button of an Armada task: the URL its job's XCom holds."""

    name = "Lookout"

    @property
    def xcom_key(self) -> str:
        """The XCom key Airflow 3 stores and reads the link under: the operator's own."""
        return LOOKOUT_XCOM_KEY

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """The Lookout URL of the task instance's job, or "" before it was submitted."""
        if hasattr(ti_key, "xcom_pull"):
            # Airflow 3 calls this in the worker with the running task instance.
            value = ti_key.xcom_pull(task_ids=ti_key.task_id, key=LOOKOUT_XCOM_KEY)
        else:
            from airflow.models.xcom import XCom

            value = XCom.get_value(ti_key=ti_key, key=LOOKOUT_XCOM_KEY)
        return str(value or "")


class ArmadaJobServicePlugin(AirflowPlugin):  # type: ignore[misc]
    """Registers ``LookoutLink`` with Airflow's UI."""

    name = "armada_jobservice"
    operator_extra_links = [LookoutLink()]
