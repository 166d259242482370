"""Protect any ASGI app (FastAPI, Starlette, ...) with Keyplane keys.

As middleware::

    app = KeyplaneAuth(app, url="http://keyplane:8000", verifier_key="kp_...")

or as a FastAPI dependency::

    auth = KeyplaneAuth(url=..., verifier_key=...)
    app.add_exception_handler(Refused, auth.error_response)  # Keyplane's error body

    @app.get("/things")
    async def things(caller: Annotated[KeyVerification, Depends(auth.require)]) -> ...: ...

    # A route whose callers' keys must also satisfy a permission query:
    @app.post("/invoices")
    async def invoice(
        caller: Annotated[
            KeyVerification, Depends(auth.require_permissions("invoices.read AND invoices.write"))
        ],
    ) -> ...: ...

Each request's ``ApiKey`` header is checked with ``POST /v1/apiKeys/verify``, with the
request's client address (the ASGI scope's ``client``; set your server's proxy-header
handling so that it is the caller's) for keys limited to address ranges, and the route's
permission query if it has one. Positive answers are cached, per key, query and address,
for ``cache_seconds`` (default 1 second) and never past the key's expiry, so a revoked key
stops working here within that time. Negative answers are not cached, nor are answers for
keys with credits or rate limits (``remaining`` or ``rateLimit`` in the answer): each of
their requests must reach Keyplane, to spend a credit and be counted. If Keyplane cannot be
asked, requests are refused with 503: never let in.

Refusals carry Keyplane's own codes and messages (``keyplane.kit.key_refusals``): 401 for a
key that is no good, 403 for a good key used beyond its restrictions
(``ApiKeyAddressDenied``, ``ApiKeyPermissionMissing`` with ``details.missingPermissions``,
``ApiKeyUsageExceeded``) and 429 with ``Retry-After`` for one over its rate limit
(``ApiKeyRateLimited``).

With ``invalidation_feed=True`` (and a long ``cache_seconds``, say 300) a background task
follows ``GET /v1/apiKeys/invalidations``: while subscribed (after its ``ready`` event)
positive answers are kept for ``cache_seconds``, and each ``key``/``user`` event drops the
answers it names, so a revoked key stops working here milliseconds after the revoke
answered (the event is queued on Keyplane before the revoke answers; the network adds its
delay). On ``resync`` every answer is dropped; on a lost or silent feed (no heartbeat for
``feed_timeout_seconds``) or any error every answer is dropped and each request asks
verify, caching nothing, until subscribed again (reconnecting with backoff). The task
starts on the first request, or ``await auth.start()``; ``aclose()`` stops it.

A feed can only tell what its Keyplane worker applied. So the middleware subscribes with
``leases=true``: every quarter lease the worker says for how many more seconds its lease
holds, and a change made through any other worker does not answer before this worker has
applied it or that lease has run out. Cached answers are used only until the last lease
event's seconds (less ``LEASE_MARGIN_SECONDS`` for the network) have passed: when the
worker is frozen (SIGSTOP, a stalled VM) or cut off, the cache stops being trusted, and
each request asks verify, before any change the worker missed has answered. A feed that
stays silent for ``feed_timeout_seconds`` is then dropped and subscribed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeAlias

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from keyplane.client._async import AsyncClient
from keyplane.client.errors import KeyplaneError
from keyplane.client.models import KeyVerification
from keyplane.kit.key_refusals import (
    BY_VERIFY_CODE,
    EXPIRED,
    INSUFFICIENT_PERMISSIONS,
    NOT_FOUND,
    RATE_LIMITED,
    expired_message,
)
from keyplane.kit.permission_query import parse_permission_query
from keyplane.kit.time import rfc3339

logger = logging.getLogger("keyplane.client.asgi")


class Refused(HTTPException):
    """A request refused by ``KeyplaneAuth``. As an ``HTTPException`` it keeps its status
    even in an app that does not register ``KeyplaneAuth.error_response``; with the handler
    registered, the body is Keyplane's own ``{"code", "message", "details", "ref"}``."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        if retry_after is None and status_code == 503:
            retry_after = 1
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        super().__init__(status_code, detail=message, headers=headers)
        self.code = code
        self.message = message
        self.details = details


