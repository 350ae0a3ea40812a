"""GetJobStatus with request fields of every kind, over a real socket to a real service.

Every call answers before its deadline: a job state, or INVALID_ARGUMENT
naming the field at fault. Valid ids are never refused, refused requests
open no stream to Armada, and the service stays healthy after the run.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from hypothesis import example, given, settings

from armada_jobservice import JobState, RPCError
from armada_jobservice._gen import jobservice_pb2

from .harness import Running, examples, wait_until
from .strategies import LIMIT, expected_problem, ids, raw_ids, raw_request

GOOD = ("good-queue", "good-set", "good-job")


@pytest.fixture(scope="module")
def servers(running: Running) -> Running:
    """The module's servers, with one job known to have succeeded."""
    running.call(running.armada.publish, GOOD[0], GOOD[1], "succeeded", GOOD[2])
    assert running.client is not None
    wait_until(lambda: running.client.get_job_status(*GOOD).state, JobState.SUCCEEDED.__eq__)
    return running


@pytest.fixture(scope="module")
def asked() -> set[tuple[str, str]]:
    """The (queue, job set) of every valid request the module's tests made."""
    return set()


def stream_keys(servers: Running) -> set[tuple[str, str]]:
    """The (queue, job set) of every stream the service opened to Armada."""
    return {(r.queue, r.id) for r in servers.call(list, servers.armada.requests)}


def assert_still_healthy(servers: Running, asked: set[tuple[str, str]]) -> None:
    """Health is SERVING, the known job answers its state, and only valid keys have streams."""
    client = servers.client
    assert client is not None
    assert client.health().name == "SERVING"
    assert client.get_job_status(*GOOD).state == JobState.SUCCEEDED
    wait_until(lambda: stream_keys(servers), lambda keys: asked <= keys)
    assert stream_keys(servers) <= asked | {GOOD[:2]}


def test_every_request_answers_a_state_or_names_the_field(
    servers: Running, asked: set[tuple[str, str]]
) -> None:
    """Unicode, NUL, blanks, exactly the length limit and one beyond: a state, or the field."""
    client = servers.client
    assert client is not None

    @settings(max_examples=examples(5))
    @given(queue=ids, job_set_id=ids, job_id=ids)
    @example(queue="q" * LIMIT, job_set_id="😀" * LIMIT, job_id="\U0010fffd" * LIMIT)
    @example(queue="q" * (LIMIT + 1), job_set_id="s", job_id="j")
    @example(queue="q", job_set_id="😀" * (LIMIT + 1), job_id="j")
    @example(queue="q", job_set_id="s", job_id="j" * (LIMIT + 1))
    @example(queue="q\x00", job_set_id="s", job_id="j")
    @example(queue=" ", job_set_id="\t", job_id="\u200b")
    @example(queue="", job_set_id="", job_id="")
    def check(queue: str, job_set_id: str, job_id: str) -> None:
        problem = expected_problem(queue, job_set_id, job_id)
        try:
            status = client.get_job_status(queue, job_set_id, job_id)
        except RPCError as exc:
            refused: RPCError | None = exc
        else:
            refused = None
        if refused is not None:
            assert problem is not None, f"valid ids refused: {refused}"
            assert refused.code == "INVALID_ARGUMENT", refused
            assert refused.details.startswith(problem + " "), refused
            return
        assert problem is None, f"{problem} should have been refused, got {status}"
        # Nothing was ever published for these: the job is simply not known yet.
        assert (status.state, status.error) == (JobState.JOB_ID_NOT_FOUND, "")
        asked.add((queue, job_set_id))

    check()
    assert_still_healthy(servers, asked)


def test_request_bytes_that_are_not_utf8_get_a_clean_status(
    servers: Running, asked: set[tuple[str, str]]
) -> None:
    """Hand-built requests, lone surrogates and stray bytes included: an answer, never a hang."""
    assert servers.app is not None
    channel = grpc.insecure_channel(f"127.0.0.1:{servers.app.grpc_port}")
    call = channel.unary_unary("/jobservice.JobService/GetJobStatus")

    @settings(max_examples=examples(5))
    @given(queue=raw_ids, job_set_id=raw_ids, job_id=raw_ids)
    @example(queue=b"q", job_set_id=b"\xed\xa0\x80", job_id=b"j")  # U+D800, a lone surrogate
    @example(queue=b"\xff", job_set_id=b"s", job_id=b"j")
    @example(queue=b"q", job_set_id=b"s", job_id=b"j")
    def check(queue: bytes, job_set_id: bytes, job_id: bytes) -> None:
        try:
            texts = [b.decode() for b in (queue, job_set_id, job_id)]
        except UnicodeDecodeError:
            texts = None
        try:
            answer = call(raw_request(queue, job_set_id, job_id), timeout=10)
        except grpc.RpcError as exc:
            failed: Any = exc
        else:
            failed = None
        if failed is not None:
            # Not DEADLINE_EXCEEDED (a hang), not UNKNOWN (an exception in the service).
            assert failed.code() is grpc.StatusCode.INVALID_ARGUMENT, failed
            if texts is None:
                assert "UTF-8" in failed.details(), failed
            else:
                assert expected_problem(*texts) is not None, failed
            return
        assert texts is not None, "bytes that are not UTF-8 were answered as a job's state"
        assert expected_problem(*texts) is None
        response = jobservice_pb2.JobServiceResponse.FromString(answer)
        assert response.state == jobservice_pb2.JobServiceResponse.JOB_ID_NOT_FOUND
        asked.add((texts[0], texts[1]))

    try:
        check()
    finally:
        channel.close()
    assert_still_healthy(servers, asked)
