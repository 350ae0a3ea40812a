"""Airflow integration: ``ArmadaJobServiceOperator``, its trigger and its hook.

Needs ``pip install 'armada-jobservice[airflow]'``; importing this package
imports Airflow (the main ``armada_jobservice`` package never does).
"""

from __future__ import annotations

from armada_jobservice.airflow._armada import import_armada_client
from armada_jobservice.airflow.hook import DEFAULT_CONN_ID, ArmadaJobServiceHook, Endpoints
from armada_jobservice.airflow.links import ArmadaJobServicePlugin, LookoutLink
from armada_jobservice.airflow.operator import ArmadaJobServiceOperator
from armada_jobservice.airflow.trigger import ArmadaJobServiceTrigger

__all__ = [
    "DEFAULT_CONN_ID",
    "ArmadaJobServiceHook",
    "ArmadaJobServiceOperator",
    "ArmadaJobServicePlugin",
    "ArmadaJobServiceTrigger",
    "Endpoints",
    "LookoutLink",
    "import_armada_client",
]
