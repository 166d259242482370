"""POST /v1/apiKeys/verify: what a tenant's own services ask about a presented key."""

from __future__ import annotations

from typing import Any

import httpx

from keyplane.kit.keys import generate_api_key
from keyplane.runtime import Runtime
from tests.api_keys.helpers import CreatedKey, backdate_expiry, make_api_key
from tests.helpers import World


async def _verify(client: httpx.AsyncClient, verifier: CreatedKey, value: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/apiKeys/verify", json={"key": value}, headers=verifier.headers
    )
    assert response.status_code == 200, response.text
    assert value not in response.text
    body: dict[str, Any] = response.json()
    return body


async def test_every_verdict(client: httpx.AsyncClient, world: World, runtime: Runtime) -> None:
    verifier = await make_api_key(client, world.admin, "verifier")
    key = await make_api_key(client, world.alice, "caller")

    valid = await _verify(client, verifier, key.value)
    assert valid["valid"] is True
    assert valid["code"] == "VALID"
    assert (valid["keyUid"], valid["userUid"], valid["tenantUid"]) == (
        key.uid,
        world.alice.uid,
        world.alice.tenant_uid,
    )
    assert valid["expiry"].endswith("Z")
    assert runtime.last_used.pending >= 1

    await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.alice.headers
    )
    assert (await _verify(client, verifier, key.value))["code"] == "REVOKED"
    await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": True}, headers=world.alice.headers
    )

    await client.patch(
        f"/v1/users/{world.alice.uid}",
        json=[{"op": "replace", "path": "/status/isActive", "value": False}],
        headers=world.admin.headers,
    )
    assert (await _verify(client, verifier, key.value))["code"] == "USER_INACTIVE"
    await client.patch(
        f"/v1/users/{world.alice.uid}",
        json=[{"op": "replace", "path": "/status/isActive", "value": True}],
        headers=world.admin.headers,
    )

    await backdate_expiry(runtime, key.uid)
    assert (await _verify(client, verifier, key.value))["code"] == "EXPIRED"

    # Alice's sessions ended with her deactivation: her tenant admin deletes the key.
    deleted = await client.delete(f"/v1/apiKeys/{key.uid}", headers=world.admin.headers)
    assert deleted.status_code == 204, deleted.text
    gone = await _verify(client, verifier, key.value)
    assert (gone["valid"], gone["code"], gone["keyUid"]) == (False, "NOT_FOUND", None)
    assert (await _verify(client, verifier, generate_api_key()))["code"] == "NOT_FOUND"
    assert (await _verify(client, verifier, "kp_mistyped"))["code"] == "MALFORMED"
    assert (await _verify(client, verifier, "Bearer something"))["code"] == "MALFORMED"


async def test_another_tenants_key_reads_as_not_found(
    client: httpx.AsyncClient, world: World
) -> None:
    verifier = await make_api_key(client, world.admin, "verifier")
    foreign = await make_api_key(client, world.other_admin, "globex")
    verdict = await _verify(client, verifier, foreign.value)
    # Nothing about the key: every field past the code is null.
    assert verdict["valid"] is False
    assert verdict["code"] == "NOT_FOUND"
    assert {name: value for name, value in verdict.items() if name not in ("valid", "code")} == {
        name: None for name in verdict if name not in ("valid", "code")
    }


async def test_plain_users_cannot_verify(client: httpx.AsyncClient, world: World) -> None:
    own = await make_api_key(client, world.alice, "alices")
    response = await client.post("/v1/apiKeys/verify", json={"key": own.value}, headers=own.headers)
    assert response.status_code == 403
    assert response.json()["code"] == "Forbidden"


async def test_bad_verify_bodies_are_400(client: httpx.AsyncClient, world: World) -> None:
    verifier = await make_api_key(client, world.admin, "verifier")
    bodies: list[object] = [{}, {"key": 5}, {"key": "x" * 300}, []]
    for body in bodies:
        response = await client.post("/v1/apiKeys/verify", json=body, headers=verifier.headers)
        assert response.status_code == 400, body
