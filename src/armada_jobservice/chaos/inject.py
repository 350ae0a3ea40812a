"""Making each kind of fault happen, and undoing it.

``Injector.inject(fault)`` makes the fault, holds it for ``fault.hold_s`` and
undoes it; what it did goes into the returned log entry. Faults that stop a
process snapshot the database as the process left it, for the checker's
"never older than what was flushed" rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import grpc

from armada_jobservice.chaos.databases import DbProxy, SmallDisk, read_snapshot, restart_postgresql
from armada_jobservice.chaos.plan import Fault
from armada_jobservice.chaos.processes import Replica
from armada_jobservice.chaos.truth import Checker
from armada_jobservice.chaos.workload import QUEUES
from armada_jobservice.sim import ArmadaSimulator

#: How long a stopped process stays down at most (the rest of the hold it runs again).
MAX_DOWN_S = 2.0


class Injector:
    """Injects faults into the simulator, the service processes and the database."""

    def __init__(
        self,
        sim: ArmadaSimulator,
        replicas: Sequence[Replica],
        checker: Checker,
        database: str,
        *,
        proxy: DbProxy | None = None,
        disk: SmallDisk | None = None,
    ) -> None:
        """Fault *sim* and *replicas*; *database* is read directly for snapshots."""
        self.sim = sim
        self.replicas = replicas
        self.checker = checker
        self.database = database
        self.proxy = proxy
        self.disk = disk

    async def inject(self, fault: Fault, at_s: float) -> dict[str, Any]:
        """Make *fault*, hold it, undo it; return its log entry."""
        entry: dict[str, Any] = {
            "number": fault.number,
            "kind": fault.kind.value,
            "at_s": round(at_s, 2),
            "hold_s": fault.hold_s,
            "replica": None,
        }
        handler = getattr(self, f"_{fault.kind.value}")
        await handler(fault, entry)
        return entry

    async def _snapshot_after_stop(self, replica: Replica, lost: bool) -> None:
        snapshot = await asyncio.to_thread(read_snapshot, self.database)
        self.checker.crashed(replica.index, replica.incarnation + 1, snapshot, lost)

    async def _restart(self, fault: Fault, replica: Replica) -> None:
        await asyncio.sleep(min(fault.hold_s, MAX_DOWN_S))
        await replica.start()

    async def _kill_9(self, fault: Fault, entry: dict[str, Any]) -> None:
        replica = self.replicas[fault.replica]
        entry["replica"] = replica.index
        await replica.kill()
        await self._snapshot_after_stop(replica, lost=True)
        await self._restart(fault, replica)

    async def _sigterm(self, fault: Fault, entry: dict[str, Any]) -> None:
        replica = self.replicas[fault.replica]
        entry["replica"] = replica.index
        started = time.monotonic()
        entry["exit_code"] = await replica.terminate()
        entry["stop_s"] = round(time.monotonic() - started, 2)
        await self._snapshot_after_stop(replica, lost=False)
        await self._restart(fault, replica)

    async def _stream_break(self, fault: Fault, entry: dict[str, Any]) -> None:
        entry["broken"] = self.sim.break_streams(grpc.StatusCode.UNAVAILABLE)
        # Streams reopened while the fault holds break too, after a few events.
        rule = self.sim.faults.break_streams_after(fault.detail % 5, grpc.StatusCode.INTERNAL)
        await asyncio.sleep(fault.hold_s)
        with contextlib.suppress(ValueError):
            self.sim.faults.stream_rules.remove(rule)

    async def _stream_end(self, fault: Fault, entry: dict[str, Any]) -> None:
        rule = self.sim.faults.end_streams_after(fault.detail % 5)
        entry["after_events"] = fault.detail % 5
        await asyncio.sleep(fault.hold_s)
        with contextlib.suppress(ValueError):
            self.sim.faults.stream_rules.remove(rule)

    async def _stream_stall(self, fault: Fault, entry: dict[str, Any]) -> None:
        self.sim.faults.hold_streams()
        await asyncio.sleep(fault.hold_s)
        self.sim.faults.release_streams()

    async def _slow_streams(self, fault: Fault, entry: dict[str, Any]) -> None:
        delay_s = fault.detail / 100
        entry["delay_s"] = delay_s
        self.sim.faults.slow_streams(delay_s)
        await asyncio.sleep(fault.hold_s)
        self.sim.faults.slow_streams(0.0)

    async def _armada_outage(self, fault: Fault, entry: dict[str, Any]) -> None:
        self.sim.faults.unavailable_for(fault.hold_s)
        await asyncio.sleep(fault.hold_s)
        self.sim.faults.available()

    async def _armada_refusal(self, fault: Fault, entry: dict[str, Any]) -> None:
        queue = QUEUES[fault.detail % len(QUEUES)]
        entry["queue"] = queue
        self.sim.faults.deny_queue(queue)
        await asyncio.sleep(fault.hold_s)
        self.sim.faults.allow_queue(queue)

    async def _disk_full(self, fault: Fault, entry: dict[str, Any]) -> None:
        assert self.disk is not None
        await asyncio.to_thread(self.disk.fill)
        await asyncio.sleep(fault.hold_s)
        await asyncio.to_thread(self.disk.free)

    async def _pg_restart(self, fault: Fault, entry: dict[str, Any]) -> None:
        started = time.monotonic()
        await asyncio.to_thread(restart_postgresql)
        entry["restart_s"] = round(time.monotonic() - started, 2)

    async def _db_cut(self, fault: Fault, entry: dict[str, Any]) -> None:
        assert self.proxy is not None
        entry["replica"] = 0
        self.proxy.cut()
        await asyncio.sleep(fault.hold_s)
        self.proxy.heal()

    async def _slow_db(self, fault: Fault, entry: dict[str, Any]) -> None:
        assert self.proxy is not None
        entry["replica"] = 0
        entry["delay_s"] = self.proxy.delay_s = fault.detail / 200
        await asyncio.sleep(fault.hold_s)
        self.proxy.delay_s = 0.0
