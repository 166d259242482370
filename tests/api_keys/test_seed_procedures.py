"""The seed pages' procedures (revoke, re-activate, delete; User and Tenant tabs), each
with its Validate step, through the REST API: the table shows the new state and the key
authenticates exactly when it should."""

from __future__ import annotations

import httpx

from tests.api_keys.helpers import key_state, make_api_key
from tests.helpers import World


async def _authenticates(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    return (await client.get("/v1/users/info", headers=headers)).status_code


async def test_user_revokes_own_key(client: httpx.AsyncClient, world: World) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    assert await _authenticates(client, key.headers) == 200

    response = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.alice.headers
    )
    assert response.status_code == 204
    assert await key_state(client, world.alice, key.uid) is False
    revoked = await client.get("/v1/users/info", headers=key.headers)
    assert revoked.status_code == 401
    assert revoked.json()["code"] == "ApiKeyRevoked"
    assert key.value not in revoked.text


async def test_user_reactivates_own_key(client: httpx.AsyncClient, world: World) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    await client.put(
        f"/v1/apiKeys/{key.uid}/state", json={"isActive": False}, headers=world.alice.headers
    )
    response = await client.put(
        f"/v1/apiKeys/{key.uid}/state", json={"isActive": True}, headers=world.alice.headers
    )
    assert response.status_code == 204
    assert await key_state(client, world.alice, key.uid) is True
    assert await _authenticates(client, key.headers) == 200


async def test_user_deletes_own_key(client: httpx.AsyncClient, world: World) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    response = await client.delete(f"/v1/apiKeys/{key.uid}", headers=world.alice.headers)
    assert response.status_code == 204
    assert await key_state(client, world.alice, key.uid) is None
    assert await _authenticates(client, key.headers) == 401


async def test_tenant_admin_revokes_a_users_key(client: httpx.AsyncClient, world: World) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    response = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.admin.headers
    )
    assert response.status_code == 204
    assert await key_state(client, world.admin, key.uid) is False
    assert await _authenticates(client, key.headers) == 401


async def test_tenant_admin_reactivates_a_users_key(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.admin.headers
    )
    response = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": True}, headers=world.admin.headers
    )
    assert response.status_code == 204
    assert await key_state(client, world.admin, key.uid) is True
    assert await _authenticates(client, key.headers) == 200


async def test_tenant_admin_deletes_a_users_key(client: httpx.AsyncClient, world: World) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    response = await client.delete(f"/v1/apiKeys/{key.uid}", headers=world.admin.headers)
    assert response.status_code == 204
    assert await key_state(client, world.admin, key.uid) is None
    assert await key_state(client, world.alice, key.uid) is None
    assert await _authenticates(client, key.headers) == 401
