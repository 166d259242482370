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
from keyplane.kit.key_refusals import BY_VERIFY_CODE
from keyplane.settings import Settings
from tests.api_keys.helpers import backdate_expiry
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


async def test_one_vocabulary_for_refused_keys(server: LiveServer) -> None:
    """Keyplane's API, its verify endpoint and a service protected by KeyplaneAuth say the
    same thing about the same key: the verify code, and the API's code and message, in
    Keyplane's error body."""
    world = server.world
    async with (
        await _client_for(server, world.admin.email, world.admin.password) as admin,
        await _client_for(server, world.alice.email, world.alice.password) as alice,
        await _client_for(server, world.bob.email, world.bob.password) as bob,
        httpx.AsyncClient(base_url=server.url) as keyplane,
    ):
        verifier = await admin.create_api_key("verifier")
        revoked = await alice.create_api_key("revoked")
        await alice.revoke_api_key(revoked.uid)
        expired = await alice.create_api_key("expired")
        await backdate_expiry(server.runtime, expired.uid)
        inactive = await bob.create_api_key("inactive")
        await admin.deactivate_user(world.bob.uid)
        deleted = await alice.create_api_key("deleted")
        await alice.delete_api_key(deleted.uid)
        cases = {
            "MALFORMED": "kp_typo",
            "NOT_FOUND": deleted.value,
            "REVOKED": revoked.value,
            "EXPIRED": expired.value,
            "USER_INACTIVE": inactive.value,
        }
        auth = KeyplaneAuth(url=server.url, verifier_key=verifier.value)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(auth)), base_url="http://inventory"
        ) as service:
            for verify_code, value in cases.items():
                verdict = await admin.verify_api_key(value)
                assert (verdict.valid, verdict.code) == (False, verify_code)
                direct = await keyplane.get("/v1/users/info", headers={"ApiKey": value})
                protected = await service.get("/items", headers={"ApiKey": value})
                for response in (direct, protected):
                    assert response.status_code == 401, response.text
                    body = response.json()
                    assert set(body) == {"code", "message", "details", "ref"}
                    assert body["ref"] == response.headers["x-request-id"]
                    assert body["code"] == BY_VERIFY_CODE[verify_code].api_code
                    assert value not in response.text
                assert protected.json()["message"] == direct.json()["message"], verify_code
        await auth.aclose()
