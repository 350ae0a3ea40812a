"""The job service as one object: wires settings, store, upstream, cache and gRPC server.

``async with JobServiceApp(settings) as app`` starts everything (gRPC on
``app.grpc_port``) and, on exit, stops accepting calls, finishes those in
flight, closes the event streams, writes a final flush and closes the
database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from armada_jobservice._gen import jobservice_pb2
from armada_jobservice.server.armada_check import ArmadaAccessCheck
from armada_jobservice.server.auth import Access, make_access
from armada_jobservice.server.backfill_wiring import backfill_metrics, make_backfill
from armada_jobservice.server.changes import ChangeTracker
from armada_jobservice.server.config import Settings, flush_interval_of, redact_url
from armada_jobservice.server.errors import ConfigError, StoreError
from armada_jobservice.server.fleet.db import FleetDB
from armada_jobservice.server.fleet.replica import Fleet
from armada_jobservice.server.gc_policy import GcPolicy
from armada_jobservice.server.limits import IdentityLimits
from armada_jobservice.server.loader import JobSetLoader
from armada_jobservice.server.metrics import Metrics
from armada_jobservice.server.refusals import Refusals
from armada_jobservice.server.servicer import JobServiceServicer, add_to_server
from armada_jobservice.server.store import Store, open_store
from armada_jobservice.server.store.postgres import PostgresStore
from armada_jobservice.server.store.thread import AsyncStore
from armada_jobservice.server.streams import EventStreams
from armada_jobservice.server.subscriptions import SubscriptionManager
from armada_jobservice.server.tls import ServerTls
from armada_jobservice.server.upstream import Upstream
from armada_jobservice.server.watch import JobWatches
from armada_jobservice.server.writer import Writer

log = logging.getLogger(__name__)

SERVICE_NAME = jobservice_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
#: The ``grpc.health.v1`` service name a liveness probe asks: SERVING while the
#: process runs and its event loop answers, whatever the database does (a
#: restart cannot mend a database outage); NOT_SERVING once shutdown begins.
LIVENESS_SERVICE = "liveness"
HEALTH_POLL_S = 1.0
#: Period of the timer whose lateness measures the event loop's stalls.
LAG_PROBE_S = 0.05
#: A stall at least this long is also logged.
LAG_WARN_S = 1.0


class JobServiceApp:
    """A running job service; ``start()`` / idempotent ``stop()`` or ``async with``."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        shutdown_grace_s: float = 5.0,
        gc_policy: GcPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.store = AsyncStore(store if store is not None else open_store(settings.database))
        self.upstream = Upstream(settings)
        self.changes = ChangeTracker()
        self.loader = JobSetLoader(self.store)
        streams = EventStreams(
            self.upstream,
            self.loader,
            self.changes,
            self.metrics,
            reconnect_max_backoff_s=settings.reconnect_max_backoff_s,
        )
        #: With PostgreSQL, this process is one replica of a fleet (``server/fleet/``).
        self.fleet = self._make_fleet(streams)
        #: Answers from Armada's query API for jobs whose events are gone (``backfill``).
        self.backfill = make_backfill(settings, self.upstream, self.changes, self.fleet)
        streams.watcher = self.backfill
        self.subscriptions = SubscriptionManager(
            streams,
            self.loader,
            max_subscriptions=settings.max_subscriptions,
            subscription_expiry_s=settings.subscription_expiry_s,
            fleet=self.fleet,
        )
        if self.fleet is not None:
            self.fleet.bind(self.subscriptions)
        self.backfill.job_sets = self.subscriptions.job_sets
        backfill_metrics(self.metrics, self.backfill)
        self.writer = Writer(
            self.subscriptions,
            self.changes,
            self.store,
            self.metrics,
            flush_interval_s=flush_interval_of(settings),
            job_set_retention_s=settings.job_set_retention_s,
            fleet=self.fleet,
        )
        #: Refused calls by reason (``armada_jobservice_refused_calls``).
        self.refusals = Refusals()
        self.metrics.refusals = self.refusals.counts
        #: With ``access_check: armada``, Armada's verdicts on callers' tokens.
        self.armada_check = (
            ArmadaAccessCheck(settings) if settings.access_check == "armada" else None
        )
        self.limits = IdentityLimits(
            max_subscriptions=settings.max_subscriptions_per_identity,
            per_minute=settings.new_subscriptions_per_identity_per_minute,
            burst=settings.new_subscriptions_per_identity_burst,
        )
        self.access: Access | None = None
        #: The API's TLS (None: plain text); it follows the client CA bundle.
        self.tls: ServerTls | None = None
        self.shutdown_grace_s = shutdown_grace_s
        #: Freezes long-lived objects so collector pauses stay short; the
        #: serve command installs one (it changes process-wide state).
        self.gc_policy = gc_policy
        self.grpc_port = 0
        self.metrics_port: int | None = None
        self._watches: JobWatches | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics_server: Any = None
        self._running = False
        self._stopped = False
        self.metrics.gauge(
            "subscriptions_active",
            "Job sets with an open event stream.",
            lambda: self.subscriptions.active,
        )
        self.metrics.gauge(
            "cached_job_sets", "Job sets held in memory.", lambda: len(self.subscriptions)
        )
        self.metrics.counter(
            "events_received",
            "Events read from Armada's streams.",
            lambda: self.changes.events_seen,
        )
        self.metrics.gauge("cached_jobs", "Jobs held in memory.", self.subscriptions.cached_jobs)
        if self.fleet is not None:
            fleet = self.fleet
            self.metrics.gauge(
                "fleet_owned_job_sets",
                "Job sets whose lease this replica holds (it reads their events).",
                lambda: len(fleet.owned),
            )
            self.metrics.counter(
                "fleet_claims_won",
                "Leases this replica won (first polls and takeovers).",
                lambda: fleet.claims_won,
            )
            self.metrics.counter(
                "fleet_leases_lost",
                "Leases this replica lost (not renewed in time, or held by another replica).",
                lambda: fleet.leases_lost,
            )

    def _make_fleet(self, streams: EventStreams) -> Fleet | None:
        store = self.store.store
        if not isinstance(store, PostgresStore):
            return None
        name = self.settings.replica_name or f"{socket.gethostname()}-{os.getpid()}"
        store.owner = name
        settings = self.settings
        return Fleet(
            FleetDB(store.url, name),
            streams,
            self.store,
            lease_ttl_s=settings.lease_ttl_s,
            max_owned=settings.max_subscriptions,
            polled_within_s=settings.subscription_expiry_s,
        )

    def is_serving(self) -> bool:
        """Whether the service runs and its database answered the last time it was asked."""
        return self._running and self.writer.store_ok

    async def start(self) -> None:
        """Open the database, start the gRPC server, the writer and the metrics endpoint."""
        try:
            await self.store.open()
        except StoreError as exc:
            raise ConfigError("database", str(exc)) from exc
        try:
            await self._start_serving()
        except BaseException:
            await self.stop()
            raise

    async def _start_serving(self) -> None:
        # The first Armada token before listening: a refusal stops start-up.
        await self.upstream.start()
        access = make_access(self.settings, self.refusals, self.armada_check)
        #: Who may ask about what (None: anyone, about anything).
        self.access = access
        if access is None and self.settings.grpc_host not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "no client authentication (client_tokens_file, grpc_tls_client_ca_file): "
                "anyone who reaches port %s can make this service watch job sets with its "
                "Armada identity",
                self.settings.grpc_port,
            )
        options = [
            # A second service on the same port must fail, not share it.
            ("grpc.so_reuseport", 0),
            # Calls gRPC core holds until the event loop takes them: a burst of
            # Airflow polls queues (gRPC's default of 1,000 would refuse it); a
            # flood beyond the setting is refused at once (CANCELLED), before its
            # wait grows past the callers' deadlines. Soft = hard: no random drops.
            ("grpc.server.max_pending_requests", self.settings.max_queued_calls),
            ("grpc.server.max_pending_requests_hard_limit", self.settings.max_queued_calls),
        ]
        # Beyond this many calls in progress, gRPC answers RESOURCE_EXHAUSTED
        # before any handler runs: a flood is shed at once, not queued until
        # every caller's deadline passes, and the memory it holds is bounded.
        server = grpc.aio.server(
            options=options, maximum_concurrent_rpcs=self.settings.max_concurrent_calls
        )
        servicer = JobServiceServicer(
            self.subscriptions,
            self.loader,
            self.metrics,
            self.is_serving,
            self.settings.connection_error_grace_s,
            access=access,
            limits=self.limits,
            refusals=self.refusals,
            backfill=self.backfill,
        )
        add_to_server(servicer, server)
        self._watches = servicer.watches
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        try:
            if self.settings.grpc_tls_cert_file is None:
                self.grpc_port = server.add_insecure_port(address)
            else:
                self.tls = ServerTls(self.settings)
                self.grpc_port = server.add_secure_port(address, self.tls.credentials())
        except RuntimeError as exc:
            raise ConfigError("grpc_port", f"cannot listen on {address}: {exc}") from exc
        await server.start()
        self._server = server
        if self.settings.metrics_port is not None:
            try:
                self._metrics_server = self.metrics.serve(
                    self.settings.metrics_host, self.settings.metrics_port
                )
            except OSError as exc:
                raise ConfigError("metrics_port", f"cannot listen: {exc}") from exc
            self.metrics_port = self._metrics_server.server_port
        if self.fleet is not None:
            try:
                await self.fleet.start()
            except StoreError as exc:
                raise ConfigError("database", str(exc)) from exc
        self._running = True
        await self.writer.check_store()
        await self._publish_health()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.writer.run(), name="writer"),
            loop.create_task(self._health_loop(), name="health"),
            loop.create_task(self._lag_loop(), name="event loop lag"),
        ]
        if self.backfill.enabled:
            self._tasks.append(loop.create_task(self.backfill.run(), name="backfill"))
        log.info(
            "job service listening on %s:%d, Armada at %s, database %s",
            self.settings.grpc_host,
            self.grpc_port,
            self.settings.armada_url,
            redact_url(self.settings.database),
        )

    async def _publish_health(self) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.is_serving()
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.metrics.healthy.set(1 if status == health_pb2.HealthCheckResponse.SERVING else 0)
        for name in ("", SERVICE_NAME):
            await self._health.set(name, status)
        alive = (
            health_pb2.HealthCheckResponse.SERVING
            if self._running
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._health.set(LIVENESS_SERVICE, alive)

    async def _health_loop(self) -> None:
        # Also the garbage-collector policy's clock: both want a tick a second.
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(HEALTH_POLL_S)
            await self._publish_health()
            self.limits.forget_idle(time.monotonic())
            if self.gc_policy is not None:
                self.gc_policy.step(loop.time())

    async def _lag_loop(self) -> None:
        """Observe how late a short timer fires: the event loop's stalls, as polls feel them."""
        loop = asyncio.get_running_loop()
        observe = self.metrics.loop_lag.observe
        while True:
            due = loop.time() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            lag = max(0.0, loop.time() - due)
            observe(lag)
            if lag >= LAG_WARN_S:
                log.warning("the event loop stalled for %.1f s; polls waited as long", lag)

    async def stop(self) -> None:
        """Shut down gracefully and write everything cached; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._running = False
        if self._watches is not None:
            # Watches never end by themselves: the grace would always run out.
            self._watches.close()
        if self._server is not None:
            await self._publish_health()
            # Stop accepting, let calls in flight finish within the grace.
            await self._server.stop(self.shutdown_grace_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.fleet is not None:
            await self.fleet.stop_loops()
        await self.subscriptions.close()
        try:
            written = await self.writer.flush_once()
            log.info("final flush wrote %d jobs", written)
        except StoreError as exc:
            log.error("final flush failed: %s", exc)
        if self.fleet is not None:
            # After the final flush: whoever takes these over resumes where it ended.
            await self.fleet.release_all()
            await self.fleet.close()
        await self.store.close()
        await self.upstream.close()
        if self.armada_check is not None:
            await self.armada_check.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        log.info("job service stopped")

    async def __aenter__(self) -> JobServiceApp:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
