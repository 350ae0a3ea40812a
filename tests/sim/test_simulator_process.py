"""The simulator's own lifecycle, in-process and as the ``armada-sim`` command."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import grpc
import pytest
from armada_client.asyncio_client import ArmadaAsyncIOClient

from armada_jobservice.cli import build_parser
from armada_jobservice.cli.sim import build
from armada_jobservice.sim import ArmadaSimulator, SimulatorError


async def test_start_stop_is_idempotent_and_port_0_picks_a_port() -> None:
    """port=0 binds a real port; stop() twice is fine; start() twice is an error."""
    sim = ArmadaSimulator(port=0)
    with pytest.raises(SimulatorError):
        _ = sim.port
    await sim.start()
    assert sim.port > 0
    with pytest.raises(SimulatorError):
        await sim.start()
    await sim.stop()
    await sim.stop()


async def test_a_taken_port_is_an_error() -> None:
    """Binding a port another simulator holds raises SimulatorError."""
    async with ArmadaSimulator() as first:
        with pytest.raises(SimulatorError):
            await ArmadaSimulator(port=first.port).start()


def test_flags_build_the_simulator() -> None:
    """Queue, mix and fault flags reach the simulator they build."""
    args = build_parser().parse_args(
        [
            "armada-sim",
            "--port",
            "0",
            "--queue",
            "a",
            "--queue",
            "b",
            "--seed",
            "3",
            "--fail-ratio",
            "0.5",
            "--run-seconds",
            "1:4",
            "--time-scale",
            "0.1",
            "--break-streams-after",
            "7",
            "--break-code",
            "internal",
            "--deny-queue",
            "b",
            "--stream-delay",
            "0.5",
        ]
    )
    sim = build(args)
    assert sim.queues == ["a", "b"]
    assert sim.engine.mix.fail_ratio == 0.5
    assert sim.engine.mix.run_s == (1.0, 4.0)
    assert sim.scheduler.time_scale == 0.1
    [rule] = sim.faults.stream_rules
    assert (rule.after_events, rule.code) == (7, grpc.StatusCode.INTERNAL)
    assert sim.faults.denied_queues == {"b"}
    assert sim.faults.stream_delay_s == 0.5


async def test_the_armada_sim_command_serves_until_sigterm() -> None:
    """``armada-jobservice armada-sim --port 0`` serves the API and exits 0 on SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "armada_jobservice.cli",
        "armada-sim",
        "--port",
        "0",
        "--queue",
        "demo",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        match = re.search(r"listening on (\S+);", line)
        assert match, line
        async with grpc.aio.insecure_channel(match.group(1)) as channel:
            client = ArmadaAsyncIOClient(channel)
            assert (await client.get_queue("demo")).name == "demo"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
