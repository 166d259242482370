from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from keyplane.kit.db import transaction
from keyplane.kit.keys import is_well_formed_api_key
from keyplane.kit.time import rfc3339, utcnow
from keyplane.models import ApiKey
from keyplane.runtime import Runtime
from tests.api_keys.helpers import backdate_expiry, key_body, make_api_key
from tests.helpers import World
from tests.users.helpers import Actor


async def _list(client: httpx.AsyncClient, actor: Actor, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/apiKeys", headers=actor.headers, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _get(client: httpx.AsyncClient, actor: Actor, uid: str) -> dict[str, Any]:
    response = await client.get(f"/v1/apiKeys/{uid}", headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _expire(runtime: Runtime, uid: str) -> None:
    await backdate_expiry(runtime, uid)


async def test_create_returns_the_value_once_in_palette_shape(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.post(
        "/v1/apiKeys",
        json=key_body("deploy", description="CI deploys"),
        headers=world.alice.headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"apiKey", "uid"}
    assert is_well_formed_api_key(body["apiKey"])

    shown = await client.get(f"/v1/apiKeys/{body['uid']}", headers=world.alice.headers)
    listed = await client.get("/v1/apiKeys", headers=world.admin.headers)
    assert body["apiKey"] not in shown.text
    assert body["apiKey"] not in listed.text
    item = shown.json()
    assert item["metadata"]["name"] == "deploy"
    assert item["metadata"]["annotations"] == {"description": "CI deploys"}
    assert item["spec"]["user"] == {
        "uid": world.alice.uid,
        "firstName": "Alice",
        "lastName": "Liddell",
        "emailId": "alice@acme.example",
    }
    assert item["status"]["isActive"] is True
    assert item["metadata"]["creationTimestamp"].endswith("Z")


async def test_expiry_defaults_to_30_days(client: httpx.AsyncClient, world: World) -> None:
    before = utcnow()
    key = await make_api_key(client, world.alice, "default-expiry")
    expiry = (await _get(client, world.alice, key.uid))["spec"]["expiry"]
    expected = before + timedelta(days=30)
    assert rfc3339(expected)[:13] == expiry[:13]


async def test_chosen_expiry_is_kept(client: httpx.AsyncClient, world: World) -> None:
    expiry = (utcnow() + timedelta(days=7)).replace(microsecond=0)
    key = await make_api_key(client, world.alice, "week", expiry=expiry)
    assert (await _get(client, world.alice, key.uid))["spec"]["expiry"] == rfc3339(expiry)


async def test_palette_go_sdk_sends_the_tenant_uid_as_user(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "sdk", user_uid=world.alice.tenant_uid)
    assert (await _get(client, world.alice, key.uid))["spec"]["user"]["uid"] == world.alice.uid


async def test_palette_metadata_fields_are_ignored(client: httpx.AsyncClient, world: World) -> None:
    body = key_body("go-sdk")
    body["metadata"].update({"labels": {}, "uid": "", "creationTimestamp": "0001-01-01T00:00:00Z"})
    response = await client.post("/v1/apiKeys", json=body, headers=world.alice.headers)
    assert response.status_code == 201


def _far(days: int) -> str:
    return rfc3339(utcnow() + timedelta(days=days))


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"spec": {}}, "InvalidRequest"),
        ({"metadata": {"name": ""}}, "InvalidRequest"),
        ({"metadata": {"name": "   "}}, "InvalidRequest"),
        ({"metadata": {"name": "x" * 129}}, "InvalidRequest"),
        ({"metadata": {"name": "bell\u0007"}}, "InvalidRequest"),
        ({"metadata": {"name": 42}}, "InvalidRequest"),
        ({"metadata": {"name": "d", "annotations": {"description": "x" * 1025}}}, "InvalidRequest"),
        ({"metadata": {"name": "p"}, "spec": {"expiry": _far(-1)}}, "ApiKeyExpiryInPast"),
        ({"metadata": {"name": "f"}, "spec": {"expiry": _far(400)}}, "ApiKeyExpiryTooFar"),
        ({"metadata": {"name": "n"}, "spec": {"expiry": "2030-01-01T00:00:00"}}, "InvalidRequest"),
        ({"metadata": {"name": "t"}, "spec": {"expiry": "next week"}}, "InvalidRequest"),
        ({"metadata": {"name": "u"}, "spec": {"userUid": "0" * 24}}, "UnknownUser"),
        ({"metadata": {"name": "l"}, "spec": {"userUid": ["a"]}}, "InvalidRequest"),
        ([], "InvalidRequest"),
    ],
)
async def test_invalid_create_is_refused_and_creates_nothing(
    client: httpx.AsyncClient, world: World, body: Any, code: str
) -> None:
    response = await client.post("/v1/apiKeys", json=body, headers=world.admin.headers)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == code
    assert set(error) == {"code", "message", "details", "ref"}
    assert (await _list(client, world.admin))["items"] == []


