"""The audit log through REST: what is recorded for keys, users and logins (actor,
resource, client address, outcome), how tenant admins filter and page it, that it never
crosses tenants, and that no secret ever reaches it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from keyplane.kit.db import transaction
from keyplane.kit.time import utcnow
from keyplane.models import ApiKey, AuthSession, User
from keyplane.runtime import Runtime
from tests.api_keys.helpers import make_api_key
from tests.helpers import World
from tests.users.helpers import DEFAULT_PASSWORD, Actor, login

AUDITS = "/v1/audits"
CLIENT_ADDRESS = "203.0.113.7"
# Distinctive, so that finding one in a response body cannot be a coincidence.
WRONG_PASSWORD = "Wr0ng-Audit-Passphrase-5581"
CAROL_PASSWORD = "Carols-First-Passphrase-2208"
CAROL_NEW_PASSWORD = "Carols-Second-Passphrase-6613"


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details", "ref"}
    assert body["code"] == code, body
    assert body["message"]
    return body


async def _audits(client: httpx.AsyncClient, admin: Actor, **params: Any) -> dict[str, Any]:
    params.setdefault("limit", 1000)
    response = await client.get(AUDITS, params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _items(client: httpx.AsyncClient, admin: Actor, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await _audits(client, admin, **params))["items"]
    return items


def _actions(items: list[dict[str, Any]]) -> list[str]:
    return [item["metadata"]["annotations"]["action"] for item in items]


def _assert_actor(item: dict[str, Any], actor: Actor, first: str, last: str) -> None:
    assert item["spec"]["actor"]["actorType"] == "user"
    assert item["spec"]["actor"]["user"] == {
        "uid": actor.uid,
        "emailId": actor.email,
        "firstName": first,
        "lastName": last,
        "org": actor.tenant_name,
    }


def _assert_annotations(item: dict[str, Any], outcome: str, auth_method: str) -> None:
    annotations = item["metadata"]["annotations"]
    assert annotations["clientAddress"] == CLIENT_ADDRESS
    assert annotations["outcome"] == outcome
    assert annotations["authMethod"] == auth_method


def _assert_resource(item: dict[str, Any], kind: str, uid: str, name: str) -> None:
    resource = item["spec"]["resource"]
    assert resource["kind"] == kind
    assert resource["uid"] == uid
    assert resource["name"] == name


async def _create_user(
    client: httpx.AsyncClient, admin: Actor, email: str, password: str | None = None
) -> str:
    spec: dict[str, Any] = {
        "emailId": email,
        "firstName": "Carol",
        "lastName": "Clark",
        "roles": ["user"],
    }
    if password is not None:
        spec["password"] = password
    response = await client.post(
        "/v1/users", json={"metadata": {}, "spec": spec}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    uid: str = response.json()["uid"]
    return uid


async def _set_active(client: httpx.AsyncClient, admin: Actor, uid: str, value: bool) -> None:
    response = await client.patch(
        f"/v1/users/{uid}",
        json=[{"op": "replace", "path": "/status/isActive", "value": value}],
        headers=admin.headers,
    )
    assert response.status_code == 204, response.text


async def _wrong_login(client: httpx.AsyncClient, actor: Actor) -> None:
    response = await client.post(
        "/v1/auth/authenticate",
        json={"emailId": actor.email, "org": actor.tenant_name, "password": WRONG_PASSWORD},
    )
    _assert_error(response, 401, "InvalidCredentials")


def _with_offset(moment: datetime, hours: int) -> str:
    return moment.astimezone(timezone(timedelta(hours=hours))).isoformat()


# --- who may read -----------------------------------------------------------------------


async def test_only_tenant_admins_read_the_audit_log(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "ci")
    for headers in (world.alice.headers, world.bob.headers, key.headers):
        _assert_error(await client.get(AUDITS, headers=headers), 403, "Forbidden")
        _assert_error(
            await client.get(AUDITS, params={"userUid": world.alice.uid}, headers=headers),
            403,
            "Forbidden",
        )
    _assert_error(await client.get(AUDITS), 401, "AuthenticationRequired")

    admin_key = await make_api_key(client, world.admin, "automation")
    for headers in (world.admin.headers, admin_key.headers):
        assert (await client.get(AUDITS, headers=headers)).status_code == 200


async def test_audit_list_is_palette_shaped_and_newest_first(
    client: httpx.AsyncClient, world: World
) -> None:
    await make_api_key(client, world.alice, "first")
    await make_api_key(client, world.alice, "second")
    body = await _audits(client, world.admin)
    assert set(body) == {"items", "listmeta"}
    items = body["items"]
    assert body["listmeta"]["count"] == len(items)
    for item in items:
        assert set(item) == {"metadata", "spec"}
        assert set(item["spec"]) >= {
            "actionMsg",
            "actionType",
            "actor",
            "contentMsg",
            "resource",
            "userMsg",
        }
        assert item["metadata"]["uid"]
        assert item["metadata"]["creationTimestamp"].endswith("Z")
    stamps = [item["metadata"]["creationTimestamp"] for item in items]
    assert stamps == sorted(stamps, reverse=True)
    names = [item["spec"]["resource"]["name"] for item in items[:2]]
    assert names == ["second", "first"]


# --- what is recorded -------------------------------------------------------------------


async def test_api_key_lifecycle_is_recorded_with_actor_resource_and_address(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    steps = [
        await client.put(
            f"/v1/apiKeys/{key.uid}",
            json={"metadata": {"name": "deploy-2"}},
            headers=world.alice.headers,
        ),
        await client.patch(
            f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.alice.headers
        ),
        await client.patch(
            f"/v1/apiKeys/{key.uid}", json={"isActive": True}, headers=world.alice.headers
        ),
        await client.delete(f"/v1/apiKeys/{key.uid}", headers=world.alice.headers),
    ]
    for response in steps:
        assert response.status_code == 204, response.text

    items = await _items(client, world.admin, resourceUid=key.uid)
    assert _actions(items) == [
        "apiKey.delete",
        "apiKey.reactivate",
        "apiKey.revoke",
        "apiKey.update",
        "apiKey.create",
    ]
    assert [item["spec"]["actionType"] for item in items] == [
        "delete",
        "update",
        "update",
        "update",
        "create",
    ]
    for item in items:
        _assert_actor(item, world.alice, "Alice", "Liddell")
        _assert_annotations(item, "success", "session")
        assert item["spec"]["resource"]["kind"] == "apiKey"
        assert item["spec"]["resource"]["uid"] == key.uid
        assert item["spec"]["actionMsg"]
    assert items[-1]["spec"]["resource"]["name"] == "deploy"
    assert items[0]["spec"]["resource"]["name"] == "deploy-2"


async def test_admin_actions_on_a_users_key_name_the_admin(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.admin, "for-bob", user_uid=world.bob.uid)
    revoked = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.admin.headers
    )
    assert revoked.status_code == 204
    items = await _items(client, world.admin, resourceUid=key.uid)
    assert _actions(items) == ["apiKey.revoke", "apiKey.create"]
    for item in items:
        _assert_actor(item, world.admin, "Ada", "Admin")
        _assert_resource(item, "apiKey", key.uid, "for-bob")
    # The create record says whose key it is.
    assert world.bob.email in items[1]["spec"]["contentMsg"]


async def test_actions_with_an_api_key_record_the_owner_and_the_method(
    client: httpx.AsyncClient, world: World
) -> None:
    first = await make_api_key(client, world.alice, "first")
    second = await make_api_key(client, world.alice, "second")
    by_key = await client.post(
        "/v1/apiKeys", json={"metadata": {"name": "third"}}, headers=first.headers
    )
    assert by_key.status_code == 201, by_key.text
    third_uid = by_key.json()["uid"]

    [item] = await _items(client, world.admin, resourceUid=third_uid)
    assert _actions([item]) == ["apiKey.create"]
    _assert_actor(item, world.alice, "Alice", "Liddell")
    _assert_annotations(item, "success", "apiKey")
    [by_session] = await _items(client, world.admin, resourceUid=second.uid)
    _assert_annotations(by_session, "success", "session")


async def test_user_lifecycle_is_recorded(client: httpx.AsyncClient, world: World) -> None:
    uid = await _create_user(client, world.admin, "carol@acme.example")
    await _set_active(client, world.admin, uid, False)
    await _set_active(client, world.admin, uid, True)
    renamed = await client.put(
        f"/v1/users/{uid}", json={"spec": {"firstName": "Caroline"}}, headers=world.admin.headers
    )
    assert renamed.status_code == 204
    deleted = await client.delete(f"/v1/users/{uid}", headers=world.admin.headers)
    assert deleted.status_code == 204

    items = await _items(client, world.admin, resourceKind="user", resourceUid=uid)
    assert _actions(items) == [
        "user.delete",
        "user.update",
        "user.reactivate",
        "user.deactivate",
        "user.create",
    ]
    assert [item["spec"]["actionType"] for item in items] == [
        "delete",
        "update",
        "update",
        "update",
        "create",
    ]
    for item in items:
        _assert_actor(item, world.admin, "Ada", "Admin")
        _assert_annotations(item, "success", "session")
        _assert_resource(item, "user", uid, "carol@acme.example")


async def test_records_outlive_the_deleted_user_and_their_keys(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    deleted = await client.delete(f"/v1/users/{world.alice.uid}", headers=world.admin.headers)
    assert deleted.status_code == 204
    [created] = await _items(client, world.admin, resourceUid=key.uid)
    _assert_actor(created, world.alice, "Alice", "Liddell")
    by_alice = await _items(client, world.admin, userUid=world.alice.uid)
    assert "apiKey.create" in _actions(by_alice)
    assert "auth.login" in _actions(by_alice)


async def test_actor_names_are_reported_as_the_user_gave_them(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.post(
        "/v1/users",
        json={
            "spec": {
                "emailId": "mary@acme.example",
                "firstName": "Mary Ann",
                "lastName": "van Dyke",
                "roles": ["user"],
                "password": CAROL_PASSWORD,
            }
        },
        headers=world.admin.headers,
    )
    assert response.status_code == 201, response.text
    mary = Actor(
        uid=response.json()["uid"],
        email="mary@acme.example",
        tenant_uid=world.admin.tenant_uid,
        tenant_name="acme",
        password=CAROL_PASSWORD,
    )
    await login(client, mary)
    [item] = await _items(client, world.admin, userUid=mary.uid)
    _assert_actor(item, mary, "Mary Ann", "van Dyke")


async def test_logins_are_recorded_with_their_outcome(
    client: httpx.AsyncClient, world: World
) -> None:
    # The world logged alice in once; now a wrong password, then a right one.
    await _wrong_login(client, world.alice)
    await login(client, world.alice)

    items = await _items(client, world.admin, actionType="activity", resourceUid=world.alice.uid)
    assert _actions(items) == ["auth.login", "auth.login", "auth.login"]
    assert [item["metadata"]["annotations"]["outcome"] for item in items] == [
        "success",
        "failure",
        "success",
    ]
    for item in items:
        assert item["spec"]["actionType"] == "activity"
        _assert_actor(item, world.alice, "Alice", "Liddell")
        _assert_resource(item, "user", world.alice.uid, world.alice.email)
        assert item["metadata"]["annotations"]["clientAddress"] == CLIENT_ADDRESS
    failure = items[1]
    assert failure["metadata"]["annotations"]["outcome"] == "failure"
    assert "failure" in failure["spec"]["actionMsg"]
    assert WRONG_PASSWORD not in str(failure)


async def test_a_refused_change_leaves_no_success_record(
    client: httpx.AsyncClient, world: World
) -> None:
    before = await _items(client, world.admin)
    duplicate = await client.post(
        "/v1/users",
        json={"spec": {"emailId": world.alice.email, "roles": ["user"]}},
        headers=world.admin.headers,
    )
    _assert_error(duplicate, 409, "UserAlreadyExists")
    forbidden = await client.delete(f"/v1/users/{world.bob.uid}", headers=world.alice.headers)
    _assert_error(forbidden, 403, "Forbidden")
    last_admin = await client.delete(f"/v1/users/{world.admin.uid}", headers=world.admin.headers)
    _assert_error(last_admin, 409, "LastTenantAdmin")
    assert await _items(client, world.admin) == before


async def test_system_actions_are_recorded_as_the_system(
    client: httpx.AsyncClient, world: World
) -> None:
    # The world's tenant and users were created from the server side, not by a person.
    items = await _items(client, world.admin, actionType="create", resourceKind="user")
    assert {item["spec"]["resource"]["uid"] for item in items} == {
        world.admin.uid,
        world.alice.uid,
        world.bob.uid,
    }
    for item in items:
        assert item["spec"]["actor"]["actorType"] == "system"
        assert item["metadata"]["annotations"]["authMethod"] == "system"


async def test_resource_limit_changes_are_recorded(client: httpx.AsyncClient, world: World) -> None:
    response = await client.patch(
        f"/v1/tenants/{world.admin.tenant_uid}/resourceLimits",
        json={"resources": [{"kind": "apiKey", "limit": 5}]},
        headers=world.admin.headers,
    )
    assert response.status_code == 204
    [item] = await _items(client, world.admin, resourceKind="resourceLimit")
    assert _actions([item]) == ["resourceLimit.update"]
    assert item["spec"]["actionType"] == "update"
    _assert_actor(item, world.admin, "Ada", "Admin")
    _assert_annotations(item, "success", "session")
    assert "5" in item["spec"]["resource"]["name"]


# --- filters ----------------------------------------------------------------------------


async def _busy_tenant(client: httpx.AsyncClient, world: World) -> dict[str, str]:
    """Some activity of every kind in acme; returns the uids involved."""
    alice_key = await make_api_key(client, world.alice, "alice-key")
    bob_key = await make_api_key(client, world.bob, "bob-key")
    revoked = await client.patch(
        f"/v1/apiKeys/{bob_key.uid}", json={"isActive": False}, headers=world.bob.headers
    )
    assert revoked.status_code == 204
    carol = await _create_user(client, world.admin, "carol@acme.example")
    await _set_active(client, world.admin, carol, False)
    return {"alice_key": alice_key.uid, "bob_key": bob_key.uid, "carol": carol}


async def test_filter_by_resource_kind(client: httpx.AsyncClient, world: World) -> None:
    await _busy_tenant(client, world)
    everything = await _items(client, world.admin)
    for kind in ("apiKey", "user", "tenant"):
        items = await _items(client, world.admin, resourceKind=kind)
        assert items
        assert {item["spec"]["resource"]["kind"] for item in items} == {kind}
        expected = [item for item in everything if item["spec"]["resource"]["kind"] == kind]
        assert items == expected
    assert await _items(client, world.admin, resourceKind="resourceLimit") == []


async def test_filter_by_resource_uid(client: httpx.AsyncClient, world: World) -> None:
    uids = await _busy_tenant(client, world)
    items = await _items(client, world.admin, resourceUid=uids["bob_key"])
    assert _actions(items) == ["apiKey.revoke", "apiKey.create"]
    items = await _items(client, world.admin, resourceUid=uids["carol"])
    assert _actions(items) == ["user.deactivate", "user.create"]
    assert await _items(client, world.admin, resourceUid="f" * 24) == []


async def test_filter_by_acting_user(client: httpx.AsyncClient, world: World) -> None:
    uids = await _busy_tenant(client, world)
    items = await _items(client, world.admin, userUid=world.bob.uid)
    assert items
    assert {item["spec"]["actor"]["user"]["uid"] for item in items} == {world.bob.uid}
    assert {item["spec"]["resource"]["uid"] for item in items} == {uids["bob_key"], world.bob.uid}
    assert set(_actions(items)) == {"apiKey.revoke", "apiKey.create", "auth.login"}

    admin_items = await _items(client, world.admin, userUid=world.admin.uid)
    assert set(_actions(admin_items)) == {"auth.login", "user.create", "user.deactivate"}


async def test_filter_by_action_type(client: httpx.AsyncClient, world: World) -> None:
    uids = await _busy_tenant(client, world)
    deleted = await client.delete(f"/v1/apiKeys/{uids['alice_key']}", headers=world.alice.headers)
    assert deleted.status_code == 204
    for action_type, expected in (
        ("create", {"apiKey.create", "user.create", "tenant.create"}),
        ("update", {"apiKey.revoke", "user.deactivate"}),
        ("delete", {"apiKey.delete"}),
        ("activity", {"auth.login"}),
    ):
        items = await _items(client, world.admin, actionType=action_type)
        assert {item["spec"]["actionType"] for item in items} == {action_type}
        assert set(_actions(items)) == expected


async def test_filters_combine(client: httpx.AsyncClient, world: World) -> None:
    await _busy_tenant(client, world)
    items = await _items(
        client, world.admin, userUid=world.bob.uid, resourceKind="apiKey", actionType="update"
    )
    assert _actions(items) == ["apiKey.revoke"]
    assert await _items(client, world.admin, userUid=world.bob.uid, resourceKind="user") == [
        item
        for item in await _items(client, world.admin, userUid=world.bob.uid)
        if item["spec"]["resource"]["kind"] == "user"
    ]


async def test_time_window_with_offsets(client: httpx.AsyncClient, world: World) -> None:
    start = utcnow()
    early = await make_api_key(client, world.alice, "early")
    middle = utcnow()
    late = await make_api_key(client, world.alice, "late")
    end = utcnow()

    def uids(items: list[dict[str, Any]]) -> set[str]:
        return {item["spec"]["resource"]["uid"] for item in items}

    # The same instants written with different offsets select the same records.
    for hours in (0, 2, -5):
        after_middle = await _items(
            client, world.admin, resourceKind="apiKey", startTime=_with_offset(middle, hours)
        )
        assert uids(after_middle) == {late.uid}
        before_middle = await _items(
            client, world.admin, resourceKind="apiKey", endTime=_with_offset(middle, hours)
        )
        assert uids(before_middle) == {early.uid}
        window = await _items(
            client,
            world.admin,
            startTime=_with_offset(start, hours),
            endTime=_with_offset(end, hours),
        )
        assert uids(window) == {early.uid, late.uid}

    zulu = middle.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert uids(await _items(client, world.admin, resourceKind="apiKey", startTime=zulu)) == {
        late.uid
    }
    # Everything the world did happened before the test started.
    before = await _items(client, world.admin, endTime=_with_offset(start, 1))
    assert {item["spec"]["resource"]["kind"] for item in before} == {"tenant", "user"}
    assert await _items(client, world.admin, startTime=_with_offset(end, 3)) == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"startTime": "2030-01-01T00:00:00"}, "InvalidRequest"),
        ({"endTime": "2030-01-01"}, "InvalidRequest"),
        ({"startTime": "yesterday"}, "InvalidRequest"),
        (
            {"startTime": "2030-01-01T00:00:00+02:00", "endTime": "2030-01-01T00:00:00+02:00"},
            "InvalidTimeRange",
        ),
        (
            {"startTime": "2030-01-01T00:00:00Z", "endTime": "2030-01-01T01:00:00+02:00"},
            "InvalidTimeRange",
        ),
        ({"resourceKind": "cluster"}, "InvalidRequest"),
        ({"actionType": "publish-everything"}, "InvalidRequest"),
        ({"resourceUid": "f" * 65}, "InvalidRequest"),
        ({"limit": 0}, "InvalidRequest"),
        ({"limit": 100000}, "InvalidRequest"),
        ({"offset": -1}, "InvalidRequest"),
        ({"continue": "not-a-token"}, "InvalidContinueToken"),
        ({"offset": 1, "continue": "eyJvIjogMX0"}, "InvalidRequest"),
    ],
)
async def test_bad_filters_are_a_clear_400(
    client: httpx.AsyncClient, world: World, params: dict[str, Any], code: str
) -> None:
    response = await client.get(AUDITS, params=params, headers=world.admin.headers)
    _assert_error(response, 400, code)


# --- paging -----------------------------------------------------------------------------


async def test_paging_with_limit_offset_and_continue(
    client: httpx.AsyncClient, world: World
) -> None:
    for index in range(5):
        await make_api_key(client, world.alice, f"key-{index}")
    everything = [item["metadata"]["uid"] for item in await _items(client, world.admin)]
    total = len(everything)
    assert total >= 5 + 4 + 3  # keys, world logins, world users (and the tenant)

    first = await _audits(client, world.admin, limit=4)
    meta = first["listmeta"]
    assert set(meta) == {"continue", "count", "limit", "offset"}
    assert (meta["count"], meta["limit"], meta["offset"]) == (total, 4, 4)
    assert meta["continue"]
    seen = [item["metadata"]["uid"] for item in first["items"]]
    token = meta["continue"]
    while token:
        page = await _audits(client, world.admin, limit=4, **{"continue": token})
        assert page["listmeta"]["count"] == total
        seen += [item["metadata"]["uid"] for item in page["items"]]
        token = page["listmeta"]["continue"]
    assert seen == everything

    by_offset = await _audits(client, world.admin, limit=3, offset=total - 2)
    assert [item["metadata"]["uid"] for item in by_offset["items"]] == everything[-2:]
    assert by_offset["listmeta"] == {"continue": "", "count": total, "limit": 3, "offset": total}

    # Newest first: the last key made heads the first page.
    assert first["items"][0]["spec"]["resource"]["name"] == "key-4"


async def test_paging_applies_to_the_filtered_records(
    client: httpx.AsyncClient, world: World
) -> None:
    keys = [await make_api_key(client, world.alice, f"key-{index}") for index in range(3)]
    page = await _audits(client, world.admin, resourceKind="apiKey", limit=2)
    assert page["listmeta"]["count"] == 3
    assert [item["spec"]["resource"]["uid"] for item in page["items"]] == [
        keys[2].uid,
        keys[1].uid,
    ]
    rest = await _audits(
        client,
        world.admin,
        resourceKind="apiKey",
        limit=2,
        **{"continue": page["listmeta"]["continue"]},
    )
    assert [item["spec"]["resource"]["uid"] for item in rest["items"]] == [keys[0].uid]
    assert rest["listmeta"]["continue"] == ""


async def test_a_plain_request_answers_the_newest_records(
    client: httpx.AsyncClient, world: World
) -> None:
    await make_api_key(client, world.alice, "newest")
    response = await client.get(AUDITS, headers=world.admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["items"][0]["spec"]["resource"]["name"] == "newest"
    assert body["listmeta"]["count"] == len(body["items"])


# --- tenants ----------------------------------------------------------------------------


async def test_another_tenants_events_never_appear(client: httpx.AsyncClient, world: World) -> None:
    other = world.other_admin
    globex_key = await make_api_key(client, other, "globex-key")
    revoked = await client.patch(
        f"/v1/apiKeys/{globex_key.uid}", json={"isActive": False}, headers=other.headers
    )
    assert revoked.status_code == 204
    globex_user = await _create_user(client, other, "gus@globex.example")
    await _wrong_login(client, other)
    acme_key = await make_api_key(client, world.alice, "acme-key")

    response = await client.get(AUDITS, params={"limit": 1000}, headers=world.admin.headers)
    assert response.status_code == 200
    for marker in (globex_key.uid, globex_user, other.uid, other.tenant_uid, "globex"):
        assert marker not in response.text
    for params in (
        {"userUid": other.uid},
        {"resourceUid": globex_key.uid},
        {"resourceUid": globex_user},
        {"resourceUid": other.uid},
    ):
        assert await _items(client, world.admin, **params) == []

    # And the other way round.
    response = await client.get(AUDITS, params={"limit": 1000}, headers=other.headers)
    assert response.status_code == 200
    for marker in (acme_key.uid, world.alice.uid, world.admin.uid, "acme"):
        assert marker not in response.text
    globex_uids = {item["spec"]["resource"]["uid"] for item in response.json()["items"]}
    assert globex_uids == {other.tenant_uid, other.uid, globex_key.uid, globex_user}
    assert await _items(client, other, userUid=world.alice.uid) == []


# --- secrets ----------------------------------------------------------------------------


async def _stored_hashes(runtime: Runtime) -> list[str]:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        keys = (await session.scalars(select(ApiKey.key_hash))).all()
        tokens = (await session.scalars(select(AuthSession.token_hash))).all()
        passwords = (await session.scalars(select(User.password_hash))).all()
    return [*keys, *tokens, *(value for value in passwords if value)]


async def test_no_secret_ever_appears_in_the_audit_log(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    keys = [
        await make_api_key(client, world.alice, "deploy", description="for CI"),
        await make_api_key(client, world.admin, "for-bob", user_uid=world.bob.uid),
    ]
    # Use a key, edit it, revoke it, and create one with another key.
    assert (await client.get("/v1/users/info", headers=keys[0].headers)).status_code == 200
    edited = await client.put(
        f"/v1/apiKeys/{keys[0].uid}",
        json={"metadata": {"name": "deploy-2"}},
        headers=keys[0].headers,
    )
    assert edited.status_code == 204
    by_key = await client.post(
        "/v1/apiKeys", json={"metadata": {"name": "by-key"}}, headers=keys[0].headers
    )
    assert by_key.status_code == 201
    values = [key.value for key in keys] + [by_key.json()["apiKey"]]

    # A user created with a password, given a new one, logging in right and wrong.
    carol_uid = await _create_user(client, world.admin, "carol@acme.example", CAROL_PASSWORD)
    changed = await client.patch(
        f"/v1/users/{carol_uid}",
        json=[{"op": "replace", "path": "/spec/password", "value": CAROL_NEW_PASSWORD}],
        headers=world.admin.headers,
    )
    assert changed.status_code == 204
    carol = Actor(
        uid=carol_uid,
        email="carol@acme.example",
        tenant_uid=world.admin.tenant_uid,
        tenant_name="acme",
        password=CAROL_NEW_PASSWORD,
    )
    await login(client, carol)
    await _wrong_login(client, carol)
    await _wrong_login(client, world.alice)
    refused = await client.post(
        "/v1/users",
        json={"spec": {"emailId": "dave@acme.example", "password": "short-pw"}},
        headers=world.admin.headers,
    )
    _assert_error(refused, 400, "InvalidPassword")
    # A renewed session token, and a logged-out one.
    renewed = await client.get(f"/v1/auth/refresh/{world.bob.headers['Authorization']}")
    assert renewed.status_code == 200, renewed.text
    renewed_token = renewed.json()["Authorization"]
    logged_out = await client.post("/v1/auth/logout", headers={"Authorization": renewed_token})
    assert logged_out.status_code == 204

    tokens = [
        actor.headers["Authorization"]
        for actor in (world.admin, world.alice, world.bob, world.other_admin, carol)
    ] + [renewed_token]
    passwords = [DEFAULT_PASSWORD, CAROL_PASSWORD, CAROL_NEW_PASSWORD, WRONG_PASSWORD, "short-pw"]
    secrets = values + tokens + passwords + await _stored_hashes(runtime)

    responses = [
        await client.get(AUDITS, params={"limit": 1000}, headers=world.admin.headers),
        await client.get(AUDITS, headers=world.admin.headers),
        await client.get(
            AUDITS, params={"resourceKind": "user", "limit": 1000}, headers=world.admin.headers
        ),
        await client.get(
            AUDITS, params={"actionType": "activity", "limit": 1000}, headers=keys[1].headers
        ),
    ]
    # keys[1] belongs to bob, a user: refused, and the refusal carries no secret either.
    _assert_error(responses[-1], 403, "Forbidden")
    for response in responses[:-1]:
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) > 10
    for response in responses:
        for secret in secrets:
            assert secret not in response.text
        assert "$argon2" not in response.text
        assert "kp_" not in response.text
        assert "kps_" not in response.text
