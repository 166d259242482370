"""KeyplaneAuth with restricted keys, against a real Keyplane server: routes that require a
permission query, the client's address, keys with credits and rate limits, and Keyplane's
refusals (403, 429 with Retry-After) in Keyplane's error body.

No ``from __future__ import annotations``: FastAPI reads the routes' ``Depends(...)``
annotations at run time, and the dependencies are local to ``_service``.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.types import Receive, Scope, Send

from keyplane.client import AsyncClient, Credits, KeyVerification, RateLimit
from keyplane.client.asgi import KeyplaneAuth, Refused
from keyplane.kit.key_refusals import (
    FORBIDDEN_ADDRESS,
    INSUFFICIENT_PERMISSIONS,
    RATE_LIMITED,
    USAGE_EXCEEDED,
)
from keyplane.kit.permission_query import PermissionQueryError
from tests.live import LiveServer

# Long enough that a request answered from the cache cannot be one that went to Keyplane.
LONG_CACHE_SECONDS = 300.0


def _service(auth: KeyplaneAuth) -> FastAPI:
    service = FastAPI()
    service.add_exception_handler(Refused, auth.error_response)
    read = auth.require_permissions("invoices.read")
    write = auth.require_permissions("invoices.read AND invoices.write")

    @service.get("/invoices")
    async def invoices(caller: Annotated[KeyVerification, Depends(read)]) -> dict[str, object]:
        return {"ownerId": caller.owner_id, "remaining": caller.remaining}

    @service.post("/invoices")
    async def create_invoice(
        caller: Annotated[KeyVerification, Depends(write)],
    ) -> dict[str, object]:
        return {"keyUid": caller.key_uid}

    @service.get("/anything")
    async def anything(
        caller: Annotated[KeyVerification, Depends(auth.require)],
    ) -> dict[str, object]:
        return {"keyUid": caller.key_uid}

    return service


@asynccontextmanager
async def _admin(server: LiveServer) -> AsyncIterator[AsyncClient]:
    admin = server.world.admin
    async with AsyncClient(
        server.url, email=admin.email, org="acme", password=admin.password
    ) as client:
        yield client


@asynccontextmanager
async def _calling(
    app: object, client: tuple[str, int] = ("127.0.0.1", 123)
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=client)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        yield http


def _refusal(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body: dict[str, object] = response.json()
    assert set(body) == {"code", "message", "details", "ref"}
    assert body["code"] == code
    assert body["ref"] == response.headers["x-request-id"]
    return body


async def test_a_route_requires_its_permission_query(server: LiveServer) -> None:
    async with _admin(server) as admin:
        for name in ("invoices.read", "invoices.write"):
            await admin.create_permission(name)
        verifier = await admin.create_api_key("verifier")
        reader = await admin.create_api_key(
            "reader", permissions=["invoices.read"], owner_id="cus_1"
        )
        writer = await admin.create_api_key(
            "writer", permissions=["invoices.read", "invoices.write"]
        )
    auth = KeyplaneAuth(
        url=server.url, verifier_key=verifier.value, cache_seconds=LONG_CACHE_SECONDS
    )
    with pytest.raises(PermissionQueryError):
        auth.require_permissions("invoices.read && invoices.write")
    async with _calling(_service(auth)) as http:
        ok = await http.get("/invoices", headers={"ApiKey": reader.value})
        assert ok.status_code == 200
        assert ok.json() == {"ownerId": "cus_1", "remaining": None}
        # The reader's cached answer is for its query only: the other route asks again.
        refused = await http.post("/invoices", headers={"ApiKey": reader.value})
        body = _refusal(refused, 403, INSUFFICIENT_PERMISSIONS.api_code)
        assert body["message"] == INSUFFICIENT_PERMISSIONS.message
        assert body["details"] == {"missingPermissions": ["invoices.write"]}
        assert reader.value not in refused.text

        written = await http.post("/invoices", headers={"ApiKey": writer.value})
        assert written.json() == {"keyUid": writer.uid}
        # Answered from the cache from now on: (reader, read) and (writer, write).
        assert auth.cached_entries == 2
        for _ in range(3):
            assert (await http.get("/invoices", headers={"ApiKey": reader.value})).is_success
        assert auth.cached_entries == 2
        assert (await http.get("/invoices")).status_code == 401
    await auth.aclose()


async def test_a_key_with_credits_is_never_answered_from_the_cache(server: LiveServer) -> None:
    async with _admin(server) as admin:
        await admin.create_permission("invoices.read")
        verifier = await admin.create_api_key("verifier")
        metered = await admin.create_api_key(
            "metered", permissions=["invoices.read"], credits=Credits(remaining=2)
        )
        plain = await admin.create_api_key("plain", permissions=["invoices.read"])
    auth = KeyplaneAuth(
        url=server.url, verifier_key=verifier.value, cache_seconds=LONG_CACHE_SECONDS
    )
    async with _calling(_service(auth)) as http:
        spent = [
            (await http.get("/invoices", headers={"ApiKey": metered.value})).json()["remaining"]
            for _ in range(2)
        ]
        assert spent == [1, 0]
        assert auth.cached_entries == 0
        exhausted = await http.get("/invoices", headers={"ApiKey": metered.value})
        body = _refusal(exhausted, 403, USAGE_EXCEEDED.api_code)
        assert body["message"] == USAGE_EXCEEDED.message

        assert (await http.get("/invoices", headers={"ApiKey": plain.value})).is_success
        assert auth.cached_entries == 1
    await auth.aclose()


async def test_a_rate_limited_key_is_refused_with_429_and_retry_after(
    server: LiveServer,
) -> None:
    async with _admin(server) as admin:
        verifier = await admin.create_api_key("verifier")
        limited = await admin.create_api_key(
            "limited", rate_limits=[RateLimit(limit=1, window_seconds=86400, name="daily")]
        )
        other = await admin.create_api_key(
            "other", rate_limits=[RateLimit(limit=1, window_seconds=86400)]
        )
    auth = KeyplaneAuth(
        url=server.url, verifier_key=verifier.value, cache_seconds=LONG_CACHE_SECONDS
    )
    async with _calling(_service(auth)) as http:
        assert (await http.get("/anything", headers={"ApiKey": limited.value})).is_success
        assert auth.cached_entries == 0
        over = await http.get("/anything", headers={"ApiKey": limited.value})
        body = _refusal(over, 429, RATE_LIMITED.api_code)
        retry_after = int(over.headers["retry-after"])
        # A sliding window: the wait may pass the end of the current window.
        assert 0 < retry_after <= 2 * 86400
        assert body["details"] == {"limit": "daily", "retryAfterSeconds": retry_after}
        assert body["message"] == f"{RATE_LIMITED.message} (limit daily)."
    await auth.aclose()

    # The same as middleware, in front of any ASGI app.
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = KeyplaneAuth(inner, url=server.url, verifier_key=verifier.value)
    async with _calling(middleware) as http:
        assert (await http.get("/", headers={"ApiKey": other.value})).status_code == 204
        over = await http.get("/", headers={"ApiKey": other.value})
        _refusal(over, 429, RATE_LIMITED.api_code)
        assert int(over.headers["retry-after"]) > 0
    await middleware.aclose()


async def test_the_callers_address_is_checked(server: LiveServer) -> None:
    async with _admin(server) as admin:
        verifier = await admin.create_api_key("verifier")
        ranged = await admin.create_api_key("ranged", allowed_cidrs=["10.0.0.0/8"])
    auth = KeyplaneAuth(
        url=server.url, verifier_key=verifier.value, cache_seconds=LONG_CACHE_SECONDS
    )
    service = _service(auth)
    async with _calling(service, client=("10.1.2.3", 40000)) as inside:
        assert (await inside.get("/anything", headers={"ApiKey": ranged.value})).is_success
    # Cached for 10.1.2.3 only: from elsewhere the key is refused.
    async with _calling(service) as outside:
        refused = await outside.get("/anything", headers={"ApiKey": ranged.value})
        body = _refusal(refused, 403, FORBIDDEN_ADDRESS.api_code)
        assert body["message"] == FORBIDDEN_ADDRESS.message
    # A client that is not an address (a test client's name) is not one in the range.
    async with _calling(service, client=("testclient", 50000)) as unnamed:
        refused = await unnamed.get("/anything", headers={"ApiKey": ranged.value})
        _refusal(refused, 403, FORBIDDEN_ADDRESS.api_code)
    await auth.aclose()


async def test_the_feed_drops_every_cached_answer_of_a_revoked_key(server: LiveServer) -> None:
    async with _admin(server) as admin:
        await admin.create_permission("invoices.read")
        verifier = await admin.create_api_key("verifier")
        reader = await admin.create_api_key("reader", permissions=["invoices.read"])
        auth = KeyplaneAuth(
            url=server.url,
            verifier_key=verifier.value,
            cache_seconds=LONG_CACHE_SECONDS,
            invalidation_feed=True,
        )
        async with _calling(_service(auth)) as http:
            await auth.start()
            deadline = time.monotonic() + 5
            while not auth.subscribed:
                assert time.monotonic() < deadline, "the feed never subscribed"
                await asyncio.sleep(0.01)
            for path in ("/invoices", "/anything"):
                assert (await http.get(path, headers={"ApiKey": reader.value})).is_success
            assert auth.cached_entries == 2

            await admin.revoke_api_key(reader.uid)
            deadline = time.monotonic() + 5
            while auth.cached_entries:
                assert time.monotonic() < deadline, "the revoke did not reach the cache"
                await asyncio.sleep(0.01)
            for path in ("/invoices", "/anything"):
                refused = await http.get(path, headers={"ApiKey": reader.value})
                _refusal(refused, 401, "ApiKeyRevoked")
        await auth.aclose()