async def test_malformed_json_is_a_clear_400(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        "/v1/apiKeys",
        content=b'{"metadata": {"name": ',
        headers={**world.alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "MalformedJson"
    assert (await _list(client, world.admin))["items"] == []


async def test_keys_for_a_deactivated_user_are_refused(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.patch(
        f"/v1/users/{world.bob.uid}",
        json=[{"op": "replace", "path": "/status/isActive", "value": False}],
        headers=world.admin.headers,
    )
    assert response.status_code == 204
    refused = await client.post(
        "/v1/apiKeys", json=key_body("x", user_uid=world.bob.uid), headers=world.admin.headers
    )
    assert refused.status_code == 400
    assert refused.json()["code"] == "UserInactive"


async def test_duplicate_name_for_one_user_is_a_conflict(
    client: httpx.AsyncClient, world: World
) -> None:
    await make_api_key(client, world.alice, "deploy")
    again = await client.post("/v1/apiKeys", json=key_body("deploy"), headers=world.alice.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "ApiKeyNameTaken"
    await make_api_key(client, world.bob, "deploy")
    assert len((await _list(client, world.admin))["items"]) == 2


async def test_edit_changes_only_what_is_given(client: httpx.AsyncClient, world: World) -> None:
    key = await make_api_key(client, world.alice, "deploy", description="old")
    before = await _get(client, world.alice, key.uid)
    response = await client.put(
        f"/v1/apiKeys/{key.uid}",
        json={"metadata": {"name": "deploy-2"}},
        headers=world.alice.headers,
    )
    assert response.status_code == 204
    after = await _get(client, world.alice, key.uid)
    assert after["metadata"]["name"] == "deploy-2"
    assert after["metadata"]["annotations"] == {"description": "old"}
    assert after["spec"]["expiry"] == before["spec"]["expiry"]

    new_expiry = (utcnow() + timedelta(days=60)).replace(microsecond=0)
    response = await client.put(
        f"/v1/apiKeys/{key.uid}",
        json={
            "metadata": {"name": "deploy-3", "annotations": {"description": ""}},
            "spec": {"expiry": rfc3339(new_expiry)},
        },
        headers=world.alice.headers,
    )
    assert response.status_code == 204
    after = await _get(client, world.alice, key.uid)
    assert after["metadata"]["name"] == "deploy-3"
    assert after["metadata"]["annotations"] == {"description": ""}
    assert after["spec"]["expiry"] == rfc3339(new_expiry)
    assert after["metadata"]["lastModifiedTimestamp"] >= before["metadata"]["lastModifiedTimestamp"]
    # Editing never changes the value: the key still authenticates.
    assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"metadata": {"name": ""}}, "InvalidRequest"),
        ({"spec": {"expiry": _far(-2)}}, "ApiKeyExpiryInPast"),
        ({"spec": {"expiry": _far(500)}}, "ApiKeyExpiryTooFar"),
        ({"metadata": {"annotations": {"description": 5}}}, "InvalidRequest"),
    ],
)
async def test_invalid_edit_changes_nothing(
    client: httpx.AsyncClient, world: World, body: dict[str, Any], code: str
) -> None:
    key = await make_api_key(client, world.alice, "deploy", description="keep")
    before = await _get(client, world.alice, key.uid)
    response = await client.put(f"/v1/apiKeys/{key.uid}", json=body, headers=world.alice.headers)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert await _get(client, world.alice, key.uid) == before


