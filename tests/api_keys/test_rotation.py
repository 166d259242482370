"""POST /v1/apiKeys/{uid}/rotate: a new value, the old one kept for a grace period."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import update

from keyplane.kit.db import transaction
from keyplane.kit.invalidation import Invalidation, publish
from keyplane.kit.keys import is_well_formed_api_key
from keyplane.kit.time import rfc3339, utcnow
from keyplane.models import ApiKey
from keyplane.runtime import Runtime
from tests.api_keys.helpers import backdate_expiry, key_body, make_api_key
from tests.helpers import World
from tests.users.helpers import Actor

INFO = "/v1/users/info"


async def _rotate(
    client: httpx.AsyncClient, actor: Actor | dict[str, str], uid: str, grace: int = 0
) -> httpx.Response:
    headers = actor if isinstance(actor, dict) else actor.headers
    return await client.post(
        f"/v1/apiKeys/{uid}/rotate", json={"gracePeriodSeconds": grace}, headers=headers
    )


async def _get(client: httpx.AsyncClient, actor: Actor, uid: str) -> dict[str, Any]:
    response = await client.get(f"/v1/apiKeys/{uid}", headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _end_grace(runtime: Runtime, uid: str) -> None:
    """The grace period passes, as time passing would."""
    async with transaction(runtime.sessionmaker) as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.uid == uid)
            .values(rotation_grace_ends_at=utcnow() - timedelta(seconds=1))
        )
        await publish(session, Invalidation.key(uid))


async def test_rotate_keeps_the_old_key_for_the_grace_period_then_refuses_it(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    expiry = (utcnow() + timedelta(days=10)).replace(microsecond=0)
    old = await make_api_key(client, world.alice, "deploy", description="CI", expiry=expiry)
    assert (await client.get(INFO, headers=old.headers)).status_code == 200

    response = await _rotate(client, world.alice, old.uid, grace=3600)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"apiKey", "uid", "rotatedFrom", "graceEndsAt"}
    assert is_well_formed_api_key(body["apiKey"])
    assert body["rotatedFrom"] == old.uid
    new_headers = {"ApiKey": body["apiKey"]}

    # Both work during the grace period.
    assert (await client.get(INFO, headers=old.headers)).status_code == 200
    assert (await client.get(INFO, headers=new_headers)).status_code == 200

    new_view = await _get(client, world.alice, body["uid"])
    old_view = await _get(client, world.alice, old.uid)
    assert new_view["metadata"]["name"] == "deploy"
    assert new_view["metadata"]["annotations"] == {"description": "CI"}
    assert new_view["spec"]["expiry"] == rfc3339(expiry)
    assert new_view["status"]["rotatedFrom"] == old.uid
    assert body["apiKey"] not in new_view.__repr__()
    assert old_view["metadata"]["name"].startswith("deploy (rotated ")
    assert old_view["status"]["rotatedTo"] == body["uid"]
    assert old_view["status"]["rotationGraceEndsAt"] == body["graceEndsAt"]
    assert old_view["status"]["state"] == "active"

    await _end_grace(runtime, old.uid)
    refused = await client.get(INFO, headers=old.headers)
    assert refused.status_code == 401
    assert refused.json()["code"] == "ApiKeyRotated"
    assert "new key" in refused.json()["message"]
    assert (await client.get(INFO, headers=new_headers)).status_code == 200
    assert (await _get(client, world.alice, old.uid))["status"]["state"] == "rotated"
    listed = await client.get(
        "/v1/apiKeys", params={"userUid": world.alice.uid}, headers=world.alice.headers
    )
    assert {item["metadata"]["uid"] for item in listed.json()["items"]} == {old.uid, body["uid"]}

    verifier = await make_api_key(client, world.admin, "verifier")
    verdict = await client.post(
        "/v1/apiKeys/verify", json={"key": old.value}, headers=verifier.headers
    )
    assert verdict.json()["code"] == "ROTATED"
    assert verdict.json()["valid"] is False


async def test_grace_zero_stops_the_old_key_at_once_and_grace_never_outlives_expiry(
    client: httpx.AsyncClient, world: World
) -> None:
    old = await make_api_key(client, world.alice, "now")
    response = await _rotate(client, world.alice, old.uid, grace=0)
    assert response.status_code == 201, response.text
    refused = await client.get(INFO, headers=old.headers)
    assert refused.json()["code"] == "ApiKeyRotated"

    expiry = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    short = await make_api_key(client, world.alice, "short", expiry=expiry)
    rotated = await _rotate(client, world.alice, short.uid, grace=7 * 86400)
    assert rotated.status_code == 201, rotated.text
    assert rotated.json()["graceEndsAt"] == rfc3339(expiry)


async def test_the_new_key_carries_every_restriction(
    client: httpx.AsyncClient, world: World
) -> None:
    await client.post(
        "/v1/permissions",
        json={"metadata": {"name": "invoices.read"}},
        headers=world.admin.headers,
    )
    body = key_body("restricted", user_uid=world.alice.uid)
    body["spec"].update(
        {
            "scopes": ["apiKeys:read"],
            "allowedCidrs": ["203.0.113.0/24"],
            "rateLimits": [{"limit": 10, "windowSeconds": 60}],
            "credits": {"remaining": 5, "refill": {"interval": "daily", "amount": 5}},
            "ownerId": "cust-1",
            "meta": {"plan": "pro"},
        }
    )
    created = await client.post("/v1/apiKeys", json=body, headers=world.admin.headers)
    assert created.status_code == 201, created.text
    uid = created.json()["uid"]
    response = await _rotate(client, world.alice, uid, grace=60)
    assert response.status_code == 201, response.text
    old_spec = (await _get(client, world.admin, uid))["spec"]
    new_spec = (await _get(client, world.admin, response.json()["uid"]))["spec"]
    assert new_spec == old_spec


async def test_revoked_expired_and_rotated_keys_are_refused(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    revoked = await make_api_key(client, world.alice, "revoked")
    await client.patch(
        f"/v1/apiKeys/{revoked.uid}", json={"isActive": False}, headers=world.alice.headers
    )
    expired = await make_api_key(client, world.alice, "expired")
    await backdate_expiry(runtime, expired.uid)
    rotated = await make_api_key(client, world.alice, "rotated")
    assert (await _rotate(client, world.alice, rotated.uid, grace=600)).status_code == 201

    for uid, code in (
        (revoked.uid, "ApiKeyRevoked"),
        (expired.uid, "ApiKeyExpired"),
        (rotated.uid, "ApiKeyAlreadyRotated"),
    ):
        response = await _rotate(client, world.alice, uid)
        assert response.status_code == 409, response.text
        assert response.json()["code"] == code

    too_long = await _rotate(
        client, world.alice, (await make_api_key(client, world.alice, "x")).uid, 8 * 86400
    )
    assert too_long.status_code == 400
    assert too_long.json()["code"] == "RotationGraceOutOfRange"
    negative = await _rotate(client, world.alice, rotated.uid, -1)
    assert negative.status_code == 400


async def test_who_may_rotate(client: httpx.AsyncClient, world: World) -> None:
    key = await make_api_key(client, world.alice, "alices")
    assert (await _rotate(client, world.bob, key.uid)).status_code == 404
    assert (await _rotate(client, world.other_admin, key.uid)).status_code == 404
    by_admin = await _rotate(client, world.admin, key.uid, grace=60)
    assert by_admin.status_code == 201, by_admin.text

    # A scoped key cannot obtain the value of a broader key by rotating it.
    broad = await make_api_key(client, world.alice, "broad")
    scoped = await client.post(
        "/v1/apiKeys",
        json={"metadata": {"name": "scoped"}, "spec": {"scopes": ["apiKeys:write"]}},
        headers=world.alice.headers,
    )
    refused = await _rotate(client, {"ApiKey": scoped.json()["apiKey"]}, broad.uid)
    assert refused.status_code == 403
    assert refused.json()["code"] == "ApiKeyScopeEscalation"
    itself = await _rotate(client, {"ApiKey": scoped.json()["apiKey"]}, scoped.json()["uid"], 60)
    assert itself.status_code == 201, itself.text


async def test_rotation_is_audited(client: httpx.AsyncClient, world: World) -> None:
    key = await make_api_key(client, world.alice, "audited")
    response = await _rotate(client, world.admin, key.uid, grace=60)
    new_uid = response.json()["uid"]
    audits = await client.get(
        "/v1/audits", params={"resourceUid": key.uid}, headers=world.admin.headers
    )
    assert audits.status_code == 200, audits.text
    items = audits.json()["items"]
    assert [item["metadata"]["annotations"]["action"] for item in items] == [
        "apiKey.rotate",
        "apiKey.create",
    ]
    rotation = items[0]
    assert rotation["spec"]["resource"]["uid"] == key.uid
    assert new_uid in rotation["spec"]["contentMsg"]
    assert rotation["spec"]["changes"]["rotatedTo"] == {"old": None, "new": new_uid}
    assert response.json()["apiKey"] not in audits.text
