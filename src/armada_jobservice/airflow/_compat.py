"""The few Airflow names this package needs, from where Airflow 3 or Airflow 2 keeps them."""

from __future__ import annotations

from airflow.exceptions import AirflowException
from airflow.triggers.base import BaseTrigger, TriggerEvent

try:  # Airflow 3: the task SDK is the public authoring interface.
    from airflow.sdk import BaseHook, BaseOperator
except ImportError:  # Airflow 2.x
    from airflow.hooks.base import BaseHook
    from airflow.models import BaseOperator

__all__ = ["AirflowException", "BaseHook", "BaseOperator", "BaseTrigger", "TriggerEvent"]
