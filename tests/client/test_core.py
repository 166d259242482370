"""The retry policy and error mapping, as pure functions (no HTTP at all)."""

from __future__ import annotations

import httpx
import pytest

from keyplane.client import _core as calls
from keyplane.client import _transport as sending
from keyplane.client.errors import (
    AuthenticationError,
    Conflict,
    KeyplaneError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    ValidationError,
    error_for,
)


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers)


def test_idempotent_calls_are_retried_on_429_and_503_with_backoff() -> None:
    call = calls.get_api_key("x")
    delays = [sending.retry_delay(call, attempt, 3, _response(503)) for attempt in range(4)]
    assert delays == [0.25, 0.5, 1.0, None]
    assert sending.retry_delay(call, 0, 3, _response(429, {"Retry-After": "3"})) == 3.0


def test_non_idempotent_calls_are_not_retried_once_answered() -> None:
    create = calls.create_api_key("ci", None, None, None)
    assert sending.retry_delay(create, 0, 3, _response(503)) is None
    assert sending.retry_delay(calls.get_api_key("x"), 0, 3, _response(500)) is None
    assert sending.retry_delay(calls.get_api_key("x"), 0, 3, _response(404)) is None


def test_a_create_is_resent_only_when_it_never_connected() -> None:
    create = calls.create_api_key("ci", None, None, None)
    assert sending.is_safe_to_resend(create, httpx.ConnectError("refused"))
    assert not sending.is_safe_to_resend(create, httpx.ReadTimeout("slow"))
    assert sending.is_safe_to_resend(calls.get_api_key("x"), httpx.ReadTimeout("slow"))


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (403, PermissionDenied),
        (404, NotFound),
        (409, Conflict),
        (429, RateLimited),
        (500, ServerError),
        (503, ServerError),
        (418, KeyplaneError),
    ],
)
def test_statuses_map_to_the_exception_tree(status: int, kind: type[KeyplaneError]) -> None:
    body = {"code": "Code", "message": "what happened", "details": None, "ref": "r1"}
    error = error_for(status, body, 2.0)
    assert type(error) is kind
    assert (error.code, error.message, error.ref, error.status_code) == (
        "Code",
        "what happened",
        "r1",
        status,
    )
    if isinstance(error, RateLimited):
        assert error.retry_after == 2.0


def test_a_body_that_is_not_palettes_still_gives_a_clear_error() -> None:
    error = error_for(502, "<html>bad gateway</html>", None)
    assert isinstance(error, ServerError)
    assert error.message == "HTTP 502"


def test_a_resumed_session_token_is_renewed_by_its_real_age() -> None:
    fresh = sending.Credentials.resolve(None, None, None, None, "kps_token", token_age=0.0)
    old = sending.Credentials.resolve(
        None, None, None, None, "kps_token", token_age=sending.TOKEN_RENEW_AFTER_SECONDS + 1
    )
    assert not fresh.should_renew()
    assert old.should_renew()
