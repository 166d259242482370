"""The example service, protected by KeyplaneAuth, against a real Keyplane server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from examples.inventory_service.app import create_app
from starlette.types import Receive, Scope, Send

from keyplane.client import AsyncClient
from keyplane.client.asgi import KeyplaneAuth
from keyplane.settings import Settings
from tests.live import LiveServer, free_port, running_server

CACHE_SECONDS = 1.0


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[LiveServer]:
    async with running_server(settings) as live:
        yield live


async def _client_for(server: LiveServer, email: str, password: str) -> AsyncClient:
    return AsyncClient(server.url, email=email, org="acme", password=password)


async def test_revoked_key_is_refused_within_the_cache_time(server: LiveServer) -> None:
    world = server.world
    async with (
        await _client_for(server, world.admin.email, world.admin.password) as admin,
        await _client_for(server, world.alice.email, world.alice.password) as alice,
    ):
        verifier = await admin.create_api_key("inventory-verifier")
        caller = await alice.create_api_key("inventory-caller")
        auth = KeyplaneAuth(
            url=server.url, verifier_key=verifier.value, cache_seconds=CACHE_SECONDS
        )
        service = create_app(auth)
        transport = httpx.ASGITransport(app=service)
        async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as http:
            ok = await http.get("/items", headers={"ApiKey": caller.value})
            assert ok.status_code == 200
            assert ok.json()["requestedBy"] == world.alice.uid

            await alice.revoke_api_key(caller.uid)
            revoked_at = time.monotonic()
            while (await http.get("/items", headers={"ApiKey": caller.value})).status_code == 200:
                assert time.monotonic() - revoked_at < CACHE_SECONDS + 0.5
                await asyncio.sleep(0.05)
            refused = await http.get("/items", headers={"ApiKey": caller.value})
            assert refused.status_code == 401
            assert "ApiKeyRevoked" in refused.text
            assert caller.value not in refused.text

            assert (await http.get("/items")).status_code == 401
            malformed = await http.get("/items", headers={"ApiKey": "kp_typo"})
            assert malformed.status_code == 401
            assert "Malformed" in malformed.text
        await auth.aclose()


async def test_other_tenants_keys_are_unknown(server: LiveServer) -> None:
    world = server.world
    async with (
        await _client_for(server, world.admin.email, world.admin.password) as admin,
        AsyncClient(
            server.url,
            email=world.other_admin.email,
            org="globex",
            password=world.other_admin.password,
        ) as other,
    ):
        verifier = await admin.create_api_key("verifier")
        foreign = await other.create_api_key("globex-key")
        verdict = await admin.verify_api_key(foreign.value)
        assert (verdict.valid, verdict.code, verdict.key_uid) == (False, "NOT_FOUND", None)
        auth = KeyplaneAuth(url=server.url, verifier_key=verifier.value)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(auth)), base_url="http://inventory"
        ) as http:
            response = await http.get("/items", headers={"ApiKey": foreign.value})
            assert response.status_code == 401
        await auth.aclose()


async def test_unreachable_keyplane_refuses_with_503() -> None:
    auth = KeyplaneAuth(url=f"http://127.0.0.1:{free_port()}", verifier_key="kp_unused")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(auth)), base_url="http://inventory"
    ) as http:
        response = await http.get("/items", headers={"ApiKey": "kp_anything"})
    assert response.status_code == 503
    await auth.aclose()


async def test_middleware_mode_puts_the_caller_in_the_scope(server: LiveServer) -> None:
    world = server.world
    async with await _client_for(server, world.admin.email, world.admin.password) as admin:
        verifier = await admin.create_api_key("verifier")
        caller = await admin.create_api_key("caller")
    seen: list[object] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope.get("state"))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = KeyplaneAuth(
        inner, url=server.url, verifier_key=verifier.value, exempt_paths=("/healthz",)
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://svc"
    ) as http:
        assert (await http.get("/anything", headers={"ApiKey": caller.value})).status_code == 204
        assert (await http.get("/anything")).status_code == 401
        assert (await http.get("/healthz")).status_code == 204
    assert seen[0]["keyplane"].key_uid == caller.uid  # type: ignore[index]
    assert seen[1] is None
    await app.aclose()
