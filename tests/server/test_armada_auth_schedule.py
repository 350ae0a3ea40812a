"""The token renewal schedule, as tables of (time, event) steps: no clock, no sleeping."""

from __future__ import annotations

import base64
import json

import pytest

from armada_jobservice.server.armada_auth import RefreshPolicy, RefreshSchedule
from armada_jobservice.server.armada_auth.base import Secret, Token, jwt_lifetime_s

POLICY = RefreshPolicy(
    early_fraction=0.2,
    min_early_s=10.0,
    unknown_lifetime_s=300.0,
    retry_base_s=1.0,
    retry_cap_s=8.0,
    min_interval_s=1.0,
)

# Each row: a list of (now, event, argument) and the expected step(now) after each.
# Events: "token" (argument: lifetime or None), "fail", "refused", "ask".
SCENARIOS: dict[str, list[tuple[float, str, float | None, float]]] = {
    "a fetch is due before the first token": [(0, "ask", None, 0.0)],
    "an hour-long token is renewed with a fifth of its life left": [
        (0, "token", 3600, 2880.0),
        (2000, "ask", None, 880.0),
        (2880, "ask", None, 0.0),
    ],
    "a short token is renewed at least 10 s before it expires": [(0, "token", 30, 20.0)],
    "a very short token is renewed at half its life, not in a busy loop": [
        (0, "token", 4, 2.0),
        (2, "token", 4, 2.0),
    ],
    "a token of unknown lifetime is renewed after unknown_lifetime_s": [(0, "token", None, 300.0)],
    "failures back off exponentially up to the cap": [
        (0, "token", 100, 80.0),
        (80, "fail", None, 1.0),
        (81, "fail", None, 2.0),
        (83, "fail", None, 4.0),
        (87, "fail", None, 8.0),
        (95, "fail", None, 8.0),
        (103, "token", 100, 80.0),
        (183, "fail", None, 1.0),
    ],
    "a refusal makes a fetch due at once": [(0, "token", 3600, 2880.0), (50, "refused", None, 0.0)],
    "refusals right after a fetch wait min_interval_s": [
        (0, "token", 3600, 2880.0),
        (0.25, "refused", None, 0.75),
        (0.5, "refused", None, 0.5),
    ],
    "a refusal never delays a fetch already due sooner": [
        (0, "token", 100, 80.0),
        (80, "fail", None, 1.0),
        (80.5, "refused", None, 0.5),
    ],
}


@pytest.mark.parametrize("steps", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_schedule(steps: list[tuple[float, str, float | None, float]]) -> None:
    """The schedule answers each step as the table says."""
    schedule = RefreshSchedule(POLICY)
    for now, event, argument, expected in steps:
        if event == "token":
            schedule.on_token(now, argument)
        elif event == "fail":
            schedule.on_failure(now)
        elif event == "refused":
            schedule.invalidate(now)
        assert schedule.step(now) == pytest.approx(expected), (now, event)


@pytest.mark.parametrize(
    ("steps", "now", "expired"),
    [
        ([("token", 0.0, 100.0)], 99.0, False),
        ([("token", 0.0, 100.0), ("fail", 80.0, None)], 100.0, True),
        ([("token", 0.0, None)], 10_000.0, False),
    ],
)
def test_expiry(steps: list[tuple[str, float, float | None]], now: float, expired: bool) -> None:
    """A token of known lifetime expires; one of unknown lifetime never does."""
    schedule = RefreshSchedule(POLICY)
    for event, at, lifetime in steps:
        if event == "token":
            schedule.on_token(at, lifetime)
        else:
            schedule.on_failure(at)
    assert schedule.expired(now) is expired


def _jwt(payload: object) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{body}.x"


@pytest.mark.parametrize(
    ("token", "lifetime"),
    [
        (_jwt({"exp": 1_000_100}), 100.0),
        (_jwt({"exp": 999_990.5}), -9.5),
        (_jwt({"exp": "soon"}), None),
        (_jwt({"exp": True}), None),
        (_jwt(["not", "a", "mapping"]), None),
        (_jwt({}), None),
        ("opaque", None),
        ("a.b", None),
        ("a.!!!.c", None),
    ],
)
def test_jwt_lifetime(token: str, lifetime: float | None) -> None:
    """Only a JWT with a numeric exp claim has a known lifetime."""
    assert jwt_lifetime_s(token, 1_000_000.0) == lifetime


def test_secrets_do_not_show_in_reprs() -> None:
    """Neither a token nor a secret appears in its repr."""
    assert "tok-1234" not in repr(Token("tok-1234", 10.0))
    assert "pw-1234" not in repr(Secret("pw-1234", None, setting="armada_oidc_password"))