def _refusal_for(verification: KeyVerification) -> Refused:
    """The refusal Keyplane's own API would answer for this key: its status, code and
    message, and for a rate limit the same details and ``Retry-After``."""
    refusal = BY_VERIFY_CODE.get(verification.code, NOT_FOUND)
    message = refusal.message
    details: dict[str, Any] | None = None
    retry_after: int | None = None
    if refusal is EXPIRED and verification.expires_at is not None:
        message = expired_message(rfc3339(verification.expires_at))
    elif refusal is INSUFFICIENT_PERMISSIONS:
        details = {"missingPermissions": verification.missing_permissions or []}
    elif refusal is RATE_LIMITED:
        limit = verification.rate_limit
        retry_after = 1
        if limit is not None:
            wait = (limit.reset_at - datetime.now(UTC)).total_seconds()
            retry_after = max(1, math.ceil(wait))
            message = f"{RATE_LIMITED.message} (limit {limit.name})."
        details = {"limit": limit.name if limit else "", "retryAfterSeconds": retry_after}
    return Refused(
        refusal.status, refusal.api_code, message, details=details, retry_after=retry_after
    )


def _error_body(refused: Refused, ref: str) -> bytes:
    return json.dumps(
        {"code": refused.code, "message": refused.message, "details": refused.details, "ref": ref}
    ).encode()


def _client_address(scope: Scope) -> str | None:
    """The caller's IP address from the ASGI scope, or None when the server gives none
    that is an address (a test client's "testclient", a Unix socket): verify then refuses
    a key limited to address ranges, rather than guess."""
    client = scope.get("client")
    if not client:
        return None
    try:
        return str(ipaddress.ip_address(client[0]))
    except ValueError:
        return None


# A cached answer's key: the key's hash, the permission query and the client address (the
# answer of a key limited to address ranges depends on it).
_CacheKey: TypeAlias = tuple[str, str | None, str | None]

