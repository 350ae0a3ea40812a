"""A local Armada-compatible server for tests, demos and benchmarks.

``ArmadaSimulator`` speaks Armada's gRPC API (``api.Submit``,
``api.QueueService``, ``api.Event``, ``api.Jobs``) on one port, runs jobs
through a scriptable lifecycle and injects faults on request. See
``docs/simulator.md``.
"""

from armada_jobservice._scopes import TokenScopes
from armada_jobservice._scopes import parse_token_scopes as parse_permissions
from armada_jobservice.sim.events import build_event, failure_fields
from armada_jobservice.sim.faults import Faults, StreamRule
from armada_jobservice.sim.lifecycle import JobPhase, JobPlan, Mix, Outcome, PlanError
from armada_jobservice.sim.simulator import (
    ArmadaSimulator,
    SimulatorError,
    StreamHandle,
    StreamRequest,
)

__all__ = [
    "ArmadaSimulator",
    "Faults",
    "JobPhase",
    "JobPlan",
    "Mix",
    "Outcome",
    "PlanError",
    "SimulatorError",
    "StreamHandle",
    "StreamRequest",
    "StreamRule",
    "TokenScopes",
    "build_event",
    "failure_fields",
    "parse_permissions",
]
