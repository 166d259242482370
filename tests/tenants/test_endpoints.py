"""A tenant's resource limits through REST: tenant admins read and change the per-user API
key limit of their own tenant, and creating keys obeys it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api_keys.helpers import key_body, make_api_key
from tests.helpers import World
from tests.users.helpers import Actor

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


def _path(tenant_uid: str) -> str:
    return f"/v1/tenants/{tenant_uid}/resourceLimits"


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details", "ref"}
    assert body["code"] == code, body
    assert body["message"]
    return body


def _limit_body(limit: Any, kind: Any = "apiKey") -> dict[str, Any]:
    return {"resources": [{"kind": kind, "limit": limit}]}


async def _read(client: httpx.AsyncClient, admin: Actor) -> dict[str, Any]:
    response = await client.get(_path(admin.tenant_uid), headers=admin.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _limit(client: httpx.AsyncClient, admin: Actor) -> int:
    resources = (await _read(client, admin))["resources"]
    assert [resource["kind"] for resource in resources] == ["apiKey"]
    limit: int = resources[0]["limit"]
    return limit


async def _set_limit(client: httpx.AsyncClient, admin: Actor, limit: int) -> None:
    response = await client.patch(
        _path(admin.tenant_uid), json=_limit_body(limit), headers=admin.headers
    )
    assert response.status_code == 204, response.text
    assert response.content == b""


async def _key_uids(client: httpx.AsyncClient, admin: Actor, user: Actor) -> list[str]:
    """Sorted: which keys, not in what order (the list's order has tests of its own)."""
    response = await client.get("/v1/apiKeys", params={"userUid": user.uid}, headers=admin.headers)
    assert response.status_code == 200, response.text
    return sorted(item["metadata"]["uid"] for item in response.json()["items"])


async def _create_key(
    client: httpx.AsyncClient, actor: Actor, name: str, user_uid: str | None = None
) -> httpx.Response:
    return await client.post(
        "/v1/apiKeys", json=key_body(name, user_uid=user_uid), headers=actor.headers
    )


def _assert_limit_reached(response: httpx.Response, limit: int) -> None:
    body = _assert_error(response, 409, "ApiKeyLimitReached")
    assert body["details"] == {"kind": "apiKey", "limit": limit}
    assert "kp_" not in response.text


# --- reading ----------------------------------------------------------------------------


async def test_admin_reads_the_default_api_key_limit(
    client: httpx.AsyncClient, world: World
) -> None:
    body = await _read(client, world.admin)
    assert set(body) == {"resources"}
    [resource] = body["resources"]
    assert set(resource) == {"kind", "label", "limit", "maxLimit"}
    assert resource["kind"] == "apiKey"
    assert isinstance(resource["label"], str)
    assert resource["label"]
    assert resource["limit"] == DEFAULT_LIMIT
    assert resource["maxLimit"] == MAX_LIMIT


async def test_admin_with_an_api_key_reads_the_limits(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.admin, "automation")
    response = await client.get(_path(world.admin.tenant_uid), headers=key.headers)
    assert response.status_code == 200, response.text
    assert response.json() == await _read(client, world.admin)


# --- changing ---------------------------------------------------------------------------


async def test_patch_changes_the_limit_of_that_tenant_only(
    client: httpx.AsyncClient, world: World
) -> None:
    await _set_limit(client, world.admin, 5)
    body = await _read(client, world.admin)
    [resource] = body["resources"]
    assert resource["limit"] == 5
    assert resource["maxLimit"] == MAX_LIMIT
    assert resource["kind"] == "apiKey"
    assert await _limit(client, world.other_admin) == DEFAULT_LIMIT

    await _set_limit(client, world.admin, 7)
    assert await _limit(client, world.admin) == 7


@pytest.mark.parametrize("limit", [1, MAX_LIMIT])
async def test_the_bounds_are_accepted(client: httpx.AsyncClient, world: World, limit: int) -> None:
    await _set_limit(client, world.admin, limit)
    assert await _limit(client, world.admin) == limit


async def test_palette_metadata_in_the_body_is_ignored(
    client: httpx.AsyncClient, world: World
) -> None:
    body = {"resources": [{"kind": "apiKey", "limit": 9, "label": "API Keys", "maxLimit": 5}]}
    response = await client.patch(
        _path(world.admin.tenant_uid), json=body, headers=world.admin.headers
    )
    assert response.status_code == 204, response.text
    [resource] = (await _read(client, world.admin))["resources"]
    assert resource["limit"] == 9
    assert resource["maxLimit"] == MAX_LIMIT


# --- enforcement ------------------------------------------------------------------------


async def test_the_limit_is_enforced_per_user_when_creating_keys(
    client: httpx.AsyncClient, world: World
) -> None:
    await _set_limit(client, world.admin, 2)
    first = await make_api_key(client, world.alice, "one")
    second = await make_api_key(client, world.alice, "two")

    refused = await _create_key(client, world.alice, "three")
    _assert_limit_reached(refused, 2)
    assert await _key_uids(client, world.admin, world.alice) == sorted([first.uid, second.uid])
    names = [
        item["metadata"]["name"]
        for item in (await client.get("/v1/apiKeys", headers=world.alice.headers)).json()["items"]
    ]
    assert "three" not in names

    # An admin creating for alice is held to alice's limit too.
    on_behalf = await _create_key(client, world.admin, "from-admin", user_uid=world.alice.uid)
    _assert_limit_reached(on_behalf, 2)
    assert len(await _key_uids(client, world.admin, world.alice)) == 2

    # Other users have their own allowance, the admin included.
    await make_api_key(client, world.bob, "one")
    await make_api_key(client, world.bob, "two")
    _assert_limit_reached(await _create_key(client, world.bob, "three"), 2)
    await make_api_key(client, world.admin, "admin-one")

    # The existing keys keep working.
    for key in (first, second):
        assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 200


async def test_the_default_limit_is_twenty_keys_per_user(
    client: httpx.AsyncClient, world: World
) -> None:
    for index in range(DEFAULT_LIMIT):
        await make_api_key(client, world.alice, f"key-{index:02d}")
    refused = await _create_key(client, world.alice, "one-too-many")
    _assert_limit_reached(refused, DEFAULT_LIMIT)
    assert len(await _key_uids(client, world.admin, world.alice)) == DEFAULT_LIMIT
    # Another user is unaffected.
    await make_api_key(client, world.bob, "first")


async def test_the_limit_of_another_tenant_does_not_apply(
    client: httpx.AsyncClient, world: World
) -> None:
    await _set_limit(client, world.admin, 1)
    await make_api_key(client, world.alice, "one")
    _assert_limit_reached(await _create_key(client, world.alice, "two"), 1)
    await make_api_key(client, world.other_admin, "one")
    await make_api_key(client, world.other_admin, "two")


async def test_lowering_the_limit_keeps_existing_keys_and_blocks_new_ones(
    client: httpx.AsyncClient, world: World
) -> None:
    keys = [await make_api_key(client, world.alice, f"key-{index}") for index in range(3)]
    await _set_limit(client, world.admin, 2)

    assert await _key_uids(client, world.admin, world.alice) == sorted(key.uid for key in keys)
    for key in keys:
        assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 200
    _assert_limit_reached(await _create_key(client, world.alice, "new"), 2)

    # Back to two keys: still at the limit.
    deleted = await client.delete(f"/v1/apiKeys/{keys[0].uid}", headers=world.alice.headers)
    assert deleted.status_code == 204
    _assert_limit_reached(await _create_key(client, world.alice, "new"), 2)

    # Below it: room for one.
    deleted = await client.delete(f"/v1/apiKeys/{keys[1].uid}", headers=world.alice.headers)
    assert deleted.status_code == 204
    await make_api_key(client, world.alice, "new")
    _assert_limit_reached(await _create_key(client, world.alice, "newer"), 2)


async def test_raising_the_limit_allows_more_keys(client: httpx.AsyncClient, world: World) -> None:
    await _set_limit(client, world.admin, 1)
    await make_api_key(client, world.alice, "one")
    _assert_limit_reached(await _create_key(client, world.alice, "two"), 1)
    await _set_limit(client, world.admin, 3)
    await make_api_key(client, world.alice, "two")
    await make_api_key(client, world.alice, "three")
    _assert_limit_reached(await _create_key(client, world.alice, "four"), 3)


# --- who may read and change ------------------------------------------------------------


async def test_users_cannot_read_or_change_the_limits(
    client: httpx.AsyncClient, world: World
) -> None:
    await _set_limit(client, world.admin, 4)
    path = _path(world.alice.tenant_uid)
    key = await make_api_key(client, world.alice, "ci")
    for headers in (world.alice.headers, key.headers):
        _assert_error(await client.get(path, headers=headers), 403, "Forbidden")
        _assert_error(
            await client.patch(path, json=_limit_body(500), headers=headers), 403, "Forbidden"
        )
    assert await _limit(client, world.admin) == 4


async def test_another_tenants_limits_are_404(client: httpx.AsyncClient, world: World) -> None:
    await _set_limit(client, world.other_admin, 3)
    path = _path(world.other_admin.tenant_uid)
    _assert_error(await client.get(path, headers=world.admin.headers), 404, "TenantNotFound")
    _assert_error(
        await client.patch(path, json=_limit_body(500), headers=world.admin.headers),
        404,
        "TenantNotFound",
    )
    # A user of acme learns no more than its admin.
    _assert_error(await client.get(path, headers=world.alice.headers), 404, "TenantNotFound")
    assert await _limit(client, world.other_admin) == 3
    assert await _limit(client, world.admin) == DEFAULT_LIMIT


async def test_unknown_tenant_is_404(client: httpx.AsyncClient, world: World) -> None:
    path = _path("f" * 24)
    _assert_error(await client.get(path, headers=world.admin.headers), 404, "TenantNotFound")
    _assert_error(
        await client.patch(path, json=_limit_body(5), headers=world.admin.headers),
        404,
        "TenantNotFound",
    )
    assert await _limit(client, world.admin) == DEFAULT_LIMIT


async def test_resource_limits_need_credentials(client: httpx.AsyncClient, world: World) -> None:
    path = _path(world.admin.tenant_uid)
    _assert_error(await client.get(path), 401, "AuthenticationRequired")
    _assert_error(await client.patch(path, json=_limit_body(5)), 401, "AuthenticationRequired")
    assert await _limit(client, world.admin) == DEFAULT_LIMIT


# --- invalid changes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_limit_body(0), "InvalidRequest"),
        (_limit_body(-1), "InvalidRequest"),
        (_limit_body(MAX_LIMIT + 1), "ResourceLimitTooHigh"),
        (_limit_body(10**12), "ResourceLimitTooHigh"),
        (_limit_body(5, kind="bogus"), "InvalidRequest"),
        (_limit_body(5, kind="user"), "InvalidRequest"),
        (_limit_body(5, kind="apikey"), "InvalidRequest"),
        (_limit_body(5, kind=5), "InvalidRequest"),
        ({"resources": [{"limit": 5}]}, "InvalidRequest"),
        ({"resources": [{"kind": "apiKey"}]}, "InvalidRequest"),
        (_limit_body(None), "InvalidRequest"),
        (_limit_body("5"), "InvalidRequest"),
        (_limit_body(5.5), "InvalidRequest"),
        (_limit_body(True), "InvalidRequest"),
        (_limit_body([5]), "InvalidRequest"),
        ({"resources": []}, "InvalidRequest"),
        ({"resources": {"kind": "apiKey", "limit": 5}}, "InvalidRequest"),
        (
            {"resources": [{"kind": "apiKey", "limit": 5}, {"kind": "apiKey", "limit": 6}]},
            "InvalidRequest",
        ),
        ({}, "InvalidRequest"),
        ([{"kind": "apiKey", "limit": 5}], "InvalidRequest"),
    ],
    ids=[
        "zero",
        "negative",
        "above-max",
        "huge",
        "unknown-kind",
        "kind-not-enforced",
        "kind-wrong-case",
        "kind-not-string",
        "kind-missing",
        "limit-missing",
        "limit-null",
        "limit-string",
        "limit-fraction",
        "limit-bool",
        "limit-list",
        "no-resources",
        "resources-not-list",
        "two-entries",
        "empty-body",
        "body-list",
    ],
)
async def test_invalid_limit_is_400_and_changes_nothing(
    client: httpx.AsyncClient, world: World, body: Any, code: str
) -> None:
    await _set_limit(client, world.admin, 7)
    response = await client.patch(
        _path(world.admin.tenant_uid), json=body, headers=world.admin.headers
    )
    _assert_error(response, 400, code)
    assert await _limit(client, world.admin) == 7


async def test_malformed_json_is_400_and_changes_nothing(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.patch(
        _path(world.admin.tenant_uid),
        content=b'{"resources": [{"kind": "apiKey", "limit": 5',
        headers={**world.admin.headers, "Content-Type": "application/json"},
    )
    _assert_error(response, 400, "MalformedJson")
    assert await _limit(client, world.admin) == DEFAULT_LIMIT
