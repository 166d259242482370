"""Protect any ASGI app (FastAPI, Starlette, ...) with Keyplane keys.

As middleware::

    app = KeyplaneAuth(app, url="http://keyplane:8000", verifier_key="kp_...")

or as a FastAPI dependency::

    auth = KeyplaneAuth(url=..., verifier_key=...)

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
import time
from collections import OrderedDict
from datetime import UTC, datetime

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from keyplane.client._async import AsyncClient
from keyplane.client.errors import KeyplaneError
from keyplane.client.models import KeyVerification

logger = logging.getLogger("keyplane.client.asgi")

_REASONS = {
    "REVOKED": "This API key has been revoked.",
    "EXPIRED": "This API key has expired.",
    "USER_INACTIVE": "The user this API key belongs to is deactivated.",
    "NOT_FOUND": "The API key is not valid.",
    "MALFORMED": "The API key is not valid.",
}


class Refused(Exception):
    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


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
            raise Refused(401, "AuthenticationRequired", "Send an API key in the ApiKey header.")
        verification = await self.verify(headers_value.strip())
        if not verification.valid:
            reason = _REASONS.get(verification.code, "The API key is not valid.")
            raise Refused(401, f"ApiKey{verification.code.title().replace('_', '')}", reason)
        return verification

    async def require(self, request: Request) -> KeyVerification:
        """FastAPI dependency: the verified caller, or a 401/503 response."""
        try:
            return await self.authenticate(request.headers.get("apikey"))
        except Refused as refused:
            raise HTTPException(
                refused.status_code, detail=f"{refused.code}: {refused.message}"
            ) from refused

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
    body = json.dumps(
        {"code": refused.code, "message": refused.message, "details": None, "ref": ""}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if refused.status_code == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": refused.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
