"""Fault runs with a truth checker: ``armada-jobservice chaos`` (see ``docs/reliability.md``).

The simulator plays Armada with a realistic mix, the service runs as real
processes on a real database, pollers ask about every kind of job, seeded
faults hit every part, and every answer is judged against the simulator's
record of each job.
"""

from armada_jobservice.chaos.plan import Fault, FaultKind, make_plan
from armada_jobservice.chaos.report import Report
from armada_jobservice.chaos.runner import ChaosConfig, ChaosRun
from armada_jobservice.chaos.truth import Checker, Rule, Truth, Violation

__all__ = [
    "ChaosConfig",
    "ChaosRun",
    "Checker",
    "Fault",
    "FaultKind",
    "Report",
    "Rule",
    "Truth",
    "Violation",
    "make_plan",
]
