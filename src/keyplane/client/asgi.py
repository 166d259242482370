"""Protect any ASGI app (FastAPI, Starlette, ...) with Keyplane keys.

As middleware::

    app = KeyplaneAuth(app, url="http://keyplane:8000", verifier_key="kp_...")

or as a FastAPI dependency::

    auth = KeyplaneAuth(url=..., verifier_key=...)
    app.add_exception_handler(Refused, auth.error_response)  # Keyplane's error body

    @app.get("/things")
    async def things(caller: Annotated[KeyVerification, Depends(auth.require)]) -> ...: ...

Each request's ``ApiKey`` header is checked with ``POST /v1/apiKeys/verify``. Positive
answers are cached for ``cache_seconds`` (default 1 second) and never past the key's
expiry, so a revoked key stops working here within that time. Negative answers are not
cached. If Keyplane cannot be asked, requests are refused with 503: never let in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from datetime import UTC, datetime

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from keyplane.client._async import AsyncClient
from keyplane.client.errors import KeyplaneError
from keyplane.client.models import KeyVerification
from keyplane.kit.key_refusals import BY_VERIFY_CODE, EXPIRED, NOT_FOUND, expired_message
from keyplane.kit.time import rfc3339

logger = logging.getLogger("keyplane.client.asgi")


class Refused(HTTPException):
    """A request refused by ``KeyplaneAuth``. As an ``HTTPException`` it keeps its status
    even in an app that does not register ``KeyplaneAuth.error_response``; with the handler
    registered, the body is Keyplane's own ``{"code", "message", "details", "ref"}``."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        headers = {"Retry-After": "1"} if status_code == 503 else None
        super().__init__(status_code, detail=message, headers=headers)
        self.code = code
        self.message = message


def _refusal_for(verification: KeyVerification) -> Refused:
    refusal = BY_VERIFY_CODE.get(verification.code, NOT_FOUND)
    message = refusal.message
    if refusal is EXPIRED and verification.expires_at is not None:
        message = expired_message(rfc3339(verification.expires_at))
    return Refused(401, refusal.api_code, message)


def _error_body(refused: Refused, ref: str) -> bytes:
    return json.dumps(
        {"code": refused.code, "message": refused.message, "details": None, "ref": ref}
    ).encode()


class KeyplaneAuth:
    def __init__(
        self,
        app: ASGIApp | None = None,
        *,
        url: str | None = None,
        verifier_key: str | None = None,
        cache_seconds: float = 1.0,
        max_cache_entries: int = 10_000,
        exempt_paths: tuple[str, ...] = (),
        client: AsyncClient | None = None,
    ) -> None:
        self.app = app
        self.cache_seconds = cache_seconds
        self.max_cache_entries = max_cache_entries
        self.exempt_paths = exempt_paths
        self._client = client or AsyncClient(url, api_key=verifier_key, max_retries=1)
        # Keyed by a hash of the key, so that no key value sits in this process's memory.
        self._cache: OrderedDict[str, tuple[KeyVerification, float]] = OrderedDict()

    async def verify(self, value: str) -> KeyVerification:
        digest = hashlib.sha256(value.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            self._cache.move_to_end(digest)
            return cached[0]
        self._cache.pop(digest, None)
        try:
            verification = await self._client.verify_api_key(value)
        except KeyplaneError as exc:
            logger.warning("cannot verify keys with Keyplane: %s", exc)
            raise Refused(
                503, "KeyplaneUnavailable", "Keys cannot be checked right now; try again shortly."
            ) from exc
        if verification.valid:
            lifetime = self.cache_seconds
            if verification.expires_at is not None:
                remaining = (verification.expires_at - datetime.now(UTC)).total_seconds()
                lifetime = min(lifetime, remaining)
            if lifetime > 0:
                self._cache[digest] = (verification, now + lifetime)
                while len(self._cache) > self.max_cache_entries:
                    self._cache.popitem(last=False)
        return verification

    async def authenticate(self, headers_value: str | None) -> KeyVerification:
        if not headers_value:
            raise Refused(
                401,
                "AuthenticationRequired",
                "Authentication required: send an API key in the ApiKey header.",
            )
        verification = await self.verify(headers_value.strip())
        if not verification.valid:
            raise _refusal_for(verification)
        return verification

    async def require(self, request: Request) -> KeyVerification:
        """FastAPI dependency: the verified caller, or a 401/503 refusal (register
        ``error_response`` for Keyplane's error body)."""
        return await self.authenticate(request.headers.get("apikey"))

    @staticmethod
    async def error_response(request: Request, exc: Exception) -> Response:
        """Exception handler for ``Refused``: ``app.add_exception_handler(Refused,
        auth.error_response)``. The ``ref`` is this request's own id, sent back as
        ``X-Request-Id`` as Keyplane does."""
        assert isinstance(exc, Refused)
        ref = secrets.token_hex(8)
        headers = {**(exc.headers or {}), "X-Request-Id": ref}
        return Response(
            _error_body(exc, ref),
            status_code=exc.status_code,
            headers=headers,
            media_type="application/json",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            raise RuntimeError("KeyplaneAuth needs an app to be used as middleware")
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"apikey")
        try:
            verification = await self.authenticate(raw.decode("latin-1") if raw else None)
        except Refused as refused:
            await _refuse(send, refused)
            return
        scope.setdefault("state", {})["keyplane"] = verification
        await self.app(scope, receive, send)

    async def aclose(self) -> None:
        await self._client.aclose()


async def _refuse(send: Send, refused: Refused) -> None:
    ref = secrets.token_hex(8)
    body = _error_body(refused, ref)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", ref.encode()),
    ]
    headers.extend(
        (name.lower().encode(), value.encode()) for name, value in (refused.headers or {}).items()
    )
    await send({"type": "http.response.start", "status": refused.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
