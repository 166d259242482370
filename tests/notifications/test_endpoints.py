"""``/v1/users/me/notifications`` and ``/v1/users/me/notificationSettings``."""

from __future__ import annotations

import httpx

from keyplane.kit.db import transaction
from keyplane.models import User
from keyplane.runtime import Runtime
from tests.api_keys.helpers import make_api_key
from tests.helpers import World


async def test_each_person_lists_their_own_notifications_newest_first(
    client: httpx.AsyncClient, world: World
) -> None:
    first = await make_api_key(client, world.alice, "first")
    second = await make_api_key(client, world.alice, "second")
    for key in (first, second):
        response = await client.delete(f"/v1/apiKeys/{key.uid}", headers=world.admin.headers)
        assert response.status_code == 204

    response = await client.get("/v1/users/me/notifications", headers=world.alice.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["subject"] for item in body["items"]] == [
        "Your API key “second” was deleted",
        "Your API key “first” was deleted",
    ]
    item = body["items"][0]
    assert item["kind"] == "apiKey.deleted"
    assert item["keyUid"] == second.uid
    assert item["status"] == "pending"
    assert item["link"] == "https://keyplane.example/my/api-keys"
    assert item["createdAt"].endswith("Z")
    assert item["sentAt"] is None
    assert body["listmeta"]["count"] == 2
    assert first.value not in response.text
    assert second.value not in response.text

    paged = await client.get("/v1/users/me/notifications?limit=1", headers=world.alice.headers)
    assert [i["keyUid"] for i in paged.json()["items"]] == [second.uid]
    token = paged.json()["listmeta"]["continue"]
    rest = await client.get(
        f"/v1/users/me/notifications?limit=1&continue={token}", headers=world.alice.headers
    )
    assert [i["keyUid"] for i in rest.json()["items"]] == [first.uid]

    # Nobody else reads them, tenant admins included.
    for other in (world.bob, world.admin, world.other_admin):
        theirs = await client.get("/v1/users/me/notifications", headers=other.headers)
        assert theirs.status_code == 200
        assert theirs.json()["items"] == []


async def test_the_daily_digest_is_a_tenant_admins_choice(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    path = "/v1/users/me/notificationSettings"
    current = await client.get(path, headers=world.admin.headers)
    assert current.json() == {
        "expiryDigest": False,
        "expiryDigestAvailable": True,
        "emailEnabled": True,
    }
    on = await client.put(path, json={"expiryDigest": True}, headers=world.admin.headers)
    assert on.status_code == 204, on.text
    assert (await client.get(path, headers=world.admin.headers)).json()["expiryDigest"] is True

    refused = await client.put(path, json={"expiryDigest": True}, headers=world.alice.headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "Forbidden"
    assert "tenant admins" in refused.json()["message"]
    off = await client.put(path, json={"expiryDigest": False}, headers=world.alice.headers)
    assert off.status_code == 204
    assert (await client.get(path, headers=world.alice.headers)).json() == {
        "expiryDigest": False,
        "expiryDigestAvailable": False,
        "emailEnabled": True,
    }
    invalid = await client.put(path, json={"expiryDigest": "yes"}, headers=world.admin.headers)
    assert invalid.status_code == 422 or invalid.status_code == 400

    async with transaction(runtime.sessionmaker, writes=False) as session:
        admin = await session.get(User, world.admin.uid)
        alice = await session.get(User, world.alice.uid)
        assert admin is not None
        assert alice is not None
        assert (admin.expiry_digest, alice.expiry_digest) == (True, False)
