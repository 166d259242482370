"""Keys narrower than their owners: scopes, permissions, address ranges, rate limits,
credits, owner id and metadata, on Keyplane's API and through verify."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from keyplane.app import create_app
from keyplane.kit.db import transaction
from keyplane.kit.invalidation import Invalidation, publish
from keyplane.kit.time import utcnow
from keyplane.models import ApiKey, AuditEvent
from keyplane.runtime import Runtime
from tests.api_keys.helpers import CreatedKey
from tests.conftest import make_settings
from tests.helpers import World, build_world
from tests.permissions.helpers import make_permission, make_role
from tests.users.helpers import Actor, login

VERIFY = "/v1/apiKeys/verify"
INFO = "/v1/users/info"


async def create_key(
    client: httpx.AsyncClient,
    actor: Actor,
    name: str,
    *,
    headers: dict[str, str] | None = None,
    **spec: Any,
) -> CreatedKey:
    response = await client.post(
        "/v1/apiKeys",
        json={"metadata": {"name": name}, "spec": spec},
        headers=headers or actor.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return CreatedKey(uid=body["uid"], value=body["apiKey"])


async def refused_create(
    client: httpx.AsyncClient, headers: dict[str, str], **spec: Any
) -> httpx.Response:
    response = await client.post(
        "/v1/apiKeys", json={"metadata": {"name": "refused"}, "spec": spec}, headers=headers
    )
    assert response.status_code in (400, 403), response.text
    return response


async def read_key(client: httpx.AsyncClient, actor: Actor, uid: str) -> dict[str, Any]:
    response = await client.get(f"/v1/apiKeys/{uid}", headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def verify(
    client: httpx.AsyncClient, verifier: CreatedKey, key: CreatedKey, **extra: Any
) -> dict[str, Any]:
    response = await client.post(VERIFY, json={"key": key.value, **extra}, headers=verifier.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def admin_key(client: httpx.AsyncClient, world: World) -> CreatedKey:
    return await create_key(client, world.admin, "verifier")


async def test_a_key_without_restrictions_reads_as_before(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await create_key(client, world.alice, "plain")
    spec = (await read_key(client, world.alice, key.uid))["spec"]
    assert spec["scopes"] is None
    assert spec["allowedCidrs"] is None
    assert (spec["permissions"], spec["permissionRoles"], spec["rateLimits"]) == ([], [], [])
    assert (spec["credits"], spec["ownerId"], spec["meta"]) == (None, None, None)
    assert (await read_key(client, world.alice, key.uid))["status"]["restricted"] is False
    assert (await client.get(INFO, headers=key.headers)).status_code == 200


async def test_every_restriction_is_stored_shown_and_audited(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    await make_permission(client, world.admin, "invoices.read")
    await make_role(client, world.admin, "billing", ["invoices.read"])
    key = await create_key(
        client,
        world.admin,
        "everything",
        userUid=world.alice.uid,
        scopes=["apiKeys:read", "apiKeys:read"],
        permissions=["invoices.read"],
        permissionRoles=["billing"],
        allowedCidrs=["10.0.0.0/8", "2001:db8::/32"],
        rateLimits=[
            {"limit": 10, "windowSeconds": 1},
            {"name": "daily", "limit": 1000, "windowSeconds": 86400},
        ],
        credits={"remaining": 500, "refill": {"interval": "monthly", "amount": 500, "day": 15}},
        ownerId="cus_42",
        meta={"plan": "pro", "seats": [1, 2]},
    )
    body = await read_key(client, world.alice, key.uid)
    spec = body["spec"]
    assert spec["scopes"] == ["apiKeys:read"]
    assert spec["permissions"] == ["invoices.read"]
    assert spec["permissionRoles"] == ["billing"]
    assert spec["allowedCidrs"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert spec["rateLimits"] == [
        {"name": "10/1s", "limit": 10, "windowSeconds": 1},
        {"name": "daily", "limit": 1000, "windowSeconds": 86400},
    ]
    assert spec["credits"]["remaining"] == 500
    assert spec["credits"]["refill"] == {"interval": "monthly", "amount": 500, "day": 15}
    assert spec["credits"]["nextRefillAt"] == "2026-12-15T00:00:00.000Z" or spec["credits"][
        "nextRefillAt"
    ].endswith("-15T00:00:00.000Z")
    assert (spec["ownerId"], spec["meta"]) == ("cus_42", {"plan": "pro", "seats": [1, 2]})
    assert body["status"]["restricted"] is True

    async with transaction(runtime.sessionmaker, writes=False) as session:
        event = (
            await session.execute(
                select(AuditEvent).where(
                    AuditEvent.resource_uid == key.uid, AuditEvent.action == "apiKey.create"
                )
            )
        ).scalar_one()
    assert event.changes is not None
    assert event.changes["scopes"] == {"old": None, "new": ["apiKeys:read"]}
    assert event.changes["ownerId"] == {"old": None, "new": "cus_42"}
    assert key.value not in str(event.changes)


async def test_an_edit_changes_and_removes_restrictions_with_old_and_new_values_audited(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await create_key(
        client, world.admin, "edited", scopes=["apiKeys:read"], allowedCidrs=["10.0.0.0/8"]
    )
    response = await client.put(
        f"/v1/apiKeys/{key.uid}",
        json={"spec": {"scopes": None, "allowedCidrs": ["192.168.0.0/16"], "ownerId": "c1"}},
        headers=world.admin.headers,
    )
    assert response.status_code == 204, response.text
    spec = (await read_key(client, world.admin, key.uid))["spec"]
    assert (spec["scopes"], spec["allowedCidrs"], spec["ownerId"]) == (
        None,
        ["192.168.0.0/16"],
        "c1",
    )
    # Left out: kept.
    response = await client.put(
        f"/v1/apiKeys/{key.uid}",
        json={"metadata": {"name": "renamed"}},
        headers=world.admin.headers,
    )
    assert response.status_code == 204
    assert (await read_key(client, world.admin, key.uid))["spec"]["allowedCidrs"] == [
        "192.168.0.0/16"
    ]
    audits = await client.get(
        "/v1/audits", params={"resourceUid": key.uid}, headers=world.admin.headers
    )
    changes = [
        item["spec"]["changes"]
        for item in audits.json()["items"]
        if item["metadata"]["annotations"]["action"] == "apiKey.update"
        and item["spec"].get("changes")
    ]
    assert {
        "scopes": {"old": ["apiKeys:read"], "new": None},
        "allowedCidrs": {"old": ["10.0.0.0/8"], "new": ["192.168.0.0/16"]},
        "ownerId": {"old": None, "new": "c1"},
    } in changes


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ({"scopes": ["everything"]}, "InvalidRequest"),
        ({"allowedCidrs": ["10.0.0.1/8"]}, "InvalidAddressRange"),
        ({"allowedCidrs": ["not-a-range"]}, "InvalidAddressRange"),
        ({"rateLimits": [{"limit": 0, "windowSeconds": 1}]}, "InvalidRequest"),
        (
            {"rateLimits": [{"name": "a", "limit": 1, "windowSeconds": 1}] * 2},
            "DuplicateRateLimit",
        ),
        ({"credits": {"remaining": -1}}, "InvalidRequest"),
        (
            {"credits": {"remaining": 1, "refill": {"interval": "weekly", "amount": 1}}},
            "InvalidRequest",
        ),
        ({"meta": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}, "InvalidRequest"),
        ({"meta": {"big": "x" * 5000}}, "InvalidRequest"),
        ({"permissions": ["undefined.permission"]}, "UnknownPermission"),
        ({"permissionRoles": ["no-such-role"]}, "UnknownPermissionRole"),
        ({"ownerId": "tab\there"}, "InvalidRequest"),
    ],
)
async def test_malformed_restrictions_are_refused_and_store_nothing(
    client: httpx.AsyncClient, world: World, spec: dict[str, Any], code: str
) -> None:
    response = await refused_create(client, world.admin.headers, **spec)
    assert response.status_code == 400
    assert response.json()["code"] == code, response.text
    listed = await client.get("/v1/apiKeys", headers=world.admin.headers)
    assert "refused" not in [item["metadata"]["name"] for item in listed.json()["items"]]


async def test_a_key_never_gets_a_scope_its_owner_lacks(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await refused_create(client, world.alice.headers, scopes=["users:write"])
    assert response.json()["code"] == "ScopeNotHeld"
    assert response.json()["details"]["scopes"] == ["users:write"]
    # The owner may narrow its own key.
    await create_key(client, world.alice, "narrow", scopes=["apiKeys:read"])


@pytest.mark.parametrize(
    "spec",
    [
        {"rateLimits": [{"limit": 5, "windowSeconds": 1}]},
        {"credits": {"remaining": 10}},
        {"ownerId": "someone-else"},
        {"meta": {"plan": "free"}},
    ],
)
async def test_what_the_tenant_relies_on_is_set_by_tenant_admins_only(
    client: httpx.AsyncClient, world: World, spec: dict[str, Any]
) -> None:
    response = await refused_create(client, world.alice.headers, **spec)
    assert response.status_code == 403
    assert response.json()["code"] == "TenantAdminOnly"
    # Nor on a key a tenant admin made for them.
    key = await create_key(client, world.admin, "for-alice", userUid=world.alice.uid)
    response = await client.put(
        f"/v1/apiKeys/{key.uid}", json={"spec": spec}, headers=world.alice.headers
    )
    assert response.status_code == 403
    assert response.json()["code"] == "TenantAdminOnly"


async def test_a_user_may_rename_a_key_a_tenant_admin_limited(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await create_key(
        client,
        world.admin,
        "limited",
        userUid=world.alice.uid,
        rateLimits=[{"limit": 5, "windowSeconds": 1}],
        credits={"remaining": 3},
    )
    response = await client.put(
        f"/v1/apiKeys/{key.uid}",
        json={"metadata": {"name": "mine now"}, "spec": {"scopes": ["apiKeys:read"]}},
        headers=world.alice.headers,
    )
    assert response.status_code == 204, response.text
    spec = (await read_key(client, world.alice, key.uid))["spec"]
    assert spec["credits"]["remaining"] == 3
    assert spec["scopes"] == ["apiKeys:read"]


async def test_scopes_are_enforced_on_every_operation_and_named_in_the_refusal(
    client: httpx.AsyncClient, world: World
) -> None:
    reader = await create_key(client, world.admin, "reader", scopes=["apiKeys:read"])
    assert (await client.get("/v1/apiKeys", headers=reader.headers)).status_code == 200
    assert (await client.get(INFO, headers=reader.headers)).status_code == 200
    refused = await client.post(
        "/v1/apiKeys", json={"metadata": {"name": "x"}}, headers=reader.headers
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "ApiKeyScopeMissing"
    assert refused.json()["details"] == {"scope": "apiKeys:write"}
    for method, path in (("GET", "/v1/users"), ("GET", "/v1/audits")):
        response = await client.request(method, path, headers=reader.headers)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["code"] == "ApiKeyScopeMissing"
    answer = await client.post(VERIFY, json={"key": reader.value}, headers=reader.headers)
    assert answer.status_code == 403
    assert answer.json()["details"] == {"scope": "verify"}
    # No scopes at all: only "who am I".
    nothing = await create_key(client, world.admin, "nothing", scopes=[])
    assert (await client.get(INFO, headers=nothing.headers)).status_code == 200
    assert (await client.get("/v1/apiKeys", headers=nothing.headers)).status_code == 403


async def test_a_scoped_key_follows_its_owner_s_role(
    client: httpx.AsyncClient, world: World
) -> None:
    promoted = await client.patch(
        f"/v1/users/{world.bob.uid}",
        json=[{"op": "replace", "path": "/spec/roles", "value": ["tenant-admin"]}],
        headers=world.admin.headers,
    )
    assert promoted.status_code == 204, promoted.text
    await login(client, world.bob)
    key = await create_key(client, world.bob, "auditor", scopes=["audit:read"])
    assert (await client.get("/v1/audits", headers=key.headers)).status_code == 200
    demoted = await client.patch(
        f"/v1/users/{world.bob.uid}",
        json=[{"op": "replace", "path": "/spec/roles", "value": ["user"]}],
        headers=world.admin.headers,
    )
    assert demoted.status_code == 204, demoted.text
    # The scope is still on the key; its owner no longer holds the right.
    assert (await client.get("/v1/audits", headers=key.headers)).status_code == 403


async def test_a_key_cannot_make_a_key_broader_than_itself(
    client: httpx.AsyncClient, world: World
) -> None:
    maker = await create_key(
        client,
        world.admin,
        "maker",
        scopes=["apiKeys:read", "apiKeys:write"],
        allowedCidrs=["203.0.113.0/24"],
    )
    for spec, code in (
        ({"scopes": ["users:read"]}, "ApiKeyScopeEscalation"),
        ({"scopes": ["apiKeys:read"], "allowedCidrs": ["0.0.0.0/0"]}, "ApiKeyRangeEscalation"),
    ):
        response = await refused_create(client, maker.headers, **spec)
        assert response.status_code == 403
        assert response.json()["code"] == code
    child = await create_key(client, world.admin, "child", headers=maker.headers)
    spec = (await read_key(client, world.admin, child.uid))["spec"]
    assert spec["scopes"] == ["apiKeys:read", "apiKeys:write"]
    assert spec["allowedCidrs"] == ["203.0.113.0/24"]
    narrower = await create_key(
        client,
        world.admin,
        "narrower",
        headers=maker.headers,
        scopes=["apiKeys:read"],
        allowedCidrs=["203.0.113.7/32"],
    )
    assert (await read_key(client, world.admin, narrower.uid))["spec"]["scopes"] == ["apiKeys:read"]


async def test_address_ranges_hold_on_the_api_and_in_verify(
    client: httpx.AsyncClient, world: World, admin_key: CreatedKey
) -> None:
    # The test transport's client is 203.0.113.7.
    outside = await create_key(client, world.admin, "outside", allowedCidrs=["10.0.0.0/8"])
    inside = await create_key(client, world.admin, "inside", allowedCidrs=["203.0.113.0/24"])
    refused = await client.get(INFO, headers=outside.headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "ApiKeyAddressDenied"
    assert (await client.get(INFO, headers=inside.headers)).status_code == 200

    assert (await verify(client, admin_key, outside))["code"] == "FORBIDDEN_ADDRESS"
    answer = await verify(client, admin_key, outside, clientAddress="10.1.2.3")
    assert (answer["valid"], answer["code"]) == (True, "VALID")
    answer = await verify(client, admin_key, outside, clientAddress="::ffff:10.1.2.3")
    assert answer["code"] == "VALID"
    assert (await verify(client, admin_key, outside, clientAddress="11.0.0.1"))["code"] == (
        "FORBIDDEN_ADDRESS"
    )
    bad = await client.post(
        VERIFY, json={"key": outside.value, "clientAddress": "nowhere"}, headers=admin_key.headers
    )
    assert bad.status_code == 400


async def test_verify_answers_permissions_and_checks_a_permission_query(
    client: httpx.AsyncClient, world: World, admin_key: CreatedKey
) -> None:
    for name in ("invoices.read", "invoices.write", "admin"):
        await make_permission(client, world.admin, name)
    await make_role(client, world.admin, "writer", ["invoices.write"])
    key = await create_key(
        client,
        world.admin,
        "service",
        permissions=["invoices.read"],
        permissionRoles=["writer"],
        ownerId="cus_7",
        meta={"plan": "pro"},
    )
    answer = await verify(client, admin_key, key)
    assert answer["permissions"] == ["invoices.read", "invoices.write"]
    assert (answer["ownerId"], answer["meta"]) == ("cus_7", {"plan": "pro"})
    query = "invoices.read AND (invoices.write OR admin)"
    assert (await verify(client, admin_key, key, permissions=query))["code"] == "VALID"
    refused = await verify(client, admin_key, key, permissions="invoices.read AND admin")
    assert (refused["valid"], refused["code"]) == (False, "INSUFFICIENT_PERMISSIONS")
    assert refused["missingPermissions"] == ["admin"]
    malformed = await client.post(
        VERIFY,
        json={"key": key.value, "permissions": "invoices.read AND"},
        headers=admin_key.headers,
    )
    assert malformed.status_code == 400
    assert "permission query" in malformed.text

    # A role's change reaches the cached answer before the change answers.
    roles = await client.get("/v1/permissionRoles", headers=world.admin.headers)
    writer = next(item for item in roles.json()["items"] if item["metadata"]["name"] == "writer")
    changed = await client.put(
        f"/v1/permissionRoles/{writer['metadata']['uid']}",
        json={"metadata": {"name": "writer"}, "spec": {"permissions": ["admin"]}},
        headers=world.admin.headers,
    )
    assert changed.status_code == 204, changed.text
    assert (await verify(client, admin_key, key))["permissions"] == ["admin", "invoices.read"]


async def test_rate_limits_answer_429_on_the_api_and_rate_limited_from_verify(
    client: httpx.AsyncClient, world: World, admin_key: CreatedKey, runtime: Runtime
) -> None:
    key = await create_key(
        client, world.admin, "limited", rateLimits=[{"limit": 3, "windowSeconds": 3600}]
    )
    for _ in range(2):
        assert (await client.get(INFO, headers=key.headers)).status_code == 200
    answer = await verify(client, admin_key, key)
    assert answer["code"] == "VALID"
    assert answer["rateLimit"]["remaining"] == 0
    assert answer["rateLimit"]["name"] == "3/3600s"
    refused = await client.get(INFO, headers=key.headers)
    assert refused.status_code == 429
    assert refused.json()["code"] == "ApiKeyRateLimited"
    assert int(refused.headers["retry-after"]) >= 1
    limited = await verify(client, admin_key, key)
    assert (limited["valid"], limited["code"]) == (False, "RATE_LIMITED")
    assert limited["rateLimit"]["resetAt"]
    assert await runtime.limiter.recent_refusals(key.uid) == 2


async def test_credits_are_spent_by_verify_and_refuse_the_key_everywhere_at_zero(
    client: httpx.AsyncClient, world: World, admin_key: CreatedKey
) -> None:
    key = await create_key(client, world.admin, "metered", credits={"remaining": 3})
    assert (await verify(client, admin_key, key))["remaining"] == 2
    assert (await verify(client, admin_key, key, cost=0))["remaining"] == 2
    assert (await verify(client, admin_key, key, cost=2))["remaining"] == 0
    assert (await client.get(INFO, headers=key.headers)).status_code == 403
    answer = await verify(client, admin_key, key)
    assert (answer["valid"], answer["code"]) == (False, "USAGE_EXCEEDED")
    assert (await read_key(client, world.admin, key.uid))["spec"]["credits"]["remaining"] == 0
    refused = await client.get(INFO, headers=key.headers)
    assert refused.json()["code"] == "ApiKeyUsageExceeded"
    # A tenant admin tops it up.
    topped = await client.put(
        f"/v1/apiKeys/{key.uid}",
        json={"spec": {"credits": {"remaining": 1}}},
        headers=world.admin.headers,
    )
    assert topped.status_code == 204
    assert (await client.get(INFO, headers=key.headers)).status_code == 200
    assert (await verify(client, admin_key, key))["remaining"] == 0


async def test_a_refill_owed_is_applied_by_the_next_spend(
    client: httpx.AsyncClient, world: World, admin_key: CreatedKey, runtime: Runtime
) -> None:
    key = await create_key(
        client,
        world.admin,
        "daily",
        credits={"remaining": 1, "refill": {"interval": "daily", "amount": 5}},
    )
    assert (await verify(client, admin_key, key))["remaining"] == 0
    assert (await verify(client, admin_key, key))["code"] == "USAGE_EXCEEDED"
    # Yesterday's refill time has passed since: the next spend refills first.
    async with transaction(runtime.sessionmaker) as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.uid == key.uid)
            .values(credits_refilled_at=utcnow() - timedelta(days=1, seconds=1))
        )
        await publish(session, Invalidation.key(key.uid))
    assert (await client.get(INFO, headers=key.headers)).status_code == 200
    assert (await verify(client, admin_key, key))["remaining"] == 4


async def test_concurrent_verifies_through_two_instances_spend_credits_exactly(
    database_url: str, tmp_path: Path
) -> None:
    """200 verifies at once through two instances on one database, 50 credits: exactly 50
    are valid and the count ends at zero, never below."""
    async with AsyncExitStack() as stack:
        clients: list[httpx.AsyncClient] = []
        runtimes: list[Runtime] = []
        for _ in range(2):
            app = create_app(make_settings(database_url, tmp_path, auth_failure_burst=100_000))
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4000))
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://kp.test")
                )
            )
            runtimes.append(app.state.runtime)
        world = await build_world(clients[0], runtimes[0])
        verifier = await create_key(clients[0], world.admin, "verifier")
        key = await create_key(clients[0], world.admin, "fifty", credits={"remaining": 50})

        async def one(index: int) -> str:
            answer = await verify(clients[index % 2], verifier, key)
            return str(answer["code"])

        codes = await asyncio.gather(*(one(index) for index in range(200)))
        assert codes.count("VALID") == 50
        assert codes.count("USAGE_EXCEEDED") == 150
        async with transaction(runtimes[1].sessionmaker, writes=False) as session:
            left = (
                await session.execute(select(ApiKey.credits_remaining).where(ApiKey.uid == key.uid))
            ).scalar_one()
        assert left == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_rate_limits_hold_across_instances_with_redis(
    database_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with AsyncExitStack() as stack:
        clients: list[httpx.AsyncClient] = []
        runtimes: list[Runtime] = []
        for _ in range(2):
            settings = make_settings(
                database_url, tmp_path, redis_url=redis_url, redis_key_prefix=redis_prefix
            )
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4000))
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://kp.test")
                )
            )
            runtimes.append(app.state.runtime)
        assert runtimes[0].limiter.shared
        world = await build_world(clients[0], runtimes[0])
        key = await create_key(
            clients[0], world.admin, "shared", rateLimits=[{"limit": 10, "windowSeconds": 3600}]
        )
        statuses = [
            (await clients[index % 2].get(INFO, headers=key.headers)).status_code
            for index in range(30)
        ]
        assert statuses.count(200) == 10
        assert statuses.count(429) == 20
        assert await runtimes[1].limiter.recent_refusals(key.uid) == 20


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_unreachable_redis_lets_rate_limited_keys_through_but_never_a_revoked_one(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        database_url, tmp_path, redis_url="redis://127.0.0.1:1/0", redis_timeout_seconds=0.2
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://kp.test") as client:
            runtime: Runtime = app.state.runtime
            world = await build_world(client, runtime)
            key = await create_key(
                client, world.admin, "limited", rateLimits=[{"limit": 1, "windowSeconds": 3600}]
            )
            for _ in range(3):
                assert (await client.get(INFO, headers=key.headers)).status_code == 200
            assert runtime.limiter.unavailable_total >= 3
            scraped = await client.get("/metrics")
            if scraped.status_code == 200:
                assert "keyplane_rate_limit_store_unavailable_total" in scraped.text
            revoked = await client.patch(
                f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.admin.headers
            )
            assert revoked.status_code == 204
            refused = await client.get(INFO, headers=key.headers)
            assert refused.status_code == 401
            assert refused.json()["code"] == "ApiKeyRevoked"


async def test_keys_are_listed_by_owner_id_scope_and_permission(
    client: httpx.AsyncClient, world: World
) -> None:
    await make_permission(client, world.admin, "invoices.read")
    await make_permission(client, world.admin, "invoices_read")
    first = await create_key(
        client,
        world.admin,
        "first",
        ownerId="cus_1",
        scopes=["apiKeys:read"],
        permissions=["invoices.read"],
    )
    second = await create_key(
        client,
        world.admin,
        "second",
        ownerId="cus_2",
        scopes=["apiKeys:write"],
        permissions=["invoices_read"],
    )
    await create_key(client, world.admin, "plain")

    async def listed(**params: str) -> set[str]:
        response = await client.get("/v1/apiKeys", params=params, headers=world.admin.headers)
        assert response.status_code == 200, response.text
        return {item["metadata"]["uid"] for item in response.json()["items"]}

    assert await listed(ownerId="cus_1") == {first.uid}
    assert await listed(scope="apiKeys:read") == {first.uid}
    assert await listed(scope="apiKeys:write") == {second.uid}
    # "_" is a LIKE wildcard: it must not match the "." of invoices.read.
    assert await listed(permission="invoices_read") == {second.uid}
    assert await listed(permission="invoices.read") == {first.uid}
    bad = await client.get("/v1/apiKeys", params={"scope": "nope"}, headers=world.admin.headers)
    assert bad.status_code == 400


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_failed_authentications_are_counted_across_instances_with_redis(
    database_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """One address trying keys through two instances spends one budget, not one each."""
    async with AsyncExitStack() as stack:
        clients: list[httpx.AsyncClient] = []
        for _ in range(2):
            settings = make_settings(
                database_url,
                tmp_path,
                redis_url=redis_url,
                redis_key_prefix=redis_prefix,
                auth_failure_burst=6,
                auth_failure_rate_per_second=0.01,
            )
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, client=("198.51.100.20", 4000))
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://kp.test")
                )
            )
        statuses = [
            (await clients[index % 2].get(INFO, headers={"ApiKey": "kp_" + "x" * 38})).status_code
            for index in range(10)
        ]
        assert statuses[:6] == [401] * 6
        assert statuses[6:] == [429] * 4
