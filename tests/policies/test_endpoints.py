"""/v1/tenants/{tenantUid}/apiKeyPolicy: the tenant's rules for its keys, and their
enforcement when keys are created, edited, rotated and used."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from keyplane.kit.db import transaction
from keyplane.kit.time import utcnow
from keyplane.models import ApiKey
from keyplane.runtime import Runtime
from tests.api_keys.helpers import key_body, make_api_key
from tests.helpers import World
from tests.policies.helpers import policy_path, set_policy

INFO = "/v1/users/info"


async def test_defaults_and_who_may_read_and_change(
    client: httpx.AsyncClient, world: World
) -> None:
    shown = await client.get(policy_path(world.alice), headers=world.alice.headers)
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["maxLifetimeDays"] is None
    assert body["keyCreation"] == "everyone"
    assert body["expiryNoticeDays"] == [7, 1]
    assert body["effectiveMaxLifetimeDays"] == 365
    assert body["effectiveDefaultLifetimeDays"] == 30

    refused = await client.put(
        policy_path(world.alice), json={"maxLifetimeDays": 5}, headers=world.alice.headers
    )
    assert refused.status_code == 403
    other = await client.get(policy_path(world.admin), headers=world.other_admin.headers)
    assert other.status_code == 404
    assert other.json()["code"] == "TenantNotFound"
    violations = await client.get(
        policy_path(world.alice) + "/violations", headers=world.alice.headers
    )
    assert violations.status_code == 403


async def test_validation(client: httpx.AsyncClient, world: World) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"maxLifetimeDays": 400}, "PolicyMaxLifetimeTooLong"),
        ({"maxLifetimeDays": 10, "defaultLifetimeDays": 20}, "PolicyDefaultBeyondMax"),
        ({"allowedCidrs": ["10.0.0.1/8"]}, "InvalidAddressRange"),
        ({"allowedCidrs": []}, "PolicyRangesEmpty"),
        ({"expiryNoticeDays": [0]}, "PolicyNoticeDaysOutOfRange"),
        ({"expiryNoticeDays": [1, 2, 3, 4, 5, 6]}, "InvalidRequest"),
        ({"keyCreation": "nobody"}, "InvalidRequest"),
    ]
    for body, code in cases:
        response = await client.put(
            policy_path(world.admin), json=body, headers=world.admin.headers
        )
        assert response.status_code == 400, (body, response.text)
        if code != "InvalidRequest":
            assert response.json()["code"] == code, body


async def test_lifetimes_and_expiry_required(client: httpx.AsyncClient, world: World) -> None:
    saved = await set_policy(
        client, world.admin, maxLifetimeDays=10, defaultLifetimeDays=5, expiryNoticeDays=[1, 3, 3]
    )
    assert saved["expiryNoticeDays"] == [3, 1]
    before = utcnow()
    key = await make_api_key(client, world.alice, "default")
    view = (await client.get(f"/v1/apiKeys/{key.uid}", headers=world.alice.headers)).json()
    assert view["spec"]["expiry"][:13] == (before + timedelta(days=5)).isoformat()[:13]

    too_far = await client.post(
        "/v1/apiKeys",
        json=key_body("far", expiry=utcnow() + timedelta(days=20)),
        headers=world.alice.headers,
    )
    assert too_far.status_code == 400
    assert too_far.json()["code"] == "ApiKeyExpiryBeyondPolicy"
    extended = await client.put(
        f"/v1/apiKeys/{key.uid}",
        json={"spec": {"expiry": (utcnow() + timedelta(days=11)).isoformat()}},
        headers=world.alice.headers,
    )
    assert extended.status_code == 400
    assert extended.json()["code"] == "ApiKeyExpiryBeyondPolicy"

    await set_policy(client, world.admin, expiryRequired=True)
    required = await client.post(
        "/v1/apiKeys", json=key_body("no-expiry"), headers=world.alice.headers
    )
    assert required.status_code == 400
    assert required.json()["code"] == "ApiKeyExpiryRequired"
    await make_api_key(client, world.alice, "with", expiry=utcnow() + timedelta(days=3))


async def test_only_admins_create_keys_when_the_policy_says_so(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "before")
    await set_policy(client, world.admin, keyCreation="admins")
    refused = await client.post("/v1/apiKeys", json=key_body("mine"), headers=world.alice.headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "ApiKeyCreationAdminsOnly"
    await make_api_key(client, world.admin, "for-alice", user_uid=world.alice.uid)
    # Rotation replaces a key: its owner may still rotate it.
    rotated = await client.post(
        f"/v1/apiKeys/{key.uid}/rotate", json={"gracePeriodSeconds": 0}, headers=world.alice.headers
    )
    assert rotated.status_code == 201, rotated.text


async def test_tenant_ranges_bind_every_key(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    # The test client connects from 203.0.113.7.
    unbound = await make_api_key(client, world.alice, "unbound")
    own = await client.post(
        "/v1/apiKeys",
        json={"metadata": {"name": "own"}, "spec": {"allowedCidrs": ["203.0.113.0/24"]}},
        headers=world.alice.headers,
    )
    assert own.status_code == 201
    assert (await client.get(INFO, headers=unbound.headers)).status_code == 200

    await set_policy(client, world.admin, allowedCidrs=["198.51.100.0/24"])
    # Cached snapshots were dropped: both keys are now outside the tenant's ranges.
    for headers in (unbound.headers, {"ApiKey": own.json()["apiKey"]}):
        refused = await client.get(INFO, headers=headers)
        assert refused.status_code == 403
        assert refused.json()["code"] == "ApiKeyAddressDenied"
    verifier_key = await make_api_key(client, world.admin, "verifier")
    verdict = await client.post(
        "/v1/apiKeys/verify",
        json={"key": unbound.value, "clientAddress": "198.51.100.9"},
        headers={"ApiKey": verifier_key.value},
    )
    # The verifier's own key is outside the ranges too.
    assert verdict.status_code == 403

    outside = await client.post(
        "/v1/apiKeys",
        json={"metadata": {"name": "outside"}, "spec": {"allowedCidrs": ["10.0.0.0/8"]}},
        headers=world.alice.headers,
    )
    assert outside.status_code == 400
    assert outside.json()["code"] == "ApiKeyRangesBeyondPolicy"
    inside = await client.post(
        "/v1/apiKeys",
        json={"metadata": {"name": "inside"}, "spec": {"allowedCidrs": ["198.51.100.0/25"]}},
        headers=world.alice.headers,
    )
    assert inside.status_code == 201, inside.text

    await set_policy(client, world.admin, allowedCidrs=["203.0.113.0/24"])
    assert (await client.get(INFO, headers=unbound.headers)).status_code == 200


async def test_changes_are_audited_with_old_and_new_values(
    client: httpx.AsyncClient, world: World
) -> None:
    await set_policy(client, world.admin, maxLifetimeDays=90)
    await set_policy(client, world.admin, maxLifetimeDays=30, inactivityDays=60)
    # Saving the same policy again changes nothing, and records nothing.
    await set_policy(client, world.admin, maxLifetimeDays=30, inactivityDays=60)
    audits = await client.get(
        "/v1/audits", params={"resourceUid": world.admin.tenant_uid}, headers=world.admin.headers
    )
    items = [
        item
        for item in audits.json()["items"]
        if item["metadata"]["annotations"]["action"] == "tenantPolicy.update"
    ]
    assert len(items) == 2
    assert items[0]["spec"]["changes"] == {
        "maxLifetimeDays": {"old": 90, "new": 30},
        "inactivityDays": {"old": None, "new": 60},
    }
    assert items[1]["spec"]["changes"] == {"maxLifetimeDays": {"old": None, "new": 90}}


async def test_violations_are_listed(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    long_lived = await make_api_key(
        client, world.alice, "long", expiry=utcnow() + timedelta(days=200)
    )
    ranged = await client.post(
        "/v1/apiKeys",
        json={"metadata": {"name": "ranged"}, "spec": {"allowedCidrs": ["10.0.0.0/8"]}},
        headers=world.bob.headers,
    )
    idle = await make_api_key(client, world.bob, "idle")
    async with transaction(runtime.sessionmaker) as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.uid == idle.uid)
            .values(created_at=utcnow() - timedelta(days=100))
        )
    await make_api_key(client, world.alice, "fine")
    await set_policy(
        client,
        world.admin,
        maxLifetimeDays=90,
        allowedCidrs=["10.1.0.0/16", "203.0.113.0/24"],
        inactivityDays=30,
    )
    response = await client.get(
        policy_path(world.admin) + "/violations", headers=world.admin.headers
    )
    assert response.status_code == 200, response.text
    found = {item["keyUid"]: item["rules"] for item in response.json()["items"]}
    assert found == {
        long_lived.uid: ["maxLifetime"],
        ranged.json()["uid"]: ["allowedCidrs"],
        idle.uid: ["inactivity"],
    }
    item = next(i for i in response.json()["items"] if i["keyUid"] == long_lived.uid)
    assert item["ownerEmail"] == "alice@acme.example"
    assert item["name"] == "long"
    assert item["message"]


async def test_a_change_announces_each_key_it_newly_puts_outside_the_policy(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyplane.events import service as events
    from keyplane.policies import service

    announced: list[tuple[str, str, Any]] = []
    original = events.emit

    async def recording(*args: Any, **kwargs: Any) -> Any:
        announced.append((args[2].value, kwargs["api_key"].uid, kwargs.get("extra")))
        return await original(*args, **kwargs)

    monkeypatch.setattr(service, "emit", recording)
    long_lived = await make_api_key(
        client, world.alice, "long", expiry=utcnow() + timedelta(days=200)
    )
    await make_api_key(client, world.alice, "short", expiry=utcnow() + timedelta(days=5))
    await set_policy(client, world.admin, maxLifetimeDays=90)
    assert announced == [("apiKey.restrictedByPolicy", long_lived.uid, {"rules": ["maxLifetime"]})]
    # Tightened further: the key was already outside, and is not announced again.
    await set_policy(client, world.admin, maxLifetimeDays=60)
    assert len(announced) == 1
