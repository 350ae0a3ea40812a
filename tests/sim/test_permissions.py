"""The simulator's per-caller permissions (``armada-sim --permissions-file``)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from armada_client.armada import event_pb2, event_pb2_grpc, submit_pb2, submit_pb2_grpc
from google.protobuf import empty_pb2

from armada_jobservice.cli import build_parser
from armada_jobservice.cli.sim import build


def _args(path: Path) -> list[str]:
    return ["armada-sim", "--port", "0", "--queue", "a", "--queue", "b",
            "--permissions-file", str(path)]  # fmt: skip


async def test_tokens_and_queues_are_checked_like_armada(tmp_path: Path) -> None:
    """An unknown token is UNAUTHENTICATED on any call; another's queue is PERMISSION_DENIED."""
    permissions = tmp_path / "permissions"
    permissions.write_text("# who may do what\nalice a\nroot *\n")
    sim = build(build_parser().parse_args(_args(permissions)))

    async def events(token: str | None, queue: str) -> grpc.StatusCode:
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        request = event_pb2.JobSetRequest(id="s", queue=queue, watch=False)
        try:
            async for _ in stub.GetJobSetEvents(request, metadata=metadata, timeout=10):
                pass
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    async with sim, grpc.aio.insecure_channel(sim.address) as channel:
        stub = event_pb2_grpc.EventStub(channel)  # type: ignore[no-untyped-call]
        assert await events("alice", "a") == grpc.StatusCode.OK
        assert await events("alice", "b") == grpc.StatusCode.PERMISSION_DENIED
        assert await events("root", "b") == grpc.StatusCode.OK
        assert await events("mallory", "a") == grpc.StatusCode.UNAUTHENTICATED
        assert await events(None, "a") == grpc.StatusCode.UNAUTHENTICATED
        submit = submit_pb2_grpc.SubmitStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await submit.Health(empty_pb2.Empty(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        request = submit_pb2.JobSubmitRequest(queue="b", job_set_id="s")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await submit.SubmitJobs(request, metadata=(("authorization", "Bearer alice"),))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_malformed_permissions_file_names_its_line(tmp_path: Path) -> None:
    """A bad line is a usage error naming the file and the line."""
    permissions = tmp_path / "permissions"
    permissions.write_text("alice a\nbob a b c\n")
    with pytest.raises(ValueError, match=r"permissions, line 2"):
        build(build_parser().parse_args(_args(permissions)))
