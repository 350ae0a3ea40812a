"""Prometheus metrics of one service instance, served on ``/metrics``.

The per-poll and per-event counts are plain integers bumped on the hot path
and turned into metric families only when Prometheus scrapes: a lock-taking
``Counter.inc()`` per poll would cost more than the cache lookup it counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from armada_jobservice._wire import WireState

PREFIX = "armada_jobservice"


class Metrics:
    """Every metric the service exports, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.polls_by_state = [0] * len(WireState)
        self.events_applied = 0
        self.reconnects: dict[str, int] = {}
        self.flush_failures = 0
        #: Refused calls by reason; the owner (``Refusals``) hands in its dict.
        self.refusals: dict[Any, int] = {}
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self._counters: dict[str, tuple[str, Callable[[], float]]] = {}
        self.flush_jobs = Histogram(
            f"{PREFIX}_flush_batch_jobs",
            "Job rows written per flush.",
            buckets=(0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000),
            registry=self.registry,
        )
        self.flush_seconds = Histogram(
            f"{PREFIX}_flush_duration_seconds",
            "Time one flush took, from snapshot to commit.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10),
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            f"{PREFIX}_event_loop_lag_seconds",
            "How late a 50 ms timer on the event loop fired: time the loop spent "
            "on other work without yielding (garbage collection, a burst of events).",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.healthy = Gauge(
            f"{PREFIX}_serving", "1 while the service reports SERVING.", registry=self.registry
        )
        self.registry.register(_HotPathCollector(self))

    def gauge(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        """Export ``fn()`` as the gauge ``armada_jobservice_<name>`` at each scrape."""
        self._gauges[name] = (help_text, fn)

    def counter(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        """Export ``fn()`` as the counter ``armada_jobservice_<name>`` at each scrape.

        For counts kept by the part that does the counting (it may act on them).
        """
        self._counters[name] = (help_text, fn)

    def count_reconnect(self, reason: str) -> None:
        """Count one re-opened event stream, by what ended the previous one."""
        self.reconnects[reason] = self.reconnects.get(reason, 0) + 1

    def serve(self, host: str, port: int) -> Any:
        """Start the HTTP endpoint; return the server (``.server_port``, ``.shutdown()``)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server


class _HotPathCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        m = self._m
        polls = CounterMetricFamily(
            f"{PREFIX}_polls", "GetJobStatus calls answered, by answered state.", labels=["state"]
        )
        for state in WireState:
            polls.add_metric([state.name], m.polls_by_state[state])
        yield polls
        for name, (help_text, fn) in m._counters.items():
            yield CounterMetricFamily(f"{PREFIX}_{name}", help_text, value=fn())
        yield CounterMetricFamily(
            f"{PREFIX}_events_applied",
            "Events that changed a cached job.",
            value=m.events_applied,
        )
        reconnects = CounterMetricFamily(
            f"{PREFIX}_stream_reconnects",
            "Event streams re-opened, by what ended them.",
            labels=["reason"],
        )
        for reason, n in sorted(m.reconnects.items()):
            reconnects.add_metric([reason], n)
        yield reconnects
        refused = CounterMetricFamily(
            f"{PREFIX}_refused_calls",
            "GetJobStatus calls refused because of the caller: unknown credentials, a queue "
            "outside its scope, Armada's refusal, its per-identity limits.",
            labels=["reason"],
        )
        for reason, n in m.refusals.items():
            refused.add_metric([str(reason)], n)
        yield refused
        yield CounterMetricFamily(
            f"{PREFIX}_flush_failures", "Flushes the database refused.", value=m.flush_failures
        )
        for name, (help_text, fn) in m._gauges.items():
            yield GaugeMetricFamily(f"{PREFIX}_{name}", help_text, value=fn())
