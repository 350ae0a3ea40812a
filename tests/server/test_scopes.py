"""Scope files and per-identity limits as pure rules: tables, no I/O, time passed in."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from armada_jobservice._scopes import (
    bearer_token,
    parse_identity_scopes,
    parse_token_scopes,
    token_identity,
)
from armada_jobservice.server.cache import JobSet
from armada_jobservice.server.limits import IdentityLimits
from armada_jobservice.server.model import JobSetKey
from armada_jobservice.server.watched_file import WatchedFile

TOKENS = """
# airflow of team a
tok-a team-a-*,shared name=airflow-a
tok-b\tteam-b
tok-all
tok-q q-?,[xy]-queue
"""


@pytest.mark.parametrize(
    ("token", "queue", "allowed"),
    [
        ("tok-a", "team-a-1", True),
        ("tok-a", "team-a-", True),
        ("tok-a", "shared", True),
        ("tok-a", "team-a", False),
        ("tok-a", "Team-a-1", False),  # case-sensitive
        ("tok-a", "team-b", False),
        ("tok-a", "sharedx", False),  # a name is the whole queue, not a prefix
        ("tok-b", "team-b", True),
        ("tok-b", "team-b-1", False),
        ("tok-all", "anything/at.all", True),
        ("tok-q", "q-1", True),
        ("tok-q", "q-12", False),
        ("tok-q", "x-queue", True),
        ("tok-q", "z-queue", False),
    ],
)
def test_patterns_match_as_fnmatchcase(token: str, queue: str, allowed: bool) -> None:
    """A token's patterns are shell-style wildcards, case-sensitive, matched on the whole name."""
    scope = parse_token_scopes(TOKENS).lookup(token)
    assert scope is not None
    assert scope.allows(queue) is allowed
    assert scope.allows(queue) is allowed  # the memoised answer agrees


def test_star_has_no_path_semantics() -> None:
    """``*`` matches across ``/`` and ``.``: queue names are plain strings."""
    scope = parse_identity_scopes("svc a*z\n").lookup(["svc"])
    assert scope is not None
    assert scope.allows("a/b.c/z")


def test_identities_never_carry_the_token() -> None:
    """Unnamed tokens are known by a SHA-256 prefix, named ones by their name."""
    scopes = parse_token_scopes(TOKENS)
    named, unnamed = scopes.lookup("tok-a"), scopes.lookup("tok-b")
    assert named is not None
    assert unnamed is not None
    assert named.identity == "airflow-a"
    assert unnamed.identity == token_identity("tok-b")
    assert unnamed.identity.startswith("token:")
    assert len(unnamed.identity) == len("token:") + 8
    assert "tok-b" not in unnamed.identity
    assert scopes.lookup("tok-c") is None
    assert scopes.lookup("tok-a ") is None


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("ok\nbad a b\n", 2, "columns"),
        ("# c\n\nt a,,b\n", 3, "empty pattern"),
        ("t a,\n", 1, "empty pattern"),
        ("t a\nt b\n", 2, "twice"),
        ("t a name=x\nu b name=x\n", 2, "used on line 1"),
        ("t name=has:colon\n", 1, "a name is"),
        ("t name=x name=y\n", 1, "more than one"),
    ],
)
def test_malformed_token_lines_name_the_line(text: str, line: int, problem: str) -> None:
    """Each malformed line is an error naming its line number; the token is never echoed."""
    with pytest.raises(ValueError, match=problem) as caught:
        parse_token_scopes(text, "/etc/tokens")
    message = str(caught.value)
    assert message.startswith(f"/etc/tokens, line {line}: ")
    assert "bad a b" not in message


