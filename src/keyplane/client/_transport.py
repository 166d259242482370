"""Credentials, the retry policy and the error mapping, shared by ``Client`` and
``AsyncClient``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from keyplane.client._core import Call, login
from keyplane.client.errors import AuthenticationError, KeyplaneError, error_for

T = TypeVar("T")

# Session tokens live 15 minutes by default; renew well before.
TOKEN_RENEW_AFTER_SECONDS = 10 * 60
_RETRY_STATUSES = frozenset({429, 503})


@dataclass
class Credentials:
    """An API key, or an email/org/password whose session token is renewed as needed."""

    api_key: str | None = None
    email: str | None = None
    org: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    token_obtained_at: float = 0.0

    @classmethod
    def resolve(
        cls,
        api_key: str | None,
        email: str | None,
        org: str | None,
        password: str | None,
        token: str | None,
        token_age: float = 0.0,
    ) -> Credentials:
        if api_key is None and email is None and token is None:
            api_key = os.environ.get("KEYPLANE_API_KEY") or None
        if email is not None and password is None:
            raise ValueError("a password is needed with an email")
        return cls(
            api_key=api_key,
            email=email,
            org=org,
            password=password,
            token=token,
            token_obtained_at=time.monotonic() - max(0.0, token_age) if token else 0.0,
        )

    @property
    def can_log_in(self) -> bool:
        return self.email is not None and self.password is not None

    def needs_login(self) -> bool:
        return self.api_key is None and self.token is None and self.can_log_in

    def should_renew(self) -> bool:
        age = time.monotonic() - self.token_obtained_at
        return self.token is not None and self.api_key is None and age > TOKEN_RENEW_AFTER_SECONDS

    def login_call(self) -> Call[str]:
        if self.email is None or self.password is None:
            raise AuthenticationError("No email and password to log in with.")
        return login(self.email, self.org, self.password)

    def remember(self, token: str) -> None:
        self.token = token
        self.token_obtained_at = time.monotonic()

    def headers(self) -> dict[str, str]:
        if self.api_key is not None:
            return {"ApiKey": self.api_key}
        if self.token is not None:
            return {"Authorization": self.token}
        return {}


def resolve_base_url(base_url: str | None) -> str:
    url = base_url or os.environ.get("KEYPLANE_URL") or "http://127.0.0.1:8000"
    return url.rstrip("/")


def retry_delay(
    call: Call[Any], attempt: int, max_retries: int, response: httpx.Response | None
) -> float | None:
    """Seconds to wait before retrying, or None. Only idempotent calls are retried after
    the server answered; a call that never connected is always safe to send again."""
    if attempt >= max_retries:
        return None
    backoff = min(0.25 * (1 << attempt), 4.0)
    if response is None:
        return backoff
    if response.status_code not in _RETRY_STATUSES or not call.idempotent:
        return None
    return max(backoff, _retry_after(response) or 0.0)


def is_safe_to_resend(call: Call[Any], error: httpx.TransportError) -> bool:
    return call.idempotent or isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def result(call: Call[T], response: httpx.Response) -> T:
    if response.is_success:
        return call.parse(response)
    try:
        body = response.json()
    except ValueError:
        body = None
    raise error_for(response.status_code, body, _retry_after(response))


def is_expired_session(error: KeyplaneError) -> bool:
    return isinstance(error, AuthenticationError) and error.code in {
        "TokenExpired",
        "TokenInvalid",
        "TokenRevoked",
    }
