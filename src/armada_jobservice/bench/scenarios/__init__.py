"""The bench's scenarios, one module each; every ``run(bench)`` adds its figures.

Scenario 2 (first polls) runs inside scenario 1, on the same service
process; the per-job memory figure of scenario 4 is measured in scenario 5,
which holds a million jobs. What each one measures and against what:
``docs/benchmarks.md``.
"""

from __future__ import annotations

from collections.abc import Callable

from armada_jobservice.bench.harness import Bench
from armada_jobservice.bench.scenarios import (
    batch_watch,
    cache_hits,
    fleet,
    ingestion,
    old_way,
    overload,
    restart,
    subscription_scale,
)

#: The scenarios ``bench --only`` selects from, by number, in the order they run.
SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "1": cache_hits.run,  # runs 2 on the same service process
    "3": ingestion.run,
    "4": subscription_scale.run,
    "5": restart.run,
    "6": old_way.run,
    "7": fleet.run,  # needs PostgreSQL (bench --postgres)
    "8": batch_watch.run,
    "9": overload.run,
}
