"""The few Airflow names this package needs, from where Airflow 3 or Airflow 2 keeps them."""

from __future__ import annotations

from airflow.configuration import conf
from airflow.exceptions import AirflowException, AirflowNotFoundException
from airflow.plugins_manager import AirflowPlugin
from airflow.triggers.base import BaseTrigger, TriggerEvent

try:  # Airflow 3: the task SDK is the public authoring interface.
    from airflow.sdk import BaseHook, BaseOperator, BaseOperatorLink
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 2.x
    from airflow.exceptions import AirflowFailException
    from airflow.hooks.base import BaseHook
    from airflow.models import BaseOperator, BaseOperatorLink

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowPlugin",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseTrigger",
    "TriggerEvent",
    "default_deferrable",
]


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable`` (False when unset), read at task creation."""
    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))