def test_identity_scopes_take_the_first_listed_name() -> None:
    """A certificate's CN and SANs are tried in order; unlisted names identify nobody."""
    scopes = parse_identity_scopes("airflow-a team-a\nspiffe://x/b team-b\nops\n")
    by_san = scopes.lookup(["unlisted-cn", "spiffe://x/b"])
    assert by_san is not None
    assert by_san.identity == "cert:spiffe://x/b"
    assert by_san.allows("team-b")
    assert not by_san.allows("team-a")
    ops = scopes.lookup(["ops"])
    assert ops is not None
    assert ops.patterns is None
    assert scopes.lookup(["nobody"]) is None
    with pytest.raises(ValueError, match="line 2"):
        parse_identity_scopes("a x\nb x y\n")


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ((("authorization", "Bearer abc"),), "abc"),
        ((("authorization", "bearer  abc "),), "abc"),
        ((("authorization", "Basic abc"),), None),
        ((("authorization", "Bearer "),), None),
        ((("x-other", "Bearer abc"),), None),
        ((), None),
        (None, None),
    ],
)
def test_bearer_token(metadata: object, token: str | None) -> None:
    """Only an ``authorization: bearer`` header with a token yields one."""
    assert bearer_token(metadata) == token


def test_a_malformed_rewrite_warns_once_and_keeps_the_previous_scopes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad line on re-read logs one warning naming file and line; the old scopes stay."""
    path = tmp_path / "tokens"
    path.write_text("tok-a team-a\n")
    watched = WatchedFile(str(path), parse_token_scopes, setting="client_tokens_file")
    path.write_text("tok-a team-a\ntok-b x y z\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with caplog.at_level(logging.WARNING, logger="armada_jobservice.server.watched_file"):
        for _ in range(3):
            assert watched.get().lookup("tok-a") is not None
            assert watched.get().lookup("tok-b") is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0]
    assert "line 2" in warnings[0]
    assert "tok-b" not in warnings[0]


async def _open(limits: IdentityLimits, identity: str, key: str, now: float) -> JobSet:
    js = JobSet(JobSetKey("q", key), now)
    js.attach_stream(asyncio.get_running_loop().create_future())  # type: ignore[arg-type]
    limits.opened(identity, js, now)
    return js


async def test_count_limit_frees_up_when_a_subscription_ends() -> None:
    """Past the count the caller is refused naming the setting; an ended stream frees a slot."""
    limits = IdentityLimits(max_subscriptions=2, per_minute=None)
    first = await _open(limits, "a", "s1", 0.0)
    await _open(limits, "a", "s2", 0.0)
    refused = limits.refusal("a", 0.0)
    assert refused is not None
    assert refused[0] == "count"
    assert "max_subscriptions_per_identity=2" in refused[1]
    assert limits.refusal("b", 0.0) is None  # other callers are unaffected
    first.detach_stream()
    assert limits.refusal("a", 0.0) is None
    assert limits.open_count("a") == 1


async def test_rate_limit_is_a_token_bucket_stepped_by_now() -> None:
    """``burst`` at once, then one per 60/rate seconds; the refusal says when to retry."""
    limits = IdentityLimits(max_subscriptions=None, per_minute=6, burst=2)
    for n in range(2):
        assert limits.refusal("a", 0.0) is None
        await _open(limits, "a", f"s{n}", 0.0)
    refused = limits.refusal("a", 0.0)
    assert refused is not None
    assert refused[0] == "rate"
    assert "new_subscriptions_per_identity_per_minute=6" in refused[1]
    assert limits.retry_after_s("a") == pytest.approx(10.0)
    assert limits.refusal("b", 0.0) is None
    assert limits.refusal("a", 9.9) is not None
    assert limits.refusal("a", 10.0) is None
    await _open(limits, "a", "s3", 10.0)
    assert limits.refusal("a", 10.0) is not None
    # A long pause refills the bucket to the burst, not beyond.
    assert limits.refusal("a", 1000.0) is None
    await _open(limits, "a", "s4", 1000.0)
    await _open(limits, "a", "s5", 1000.0)
    assert limits.refusal("a", 1000.0) is not None


async def test_idle_identities_are_forgotten() -> None:
    """An identity with nothing open and a full bucket leaves no state behind."""
    limits = IdentityLimits(max_subscriptions=5, per_minute=60)
    js = await _open(limits, "a", "s", 0.0)
    assert limits.forget_idle(0.0) == 0
    js.detach_stream()
    assert limits.forget_idle(0.5) == 0  # the bucket is not full yet
    assert limits.forget_idle(2.0) == 1
    assert limits.open_count("a") == 0
