"""Rules that a check-then-write could break under concurrency hold on both databases."""

from __future__ import annotations

import asyncio

import httpx

from tests.api_keys.helpers import key_body, make_api_key
from tests.helpers import World


async def test_concurrent_creates_with_one_name_make_one_key(
    client: httpx.AsyncClient, world: World
) -> None:
    responses = await asyncio.gather(
        *(
            client.post("/v1/apiKeys", json=key_body("same"), headers=world.alice.headers)
            for _ in range(4)
        )
    )
    assert sorted(response.status_code for response in responses) == [201, 409, 409, 409]
    listed = await client.get("/v1/apiKeys", headers=world.alice.headers)
    assert len(listed.json()["items"]) == 1


async def test_concurrent_creates_never_pass_the_limit(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.patch(
        f"/v1/tenants/{world.admin.tenant_uid}/resourceLimits",
        json={"resources": [{"kind": "apiKey", "limit": 3}]},
        headers=world.admin.headers,
    )
    assert response.status_code == 204
    responses = await asyncio.gather(
        *(
            client.post("/v1/apiKeys", json=key_body(f"k{i}"), headers=world.alice.headers)
            for i in range(8)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 3 + [409] * 5
    listed = await client.get("/v1/apiKeys", headers=world.alice.headers)
    assert len(listed.json()["items"]) == 3


async def test_concurrent_revoke_and_delete_end_consistently(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "contested")
    revoke, delete = await asyncio.gather(
        client.patch(
            f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.admin.headers
        ),
        client.delete(f"/v1/apiKeys/{key.uid}", headers=world.alice.headers),
    )
    assert delete.status_code == 204
    assert revoke.status_code in {204, 404}
    assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 401
    gone = await client.get(f"/v1/apiKeys/{key.uid}", headers=world.admin.headers)
    assert gone.status_code == 404
