"""``armada-jobservice status | wait | health`` against the real job service and the simulator."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from armada_jobservice import AsyncJobServiceClient, JobState
from armada_jobservice.cli import main
from armada_jobservice.cli.exit_codes import ExitCode
from armada_jobservice.cli.progress import ProgressView

from .conftest import Server, Stack

OK = {"armada-sim/outcome": "succeeded", "armada-sim/run-seconds": "1"}
OOM = {
    "armada-sim/outcome": "failed",
    "armada-sim/run-seconds": "1",
    "armada-sim/failure-reason": "OOMKilled: the pod ran out of memory",
}
HELD = {"armada-sim/hold-at": "running"}


async def cli(*argv: str) -> tuple[int, str, str]:
    """Run the CLI as a user would, in its own process; return exit code, stdout, stderr."""
    # A process of its own, not a thread: gRPC's asyncio layer misbehaves when
    # two event loops in one process use it at once (see docs/cli.md, testing).
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "armada_jobservice.cli",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def reach(stack: Stack, job_set: str, job_id: str, state: JobState) -> None:
    """Poll the service until the job reads *state* (bounded: the test fails otherwise)."""
    async with AsyncJobServiceClient(stack.target) as client:
        for _ in range(500):
            if (await client.get_job_status(stack.queue, job_set, job_id)).state is state:
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"{job_id} never reached {state}")


async def test_status_of_a_succeeded_job(stack: Stack) -> None:
    """A succeeded job prints one line and exits 0."""
    [job] = stack.sim.submit("q", "set-a", OK)
    await reach(stack, "set-a", job, JobState.SUCCEEDED)
    code, out, _ = await cli("status", "q", "set-a", job, "--target", stack.target)
    assert (code, out.split()) == (0, [job, "SUCCEEDED"])


async def test_status_exit_codes_rank_failure_first(stack: Stack) -> None:
    """Running, not-found and failed jobs: one line each, and failure decides the exit code."""
    [ok] = stack.sim.submit("q", "set-b", OK)
    [held] = stack.sim.submit("q", "set-b", HELD)
    [bad] = stack.sim.submit("q", "set-b", OOM)
    await reach(stack, "set-b", bad, JobState.FAILED)
    await reach(stack, "set-b", held, JobState.RUNNING)
    await reach(stack, "set-b", ok, JobState.SUCCEEDED)
    base = ["status", "q", "set-b", "--target", stack.target]
    code, out, _ = await cli(*base, ok, held, "no-such-job", bad)
    assert code == 1
    lines = out.splitlines()
    assert [line.split()[1] for line in lines] == [
        "SUCCEEDED",
        "RUNNING",
        "JOB_ID_NOT_FOUND",
        "FAILED",
    ]
    assert "OOMKilled: the pod ran out of memory" in lines[3]
    assert (await cli(*base, ok, held, "no-such-job"))[0] == 4
    assert (await cli(*base, ok, held))[0] == 3


async def test_status_json_output(stack: Stack) -> None:
    """--output json prints one document with queue, job set, id, state and error per job."""
    [bad] = stack.sim.submit("q", "set-c", OOM)
    await reach(stack, "set-c", bad, JobState.FAILED)
    code, out, _ = await cli(
        "status", "q", "set-c", bad, "--target", stack.target, "--output", "json"
    )
    assert code == 1
    [row] = json.loads(out)
    assert row.pop("error").startswith("OOMKilled: the pod ran out of memory")
    assert row == {"queue": "q", "job_set_id": "set-c", "job_id": bad, "state": "FAILED"}


async def test_wait_follows_many_jobs_to_their_ends(stack: Stack) -> None:
    """wait returns when every job ended, reports changes on stderr, and exits 1 on a failure."""
    ok_jobs = stack.sim.submit("q", "set-d", OK, count=3)
    [bad] = stack.sim.submit("q", "set-d", OOM)
    argv = [
        "wait",
        "q",
        "set-d",
        *ok_jobs,
        bad,
        "--target",
        stack.target,
        "--poll-interval",
        "0.05",
    ]
    code, out, err = await cli(*argv, "--output", "json")
    assert code == 1
    assert [row["state"] for row in json.loads(out)] == ["SUCCEEDED"] * 3 + ["FAILED"]
    assert f"{bad}: FAILED" in err.splitlines()
    code, _, _ = await cli(*argv[:-5], *argv[-4:])  # without the failed job
    assert code == 0


async def test_wait_gives_up_on_a_missing_job(stack: Stack) -> None:
    """A job id the service never finds ends the wait with exit code 6 and the reason."""
    code, out, _ = await cli(
        "wait",
        "q",
        "set-e",
        "ghost",
        "--target",
        stack.target,
        "--poll-interval",
        "0.05",
        "--not-found-timeout",
        "0.3",
    )
    assert code == 6
    assert out.split()[:2] == ["ghost", "TIMED_OUT"]
    assert "not found" in out


async def test_health_of_a_running_service(stack: Stack) -> None:
    """health prints SERVING and exits 0 when the service is up."""
    code, out, _ = await cli("health", "--target", stack.target, "--output", "json")
    assert (code, json.loads(out)) == (0, {"status": "SERVING"})


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in its own process from a synchronous test (the server runs in threads)."""
    return subprocess.run(
        [sys.executable, "-m", "armada_jobservice.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_error_line(stderr: str) -> None:
    """The command explained itself in one ``armada-jobservice: error:`` line, no traceback."""
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith("armada-jobservice: error: ")
    assert "Traceback" not in stderr


@pytest.mark.parametrize("command", [["health"], ["status", "q", "s", "j"]])
def test_service_down_is_one_line_and_exit_5(dead_target: str, command: list[str]) -> None:
    """With nobody listening, health and status print one error line and exit 5."""
    proc = run_cli(*command, "--target", dead_target)
    assert proc.returncode == ExitCode.SERVICE_ERROR, proc.stderr
    assert_one_error_line(proc.stderr)


def test_wait_refused_by_the_service_is_one_line_and_exit_5(server: Server) -> None:
    """wait that the service refuses (a token it requires is missing) exits 5 at once."""
    server.script.required_token = "s3cret"
    proc = run_cli("wait", "q", "s", "j", "--target", server.target)
    assert proc.returncode == ExitCode.SERVICE_ERROR, proc.stderr
    assert_one_error_line(proc.stderr)
    assert "UNAUTHENTICATED" in proc.stderr
    assert proc.stdout == ""


def test_wait_on_a_service_that_is_down_gives_up_with_exit_6(dead_target: str) -> None:
    """wait counts an unreachable service against --connection-error-timeout, then exits 6."""
    proc = run_cli(
        "wait", "q", "s", "j", "--target", dead_target, "--connection-error-timeout", "0"
    )
    assert proc.returncode == ExitCode.TIMEOUT, proc.stderr
    assert proc.stdout.split()[:2] == ["j", "TIMED_OUT"]
    assert "no connection for 0 s" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "q"],
        ["wait", "q", "s", "j", "--poll-interval", "-1"],
        ["health", "--output", "yaml"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad arguments are argparse's usage error: exit code 2, no traceback."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_unreadable_ca_cert_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A --ca-cert that cannot be read is one error line and exit code 2."""
    code = main(["health", "--ca-cert", "/nonexistent/ca.pem"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("armada-jobservice: error: cannot read --ca-cert")


def test_progress_view_shows_counts_and_unfinished_jobs() -> None:
    """The live view counts jobs per state and lists only the unfinished ones, capped."""
    from rich.console import Console

    jobs = [f"job-{i:02d}" for i in range(20)]
    progress = ProgressView(jobs, live=True, console=Console(file=io.StringIO()))
    progress.update("job-00", "SUCCEEDED")
    progress.update("job-01", "RUNNING")
    progress.update("job-02", "FAILED", "OOMKilled:\nthe pod ran out of memory")
    console = Console(file=io.StringIO(), width=100, record=True)
    console.print(progress.render())
    text = console.export_text()
    assert "2/20 ended" in text
    assert "RUNNING: 1" in text
    assert "job-00" not in text
    assert "job-01" in text
    assert "... and 3 more" in text
    assert "OOMKilled: the pod ran out of memory" in text  # a problem keeps its reason, on one row


def test_progress_view_in_plain_mode_prints_one_line_per_change() -> None:
    """Without a terminal the view prints ``JOB: STATE`` when a job's state changes, only then."""
    from rich.console import Console

    out = io.StringIO()
    with ProgressView(["a", "b"], live=False, console=Console(file=out)) as progress:
        for job_id, state in [("a", "RUNNING"), ("a", "RUNNING"), ("b", "TIMED_OUT")]:
            progress.update(job_id, state)
    assert out.getvalue().splitlines() == ["a: RUNNING", "b: TIMED_OUT"]
    assert progress.ended == 1


DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_docs_list_the_exit_codes_as_defined() -> None:
    """docs/cli.md lists every ExitCode with its number; docs/demo.md numbers its own alike."""
    table = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", (DOCS / "cli.md").read_text(), re.M)
    assert {name: int(number) for number, name in table} == {c.name: c.value for c in ExitCode}
    demo = re.findall(r"(\d+) \(`([A-Z_]+)`\)", (DOCS / "demo.md").read_text())
    assert demo
    assert all(ExitCode[name] == int(number) for number, name in demo)
