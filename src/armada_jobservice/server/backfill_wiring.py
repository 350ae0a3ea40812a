"""How the app builds backfill from the settings and exports its counts as metrics.

Kept apart from ``app`` so that the app gains two lines, not a block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from armada_jobservice.server.backfill import Backfill
from armada_jobservice.server.changes import ChangeTracker
from armada_jobservice.server.config import Settings
from armada_jobservice.server.metrics import Metrics
from armada_jobservice.server.upstream import Upstream

if TYPE_CHECKING:
    from armada_jobservice.server.fleet.replica import Fleet


def make_backfill(
    settings: Settings, upstream: Upstream, changes: ChangeTracker, fleet: Fleet | None
) -> Backfill:
    """The backfill the settings describe (``enabled`` is False with 0 queries a second)."""
    return Backfill(
        upstream,
        changes,
        queries_per_s=settings.backfill_queries_per_s,
        batch_size=settings.backfill_batch_size,
        max_pending=settings.backfill_max_pending,
        quiet_s=settings.backfill_quiet_s,
        not_found_s=settings.backfill_not_found_s,
        fleet=fleet,
    )


def backfill_metrics(metrics: Metrics, backfill: Backfill) -> None:
    """Export backfill's counts: calls made, jobs answered, not found, not queued, failures."""
    metrics.counter(
        "backfill_queries",
        "Calls of Armada's query API (GetJobDetails, GetJobErrors) about jobs the event "
        "stream did not name.",
        lambda: backfill.queries,
    )
    metrics.counter(
        "backfill_jobs_answered",
        "Jobs whose state came from Armada's query API (their events were gone).",
        lambda: backfill.answered,
    )
    metrics.counter(
        "backfill_jobs_not_found",
        "Jobs asked about that Armada's query API does not know in the polled job set.",
        lambda: backfill.not_found,
    )
    metrics.counter(
        "backfill_jobs_not_queued",
        "Polls of unknown jobs not queued because backfill_max_pending jobs were waiting.",
        lambda: backfill.dropped,
    )
    metrics.counter(
        "backfill_failures",
        "Calls of Armada's query API that failed (any reason).",
        lambda: sum(backfill.failures.values()),
    )
    metrics.gauge("backfill_pending", "Jobs waiting to be asked about.", lambda: backfill.pending)