async def test_edit_to_a_taken_name_is_a_conflict(client: httpx.AsyncClient, world: World) -> None:
    await make_api_key(client, world.alice, "one")
    two = await make_api_key(client, world.alice, "two")
    response = await client.put(
        f"/v1/apiKeys/{two.uid}", json={"metadata": {"name": "one"}}, headers=world.alice.headers
    )
    assert response.status_code == 409
    assert (await _get(client, world.alice, two.uid))["metadata"]["name"] == "two"


@pytest.mark.parametrize("body", [{}, {"isActive": "false"}, {"isActive": 0}, {"isActive": None}])
async def test_state_change_needs_a_boolean(
    client: httpx.AsyncClient, world: World, body: dict[str, Any]
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    response = await client.patch(f"/v1/apiKeys/{key.uid}", json=body, headers=world.alice.headers)
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidRequest"
    assert (await _get(client, world.alice, key.uid))["status"]["isActive"] is True


async def test_expired_key_stops_authenticating_and_cannot_be_reactivated_until_extended(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.alice.headers
    )
    await _expire(runtime, key.uid)
    assert (await _get(client, world.alice, key.uid))["status"]["isExpired"] is True

    refused = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": True}, headers=world.alice.headers
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "ApiKeyExpired"
    assert "extend" in refused.json()["message"]
    assert (await _get(client, world.alice, key.uid))["status"]["isActive"] is False

    extended = await client.put(
        f"/v1/apiKeys/{key.uid}",
        json={"spec": {"expiry": _far(10)}},
        headers=world.alice.headers,
    )
    assert extended.status_code == 204
    reactivated = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": True}, headers=world.alice.headers
    )
    assert reactivated.status_code == 204
    assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 200


async def test_an_active_key_that_expires_gets_401_on_the_next_request(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 200
    await _expire(runtime, key.uid)
    response = await client.get("/v1/users/info", headers=key.headers)
    assert response.status_code == 401
    assert response.json()["code"] == "ApiKeyExpired"


async def test_revoking_twice_is_harmless(client: httpx.AsyncClient, world: World) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    for _ in range(2):
        response = await client.patch(
            f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.alice.headers
        )
        assert response.status_code == 204
    assert (await _get(client, world.alice, key.uid))["status"]["isActive"] is False


async def test_unknown_key_is_404(client: httpx.AsyncClient, world: World) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(
            method, f"/v1/apiKeys/{'f' * 24}", headers=world.admin.headers
        )
        assert response.status_code == 404
        assert response.json()["code"] == "ApiKeyNotFound"


async def test_list_filters_by_user_and_state(client: httpx.AsyncClient, world: World) -> None:
    alice_key = await make_api_key(client, world.alice, "a")
    bob_key = await make_api_key(client, world.bob, "b")
    await client.patch(
        f"/v1/apiKeys/{bob_key.uid}", json={"isActive": False}, headers=world.bob.headers
    )

    def uids(body: dict[str, Any]) -> set[str]:
        return {item["metadata"]["uid"] for item in body["items"]}

    assert uids(await _list(client, world.admin)) == {alice_key.uid, bob_key.uid}
    assert uids(await _list(client, world.admin, userUid=world.bob.uid)) == {bob_key.uid}
    assert uids(await _list(client, world.admin, isActive="true")) == {alice_key.uid}
    assert uids(await _list(client, world.admin, isActive="false")) == {bob_key.uid}
    assert uids(await _list(client, world.alice)) == {alice_key.uid}

    refused = await client.get(
        "/v1/apiKeys", params={"userUid": world.bob.uid}, headers=world.alice.headers
    )
    assert refused.status_code == 403
    bad = await client.get("/v1/apiKeys", params={"isActive": "maybe"}, headers=world.admin.headers)
    assert bad.status_code == 400


async def test_list_without_paging_is_exactly_palettes_shape(
    client: httpx.AsyncClient, world: World
) -> None:
    await make_api_key(client, world.alice, "a")
    body = await _list(client, world.alice)
    assert set(body) == {"items"}


async def test_paging_with_offset_and_continue(client: httpx.AsyncClient, world: World) -> None:
    # Newest first.
    created = [await make_api_key(client, world.alice, f"key-{index}") for index in range(5)][::-1]
    first = await _list(client, world.alice, limit=2)
    assert first["listmeta"]["count"] == 5
    assert first["listmeta"]["limit"] == 2
    assert first["listmeta"]["offset"] == 2
    seen = [item["metadata"]["uid"] for item in first["items"]]
    token = first["listmeta"]["continue"]
    while token:
        page = await _list(client, world.alice, limit=2, **{"continue": token})
        seen += [item["metadata"]["uid"] for item in page["items"]]
        token = page["listmeta"]["continue"]
    assert seen == [key.uid for key in created]

    by_offset = await _list(client, world.alice, limit=2, offset=4)
    assert [item["metadata"]["uid"] for item in by_offset["items"]] == [created[4].uid]
    assert by_offset["listmeta"]["continue"] == ""


async def test_newest_first_by_default_with_stable_pages_on_equal_times(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    created = [await make_api_key(client, world.alice, f"key-{index}") for index in range(3)]
    listed = [item["metadata"]["uid"] for item in (await _list(client, world.alice))["items"]]
    assert listed == [key.uid for key in reversed(created)]

    # Keys created in the same instant: the uid breaks the tie, so pages neither repeat nor
    # skip a key.
    same = [await make_api_key(client, world.bob, f"same-{index}") for index in range(5)]
    async with transaction(runtime.sessionmaker) as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.uid.in_([key.uid for key in same]))
            .values(created_at=utcnow() + timedelta(hours=1))
        )
    paged: list[str] = []
    for offset in range(0, 8, 2):
        page = await _list(client, world.admin, limit=2, offset=offset)
        paged += [item["metadata"]["uid"] for item in page["items"]]
    assert paged[:5] == sorted((key.uid for key in same), reverse=True)
    assert paged[5:] == listed
    assert paged == [
        item["metadata"]["uid"] for item in (await _list(client, world.admin))["items"]
    ]