# Taken off each lease: the time a lease event may spend on the way here. A change waits
# out a silent worker's lease by the database's clock, which the worker's own count
# undercuts by a quarter lease (kit.invalidation.Lease), so the network has that much
# more.
LEASE_MARGIN_SECONDS = 0.1


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
        invalidation_feed: bool = False,
        feed_timeout_seconds: float = 40.0,
    ) -> None:
        self.app = app
        self.cache_seconds = cache_seconds
        self.max_cache_entries = max_cache_entries
        self.exempt_paths = exempt_paths
        self.invalidation_feed = invalidation_feed
        self.feed_timeout_seconds = feed_timeout_seconds
        self._client = client or AsyncClient(url, api_key=verifier_key, max_retries=1)
        # Keyed by a hash of the key, so that no key value sits in this process's memory.
        self._cache: OrderedDict[_CacheKey, tuple[KeyVerification, float]] = OrderedDict()
        # Feed mode: whether the feed is subscribed (got ``ready``) right now, and a count
        # moved by every event, so that an answer asked for before an event (it may predate
        # the change the event reports) is not cached after it.
        self.subscribed = False
        # Lease mode (a server that sends lease events): answers are trusted until then
        # (time.monotonic()). A server without them: while subscribed.
        self._leased = False
        self._trusted_until = 0.0
        self._generation = 0
        self._feed_task: asyncio.Task[None] | None = None

    @property
    def cached_entries(self) -> int:
        """How many positive answers are cached now."""
        return len(self._cache)

    @property
    def trusted(self) -> bool:
        """Whether cached answers may be used now (always, without the feed)."""
        if not self.invalidation_feed:
            return True
        if not self.subscribed:
            return False
        return not self._leased or time.monotonic() < self._trusted_until

    async def start(self) -> None:
        """Feed mode: start following the invalidation feed now rather than on the first
        request."""
        if self.invalidation_feed and self._feed_task is None:
            self._feed_task = asyncio.create_task(self._follow_feed())

    def _forget(self, matches: Callable[[KeyVerification], bool] | None = None) -> None:
        self._generation += 1
        if matches is None:
            self._cache.clear()
            return
        for entry in [e for e, (found, _until) in self._cache.items() if matches(found)]:
            del self._cache[entry]

    def _on_event(self, name: str, data: dict[str, Any]) -> None:
        key_uid, user_uid = data.get("keyUid"), data.get("userUid")
        if name == "ready":
            self._forget()
            self._leased = "leaseSeconds" in data
            self._trusted_until = 0.0
            self.subscribed = True
        elif name == "lease":
            seconds = data.get("seconds")
            if isinstance(seconds, int | float):
                self._trusted_until = time.monotonic() + seconds - LEASE_MARGIN_SECONDS
        elif name == "key" and isinstance(key_uid, str):
            self._forget(lambda found: found.key_uid == key_uid)
        elif name == "user" and isinstance(user_uid, str):
            self._forget(lambda found: found.user_uid == user_uid)
        else:
            # resync, or anything not understood: drop everything rather than guess.
            self._forget()

    async def _follow_feed(self) -> None:
        backoff = 0.1
        while True:
            try:
                async for name, data in self._client.invalidation_events(
                    read_timeout=self.feed_timeout_seconds, leases=True
                ):
                    self._on_event(name, data)
                    if self.subscribed:
                        backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("Keyplane's invalidation feed failed: %r", exc)
            finally:
                # Whatever was cached may miss what happens from now on.
                self.subscribed = False
                self._forget()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def verify(
        self, value: str, *, permissions: str | None = None, client_address: str | None = None
    ) -> KeyVerification:
        """Keyplane's answer about a key, from the cache when it may be."""
        if self.invalidation_feed and self._feed_task is None:
            await self.start()
        entry = (hashlib.sha256(value.encode()).hexdigest(), permissions, client_address)
        now = time.monotonic()
        cached = self._cache.get(entry)
        if cached is not None and cached[1] > now and self.trusted:
            self._cache.move_to_end(entry)
            return cached[0]
        self._cache.pop(entry, None)
        generation = self._generation
        try:
            verification = await self._client.verify_api_key(
                value, permissions=permissions, client_address=client_address
            )
        except KeyplaneError as exc:
            logger.warning("cannot verify keys with Keyplane: %s", exc)
            raise Refused(
                503, "KeyplaneUnavailable", "Keys cannot be checked right now; try again shortly."
            ) from exc
        # Feed mode caches only while subscribed, and nothing an event may have overtaken.
        cacheable = not self.invalidation_feed or (self.trusted and generation == self._generation)
        # An answer that spent a credit or was counted against a rate limit must not stand
        # for the next request: that one has to be counted too.
        if verification.valid and cacheable and not verification.depends_on_the_call:
            lifetime = self.cache_seconds
            if verification.expires_at is not None:
                remaining = (verification.expires_at - datetime.now(UTC)).total_seconds()
                lifetime = min(lifetime, remaining)
            if lifetime > 0:
                self._cache[entry] = (verification, now + lifetime)
                while len(self._cache) > self.max_cache_entries:
                    self._cache.popitem(last=False)
        return verification

    async def authenticate(
        self,
        headers_value: str | None,
        *,
        permissions: str | None = None,
        client_address: str | None = None,
    ) -> KeyVerification:
        if not headers_value:
            raise Refused(
                401,
                "AuthenticationRequired",
                "Authentication required: send an API key in the ApiKey header.",
            )
        verification = await self.verify(
            headers_value.strip(), permissions=permissions, client_address=client_address
        )
        if not verification.valid:
            raise _refusal_for(verification)
        return verification

    async def require(self, request: Request) -> KeyVerification:
        """FastAPI dependency: the verified caller, or a 401/403/429/503 refusal (register
        ``error_response`` for Keyplane's error body)."""
        return await self.authenticate(
            request.headers.get("apikey"), client_address=_client_address(request.scope)
        )

    def require_permissions(self, query: str) -> Callable[[Request], Awaitable[KeyVerification]]:
        """A FastAPI dependency like ``require`` whose key must also satisfy ``query``,
        e.g. ``Depends(auth.require_permissions("invoices.read AND invoices.write"))``
        (names joined by AND and OR, AND binding tighter, with parentheses). A key that
        does not is refused with 403 ``ApiKeyPermissionMissing``, and
        ``details.missingPermissions`` says what would satisfy the query. The query is
        checked here, when the route is declared: a mistake in it raises
        ``PermissionQueryError`` (a ``ValueError``) at start-up, not at each request."""
        parse_permission_query(query)

        async def require_permissions(request: Request) -> KeyVerification:
            return await self.authenticate(
                request.headers.get("apikey"),
                permissions=query,
                client_address=_client_address(request.scope),
            )

        return require_permissions

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
            verification = await self.authenticate(
                raw.decode("latin-1") if raw else None, client_address=_client_address(scope)
            )
        except Refused as refused:
            await _refuse(send, refused)
            return
        scope.setdefault("state", {})["keyplane"] = verification
        await self.app(scope, receive, send)

    async def aclose(self) -> None:
        task, self._feed_task = self._feed_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