async def test_each_key_carries_its_last_four_characters(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    shown = await _get(client, world.alice, key.uid)
    assert shown["status"]["keyHint"] == key.value[-4:]
    listed = (await _list(client, world.admin))["items"]
    assert [item["status"]["keyHint"] for item in listed] == [key.value[-4:]]
    # No more of the value than that, anywhere in either answer.
    for text in (str(shown), str(listed)):
        assert key.value[-5:] not in text
        assert key.value[:-4] not in text

    # Keys from before hints were kept have none.
    async with transaction(runtime.sessionmaker) as session:
        await session.execute(update(ApiKey).where(ApiKey.uid == key.uid).values(key_hint=None))
    assert (await _get(client, world.alice, key.uid))["status"]["keyHint"] is None


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 0}, "InvalidRequest"),
        ({"limit": 100000}, "InvalidRequest"),
        ({"offset": -1}, "InvalidRequest"),
        ({"continue": "not-a-token"}, "InvalidContinueToken"),
        ({"continue": "eyJvIjogLTF9"}, "InvalidContinueToken"),
        ({"offset": 1, "continue": "eyJvIjogMX0"}, "InvalidRequest"),
    ],
)
async def test_bad_paging_is_a_clear_400(
    client: httpx.AsyncClient, world: World, params: dict[str, Any], code: str
) -> None:
    response = await client.get("/v1/apiKeys", params=params, headers=world.alice.headers)
    assert response.status_code == 400
    assert response.json()["code"] == code


async def test_last_used_is_recorded_without_a_write_per_request(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    assert (await _get(client, world.alice, key.uid))["status"]["lastUsedTimestamp"] is None
    for _ in range(3):
        await client.get("/v1/users/info", headers=key.headers)
    assert runtime.last_used.pending == 1
    assert await runtime.last_used.flush(runtime.sessionmaker) == 1
    assert (await _get(client, world.alice, key.uid))["status"]["lastUsedTimestamp"] is not None
