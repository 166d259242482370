"""The Palette-shaped users API through REST: tenant admins manage the tenant's users,
everyone reads themselves; deactivating or deleting a user takes their credentials with
them at once; the tenant always keeps an active tenant admin."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from keyplane.kit.db import transaction
from keyplane.models import ApiKey, AuthSession
from keyplane.runtime import Runtime
from tests.api_keys.helpers import CreatedKey, make_api_key
from tests.helpers import World
from tests.users.helpers import DEFAULT_PASSWORD, Actor, login

USERS = "/v1/users"
INFO = "/v1/users/info"
# Distinctive, so that finding one in a response body cannot be a coincidence.
NEW_PASSWORD = "Fresh-Passphrase-for-Carol-4417"
OTHER_PASSWORD = "Another-Passphrase-for-Carol-9902"


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details", "ref"}
    assert body["code"] == code, body
    assert body["message"]
    return body


def _user_body(
    email: str,
    *,
    roles: list[str] | None = None,
    first_name: str = "Carol",
    last_name: str = "Clark",
    password: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "emailId": email,
        "firstName": first_name,
        "lastName": last_name,
        "roles": ["user"] if roles is None else roles,
    }
    if password is not None:
        spec["password"] = password
    return {"metadata": {}, "spec": spec}


async def _create(
    client: httpx.AsyncClient, admin: Actor, email: str, **options: Any
) -> dict[str, Any]:
    response = await client.post(USERS, json=_user_body(email, **options), headers=admin.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _create_actor(
    client: httpx.AsyncClient,
    admin: Actor,
    email: str,
    *,
    role: str = "user",
    password: str = NEW_PASSWORD,
) -> Actor:
    """A new user created through the API, logged in."""
    created = await _create(client, admin, email, roles=[role], password=password)
    actor = Actor(
        uid=created["uid"],
        email=email,
        tenant_uid=admin.tenant_uid,
        tenant_name=admin.tenant_name,
        password=password,
    )
    await login(client, actor)
    return actor


async def _get(client: httpx.AsyncClient, actor: Actor, uid: str) -> dict[str, Any]:
    response = await client.get(f"{USERS}/{uid}", headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _list(client: httpx.AsyncClient, actor: Actor, **params: Any) -> dict[str, Any]:
    response = await client.get(USERS, headers=actor.headers, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _emails(client: httpx.AsyncClient, admin: Actor) -> list[str]:
    return [item["spec"]["emailId"] for item in (await _list(client, admin))["items"]]


async def _patch(
    client: httpx.AsyncClient, actor: Actor, uid: str, operations: Any
) -> httpx.Response:
    return await client.patch(f"{USERS}/{uid}", json=operations, headers=actor.headers)


def _set_active(value: Any) -> list[dict[str, Any]]:
    return [{"op": "replace", "path": "/status/isActive", "value": value}]


async def _set_active_ok(client: httpx.AsyncClient, admin: Actor, uid: str, value: bool) -> None:
    response = await _patch(client, admin, uid, _set_active(value))
    assert response.status_code == 204, response.text


async def _status(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.get(INFO, headers=headers)


async def _login(client: httpx.AsyncClient, email: str, org: str, password: str) -> httpx.Response:
    return await client.post(
        "/v1/auth/authenticate", json={"emailId": email, "org": org, "password": password}
    )


async def _listed_key_uids(client: httpx.AsyncClient, admin: Actor) -> set[str]:
    response = await client.get("/v1/apiKeys", headers=admin.headers)
    assert response.status_code == 200, response.text
    return {item["metadata"]["uid"] for item in response.json()["items"]}


async def _rows_owned_by(runtime: Runtime, user_uid: str) -> tuple[int, int]:
    """(API keys, sessions) stored for a user."""
    async with transaction(runtime.sessionmaker, writes=False) as session:
        keys = await session.scalar(
            select(func.count()).select_from(ApiKey).where(ApiKey.user_uid == user_uid)
        )
        sessions = await session.scalar(
            select(func.count()).select_from(AuthSession).where(AuthSession.user_uid == user_uid)
        )
    return int(keys or 0), int(sessions or 0)


# --- reading ----------------------------------------------------------------------------


async def test_info_answers_the_callers_org_tenant_and_uid(
    client: httpx.AsyncClient, world: World
) -> None:
    for actor in (world.admin, world.alice, world.other_admin):
        response = await client.get(INFO, headers=actor.headers)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "orgName": actor.tenant_name,
            "tenantUid": actor.tenant_uid,
            "userUid": actor.uid,
        }


async def test_admin_lists_the_tenants_users_in_palette_shape(
    client: httpx.AsyncClient, world: World
) -> None:
    body = await _list(client, world.admin)
    assert set(body) == {"items"}
    by_email = {item["spec"]["emailId"]: item for item in body["items"]}
    assert set(by_email) == {world.admin.email, world.alice.email, world.bob.email}

    alice = by_email[world.alice.email]
    assert set(alice) == {"metadata", "spec", "status"}
    assert alice["metadata"]["uid"] == world.alice.uid
    assert alice["metadata"]["name"] == "Alice Liddell"
    assert alice["metadata"]["creationTimestamp"].endswith("Z")
    assert alice["metadata"]["lastModifiedTimestamp"].endswith("Z")
    assert alice["spec"] == {
        "emailId": world.alice.email,
        "firstName": "Alice",
        "lastName": "Liddell",
        "roles": ["user"],
    }
    assert alice["status"]["isActive"] is True
    # The world logged everyone in.
    assert alice["status"]["lastSignIn"] is not None
    assert by_email[world.admin.email]["spec"]["roles"] == ["tenant-admin"]


async def test_user_responses_never_carry_a_password_or_its_hash(
    client: httpx.AsyncClient, world: World
) -> None:
    created = await _create(client, world.admin, "carol@acme.example", password=NEW_PASSWORD)
    for response in (
        await client.get(USERS, headers=world.admin.headers),
        await client.get(f"{USERS}/{created['uid']}", headers=world.admin.headers),
        await client.get(f"{USERS}/{world.alice.uid}", headers=world.alice.headers),
    ):
        assert response.status_code == 200, response.text
        for secret in (NEW_PASSWORD, DEFAULT_PASSWORD, "$argon2", '"password'):
            assert secret not in response.text


async def test_user_reads_themselves_but_no_one_else(
    client: httpx.AsyncClient, world: World
) -> None:
    me = await _get(client, world.alice, world.alice.uid)
    assert me["metadata"]["uid"] == world.alice.uid
    assert me["spec"]["emailId"] == world.alice.email

    for uid in (world.bob.uid, world.admin.uid, world.other_admin.uid, "f" * 24):
        response = await client.get(f"{USERS}/{uid}", headers=world.alice.headers)
        _assert_error(response, 403, "Forbidden")


async def test_user_with_an_api_key_reads_themselves(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "ci")
    response = await client.get(f"{USERS}/{world.alice.uid}", headers=key.headers)
    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["uid"] == world.alice.uid


async def test_admin_reads_any_user_of_the_tenant(client: httpx.AsyncClient, world: World) -> None:
    bob = await _get(client, world.admin, world.bob.uid)
    assert bob["spec"]["emailId"] == world.bob.email
    assert bob["metadata"]["name"] == "Bob By"


# --- creating ---------------------------------------------------------------------------


async def test_created_user_with_a_password_can_log_in(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.post(
        USERS,
        json=_user_body("carol@acme.example", password=NEW_PASSWORD),
        headers=world.admin.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"uid"}
    uid = body["uid"]

    carol = await _get(client, world.admin, uid)
    assert carol["spec"] == {
        "emailId": "carol@acme.example",
        "firstName": "Carol",
        "lastName": "Clark",
        "roles": ["user"],
    }
    assert carol["status"]["isActive"] is True
    assert carol["status"]["lastSignIn"] is None
    assert "carol@acme.example" in await _emails(client, world.admin)

    logged_in = await _login(client, "carol@acme.example", "acme", NEW_PASSWORD)
    assert logged_in.status_code == 200, logged_in.text
    headers = {"Authorization": logged_in.json()["Authorization"]}
    info = await _status(client, headers)
    assert info.status_code == 200
    assert info.json() == {"orgName": "acme", "tenantUid": world.admin.tenant_uid, "userUid": uid}
    assert (await _get(client, world.admin, uid))["status"]["lastSignIn"] is not None
    # A plain user: no user management.
    _assert_error(await client.get(USERS, headers=headers), 403, "Forbidden")


async def test_created_user_without_a_password_cannot_log_in_but_can_hold_keys(
    client: httpx.AsyncClient, world: World
) -> None:
    created = await _create(client, world.admin, "robot@acme.example")
    for password in (DEFAULT_PASSWORD, NEW_PASSWORD):
        _assert_error(
            await _login(client, "robot@acme.example", "acme", password),
            401,
            "InvalidCredentials",
        )
    key = await make_api_key(client, world.admin, "robot", user_uid=created["uid"])
    info = await _status(client, key.headers)
    assert info.status_code == 200, info.text
    assert info.json()["userUid"] == created["uid"]


async def test_email_is_stored_lowercased_and_role_aliases_are_accepted(
    client: httpx.AsyncClient, world: World
) -> None:
    created = await _create(
        client, world.admin, "  Carol@ACME.Example ", roles=["Tenant Admin"], password=NEW_PASSWORD
    )
    carol = await _get(client, world.admin, created["uid"])
    assert carol["spec"]["emailId"] == "carol@acme.example"
    assert carol["spec"]["roles"] == ["tenant-admin"]

    user = await _create(client, world.admin, "dave@acme.example", roles=["Tenant User"])
    assert (await _get(client, world.admin, user["uid"]))["spec"]["roles"] == ["user"]

    # The new tenant admin manages users straight away.
    actor = Actor(
        uid=created["uid"],
        email="carol@acme.example",
        tenant_uid=world.admin.tenant_uid,
        tenant_name="acme",
        password=NEW_PASSWORD,
    )
    await login(client, actor)
    assert world.alice.email in await _emails(client, actor)


@pytest.mark.parametrize("email", ["alice@acme.example", "ALICE@Acme.Example"])
async def test_duplicate_email_is_409_and_creates_nothing(
    client: httpx.AsyncClient, world: World, email: str
) -> None:
    before = await _list(client, world.admin)
    response = await client.post(
        USERS,
        json=_user_body(email, first_name="Other", password=NEW_PASSWORD),
        headers=world.admin.headers,
    )
    _assert_error(response, 409, "UserAlreadyExists")
    assert await _list(client, world.admin) == before
    # The existing user's password was not replaced.
    _assert_error(
        await _login(client, world.alice.email, "acme", NEW_PASSWORD), 401, "InvalidCredentials"
    )
    assert (await _login(client, world.alice.email, "acme", DEFAULT_PASSWORD)).status_code == 200


async def test_same_email_in_another_tenant_is_allowed(
    client: httpx.AsyncClient, world: World
) -> None:
    created = await _create(client, world.admin, world.other_admin.email, password=NEW_PASSWORD)
    assert created["uid"] != world.other_admin.uid
    assert world.other_admin.email in await _emails(client, world.admin)
    # Each tenant's account logs in to its own tenant.
    acme = await _login(client, world.other_admin.email, "acme", NEW_PASSWORD)
    assert acme.status_code == 200, acme.text
    info = await _status(client, {"Authorization": acme.json()["Authorization"]})
    assert info.json()["userUid"] == created["uid"]
    globex = await _login(client, world.other_admin.email, "globex", DEFAULT_PASSWORD)
    assert globex.status_code == 200, globex.text


@pytest.mark.parametrize(
    ("spec_changes", "code"),
    [
        ({"emailId": "not-an-email"}, "InvalidRequest"),
        ({"emailId": "carol@"}, "InvalidRequest"),
        ({"emailId": "carol@localhost"}, "InvalidRequest"),
        ({"emailId": ""}, "InvalidRequest"),
        ({"emailId": None}, "InvalidRequest"),
        ({"roles": ["superuser"]}, "InvalidRole"),
        ({"roles": ["user", "owner"]}, "InvalidRole"),
        ({"roles": "user"}, "InvalidRequest"),
        ({"password": "Short-pass1"}, "InvalidPassword"),
        ({"password": ""}, "InvalidPassword"),
        ({"password": "x" * 257}, "InvalidPassword"),
        ({"firstName": "Car\x00ol"}, "InvalidCharacters"),
        ({"firstName": "Car\u2028ol"}, "InvalidRequest"),
        ({"lastName": "x" * 65}, "InvalidRequest"),
    ],
)
async def test_invalid_create_is_400_and_creates_nothing(
    client: httpx.AsyncClient, world: World, spec_changes: dict[str, Any], code: str
) -> None:
    before = await _list(client, world.admin)
    body = _user_body("carol@acme.example", password=NEW_PASSWORD)
    body["spec"].update(spec_changes)
    response = await client.post(USERS, json=body, headers=world.admin.headers)
    _assert_error(response, 400, code)
    password = body["spec"].get("password")
    if password:
        assert password not in response.text
    assert await _list(client, world.admin) == before
    _assert_error(
        await _login(client, "carol@acme.example", "acme", NEW_PASSWORD),
        401,
        "InvalidCredentials",
    )


@pytest.mark.parametrize(
    "body",
    [{}, {"metadata": {}}, {"spec": []}, [], "carol@acme.example"],
    ids=["empty", "no-spec", "spec-not-object", "list", "string"],
)
async def test_malformed_create_body_is_400(
    client: httpx.AsyncClient, world: World, body: Any
) -> None:
    before = await _list(client, world.admin)
    response = await client.post(USERS, json=body, headers=world.admin.headers)
    _assert_error(response, 400, "InvalidRequest")
    assert await _list(client, world.admin) == before


async def test_password_of_exactly_twelve_characters_is_accepted(
    client: httpx.AsyncClient, world: World
) -> None:
    await _create(client, world.admin, "carol@acme.example", password="twelve-chars")
    response = await _login(client, "carol@acme.example", "acme", "twelve-chars")
    assert response.status_code == 200, response.text


# --- who may manage users ---------------------------------------------------------------


async def test_users_cannot_list_create_update_or_delete_users(
    client: httpx.AsyncClient, world: World
) -> None:
    before = await _list(client, world.admin)
    bob_before = await _get(client, world.admin, world.bob.uid)
    alice = world.alice.headers
    attempts = [
        await client.get(USERS, headers=alice),
        await client.get(USERS, headers=alice, params={"limit": 1}),
        await client.post(
            USERS, json=_user_body("carol@acme.example", password=NEW_PASSWORD), headers=alice
        ),
        await client.put(
            f"{USERS}/{world.bob.uid}", json={"spec": {"firstName": "Robert"}}, headers=alice
        ),
        await _patch(client, world.alice, world.bob.uid, _set_active(False)),
        await client.delete(f"{USERS}/{world.bob.uid}", headers=alice),
    ]
    for response in attempts:
        _assert_error(response, 403, "Forbidden")

    assert await _list(client, world.admin) == before
    assert await _get(client, world.admin, world.bob.uid) == bob_before
    assert (await _status(client, world.bob.headers)).status_code == 200


async def test_users_cannot_change_themselves(client: httpx.AsyncClient, world: World) -> None:
    me = await _get(client, world.alice, world.alice.uid)
    alice = world.alice.headers
    attempts = [
        await _patch(
            client,
            world.alice,
            world.alice.uid,
            [{"op": "replace", "path": "/spec/roles", "value": ["tenant-admin"]}],
        ),
        await _patch(client, world.alice, world.alice.uid, _set_active(False)),
        await client.put(
            f"{USERS}/{world.alice.uid}", json={"spec": {"roles": ["tenant-admin"]}}, headers=alice
        ),
        await client.delete(f"{USERS}/{world.alice.uid}", headers=alice),
    ]
    for response in attempts:
        _assert_error(response, 403, "Forbidden")
    assert await _get(client, world.alice, world.alice.uid) == me
    _assert_error(await client.get(USERS, headers=alice), 403, "Forbidden")


async def test_user_api_key_cannot_manage_users(client: httpx.AsyncClient, world: World) -> None:
    key = await make_api_key(client, world.alice, "ci")
    _assert_error(await client.get(USERS, headers=key.headers), 403, "Forbidden")
    response = await client.delete(f"{USERS}/{world.bob.uid}", headers=key.headers)
    _assert_error(response, 403, "Forbidden")
    assert (await _status(client, world.bob.headers)).status_code == 200


async def test_admin_api_key_manages_users(client: httpx.AsyncClient, world: World) -> None:
    key = await make_api_key(client, world.admin, "automation")
    response = await client.post(USERS, json=_user_body("carol@acme.example"), headers=key.headers)
    assert response.status_code == 201, response.text
    assert "carol@acme.example" in await _emails(client, world.admin)


async def test_another_tenants_user_is_404_for_every_method(
    client: httpx.AsyncClient, world: World
) -> None:
    other = world.other_admin
    before = await _get(client, other, other.uid)
    path = f"{USERS}/{other.uid}"
    admin = world.admin.headers
    attempts = [
        await client.get(path, headers=admin),
        await client.put(path, json={"spec": {"firstName": "Hacked"}}, headers=admin),
        await _patch(client, world.admin, other.uid, _set_active(False)),
        await client.delete(path, headers=admin),
    ]
    for response in attempts:
        _assert_error(response, 404, "UserNotFound")

    assert await _get(client, other, other.uid) == before
    assert (await _status(client, other.headers)).status_code == 200
    assert other.email not in await _emails(client, world.admin)


async def test_unknown_user_is_404(client: httpx.AsyncClient, world: World) -> None:
    path = f"{USERS}/{'f' * 24}"
    admin = world.admin.headers
    _assert_error(await client.get(path, headers=admin), 404, "UserNotFound")
    _assert_error(
        await client.put(path, json={"spec": {"firstName": "X"}}, headers=admin),
        404,
        "UserNotFound",
    )
    _assert_error(await client.delete(path, headers=admin), 404, "UserNotFound")


async def test_users_endpoints_need_credentials(client: httpx.AsyncClient, world: World) -> None:
    before = await _list(client, world.admin)
    for response in (
        await client.get(USERS),
        await client.post(USERS, json=_user_body("carol@acme.example")),
        await client.delete(f"{USERS}/{world.bob.uid}"),
    ):
        _assert_error(response, 401, "AuthenticationRequired")
    assert await _list(client, world.admin) == before


# --- editing ----------------------------------------------------------------------------


async def test_put_changes_only_the_given_fields(client: httpx.AsyncClient, world: World) -> None:
    before = await _get(client, world.admin, world.alice.uid)
    response = await client.put(
        f"{USERS}/{world.alice.uid}",
        json={"metadata": {}, "spec": {"firstName": "Alicia"}},
        headers=world.admin.headers,
    )
    assert response.status_code == 204, response.text
    assert response.content == b""
    after = await _get(client, world.admin, world.alice.uid)
    assert after["spec"] == {**before["spec"], "firstName": "Alicia"}
    assert after["metadata"]["name"] == "Alicia Liddell"
    assert after["status"]["isActive"] is True
    assert after["metadata"]["uid"] == world.alice.uid


async def test_put_changes_the_email_used_to_log_in(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.put(
        f"{USERS}/{world.alice.uid}",
        json={"spec": {"emailId": "Alice.L@Acme.Example", "lastName": "Lidell"}},
        headers=world.admin.headers,
    )
    assert response.status_code == 204, response.text
    after = await _get(client, world.admin, world.alice.uid)
    assert after["spec"]["emailId"] == "alice.l@acme.example"
    assert after["spec"]["lastName"] == "Lidell"

    new = await _login(client, "alice.l@acme.example", "acme", DEFAULT_PASSWORD)
    assert new.status_code == 200, new.text
    _assert_error(
        await _login(client, world.alice.email, "acme", DEFAULT_PASSWORD),
        401,
        "InvalidCredentials",
    )


async def test_put_to_a_taken_email_is_409_and_changes_nothing(
    client: httpx.AsyncClient, world: World
) -> None:
    before = await _get(client, world.admin, world.alice.uid)
    response = await client.put(
        f"{USERS}/{world.alice.uid}",
        json={"spec": {"emailId": "BOB@acme.example", "firstName": "Changed"}},
        headers=world.admin.headers,
    )
    _assert_error(response, 409, "UserAlreadyExists")
    assert await _get(client, world.admin, world.alice.uid) == before

    # Keeping one's own email is no conflict.
    same = await client.put(
        f"{USERS}/{world.alice.uid}",
        json={"spec": {"emailId": world.alice.email}},
        headers=world.admin.headers,
    )
    assert same.status_code == 204, same.text


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ({"emailId": "nope", "firstName": "Changed"}, "InvalidRequest"),
        ({"roles": ["root"], "firstName": "Changed"}, "InvalidRole"),
        ({"roles": "tenant-admin"}, "InvalidRequest"),
        ({"firstName": "x" * 65}, "InvalidRequest"),
    ],
)
async def test_invalid_put_is_400_and_changes_nothing(
    client: httpx.AsyncClient, world: World, spec: dict[str, Any], code: str
) -> None:
    before = await _get(client, world.admin, world.alice.uid)
    response = await client.put(
        f"{USERS}/{world.alice.uid}", json={"spec": spec}, headers=world.admin.headers
    )
    _assert_error(response, 400, code)
    assert await _get(client, world.admin, world.alice.uid) == before


async def test_a_role_change_ends_the_users_sessions_and_applies_to_their_keys_at_once(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    _assert_error(await client.get(USERS, headers=world.alice.headers), 403, "Forbidden")
    _assert_error(await client.get(USERS, headers=key.headers), 403, "Forbidden")
    promoted = await client.put(
        f"{USERS}/{world.alice.uid}",
        json={"spec": {"roles": ["tenant-admin"]}},
        headers=world.admin.headers,
    )
    assert promoted.status_code == 204, promoted.text
    assert (await _get(client, world.admin, world.alice.uid))["spec"]["roles"] == ["tenant-admin"]
    # The session she held ends; her key keeps working, with the new role's rights.
    _assert_error(await _status(client, world.alice.headers), 401, "TokenRevoked")
    by_key = await client.get(USERS, headers=key.headers)
    assert by_key.status_code == 200, by_key.text
    await login(client, world.alice)
    assert world.bob.email in await _emails(client, world.alice)

    demoted = await _patch(
        client,
        world.admin,
        world.alice.uid,
        [{"op": "replace", "path": "/spec/roles", "value": ["user"]}],
    )
    assert demoted.status_code == 204, demoted.text
    _assert_error(await client.get(USERS, headers=world.alice.headers), 401, "TokenRevoked")
    _assert_error(await client.get(USERS, headers=key.headers), 403, "Forbidden")
    await login(client, world.alice)
    _assert_error(await client.get(USERS, headers=world.alice.headers), 403, "Forbidden")


async def test_patch_changes_names_and_email(client: httpx.AsyncClient, world: World) -> None:
    response = await _patch(
        client,
        world.admin,
        world.bob.uid,
        [
            {"op": "replace", "path": "/spec/firstName", "value": "Robert"},
            {"op": "add", "path": "/spec/lastName", "value": "Bee"},
            {"op": "replace", "path": "/spec/emailId", "value": "robert@acme.example"},
        ],
    )
    assert response.status_code == 204, response.text
    bob = await _get(client, world.admin, world.bob.uid)
    assert bob["spec"] == {
        "emailId": "robert@acme.example",
        "firstName": "Robert",
        "lastName": "Bee",
        "roles": ["user"],
    }
    assert bob["status"]["isActive"] is True


async def test_patch_sets_a_new_password(client: httpx.AsyncClient, world: World) -> None:
    response = await _patch(
        client,
        world.admin,
        world.alice.uid,
        [{"op": "replace", "path": "/spec/password", "value": NEW_PASSWORD}],
    )
    assert response.status_code == 204, response.text
    assert NEW_PASSWORD not in response.text
    assert (await _login(client, world.alice.email, "acme", NEW_PASSWORD)).status_code == 200
    _assert_error(
        await _login(client, world.alice.email, "acme", DEFAULT_PASSWORD),
        401,
        "InvalidCredentials",
    )


async def test_patch_with_a_short_password_is_400_and_keeps_the_old_one(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await _patch(
        client,
        world.admin,
        world.alice.uid,
        [
            {"op": "replace", "path": "/spec/firstName", "value": "Changed"},
            {"op": "replace", "path": "/spec/password", "value": "Short-pass1"},
        ],
    )
    _assert_error(response, 400, "InvalidPassword")
    assert "Short-pass1" not in response.text
    assert (await _get(client, world.admin, world.alice.uid))["spec"]["firstName"] == "Alice"
    assert (await _login(client, world.alice.email, "acme", DEFAULT_PASSWORD)).status_code == 200


@pytest.mark.parametrize(
    "operations",
    [
        [],
        {"op": "replace", "path": "/status/isActive", "value": False},
        [{"op": "remove", "path": "/status/isActive"}],
        [{"op": "replace", "path": "/metadata/uid", "value": "f" * 24}],
        [{"op": "replace", "path": "/status/isActive", "value": "false"}],
        [{"op": "replace", "path": "/status/isActive", "value": 0}],
        [{"op": "replace", "path": "/status/isActive"}],
        [{"op": "replace", "path": "/spec/firstName", "value": None}],
        [{"op": "replace", "path": "/spec/emailId", "value": "not-an-email"}],
        [{"op": "replace", "path": "/spec/roles", "value": "tenant-admin"}],
        [{"path": "/status/isActive", "value": False}],
    ],
    ids=[
        "empty",
        "not-a-list",
        "remove",
        "unknown-path",
        "string-bool",
        "int-bool",
        "missing-value",
        "null-value",
        "bad-email",
        "roles-not-list",
        "missing-op",
    ],
)
async def test_invalid_patch_is_400_and_changes_nothing(
    client: httpx.AsyncClient, world: World, operations: Any
) -> None:
    before = await _get(client, world.admin, world.alice.uid)
    response = await _patch(client, world.admin, world.alice.uid, operations)
    _assert_error(response, 400, "InvalidRequest")
    assert await _get(client, world.admin, world.alice.uid) == before
    assert (await _status(client, world.alice.headers)).status_code == 200


async def test_patch_with_an_unknown_role_is_400_invalid_role(
    client: httpx.AsyncClient, world: World
) -> None:
    before = await _get(client, world.admin, world.alice.uid)
    response = await _patch(
        client,
        world.admin,
        world.alice.uid,
        [{"op": "replace", "path": "/spec/roles", "value": ["god"]}],
    )
    _assert_error(response, 400, "InvalidRole")
    assert await _get(client, world.admin, world.alice.uid) == before


# --- deactivating -----------------------------------------------------------------------


async def test_deactivating_a_user_stops_their_keys_and_sessions_at_once(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    bob_key = await make_api_key(client, world.bob, "deploy")
    assert (await _status(client, key.headers)).status_code == 200

    await _set_active_ok(client, world.admin, world.alice.uid, False)

    assert (await _get(client, world.admin, world.alice.uid))["status"]["isActive"] is False
    by_key = await _status(client, key.headers)
    _assert_error(by_key, 401, "ApiKeyUserInactive")
    assert key.value not in by_key.text
    _assert_error(await client.get("/v1/apiKeys", headers=key.headers), 401, "ApiKeyUserInactive")
    _assert_error(await _status(client, world.alice.headers), 401, "UserInactive")
    _assert_error(
        await _login(client, world.alice.email, "acme", DEFAULT_PASSWORD), 401, "UserInactive"
    )
    # The key itself is kept, and others are unaffected.
    assert key.uid in await _listed_key_uids(client, world.admin)
    assert (await _status(client, bob_key.headers)).status_code == 200
    assert (await _status(client, world.bob.headers)).status_code == 200


async def test_reactivating_a_user_restores_their_keys_but_not_their_sessions(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    await _set_active_ok(client, world.admin, world.alice.uid, False)
    _assert_error(await _status(client, key.headers), 401, "ApiKeyUserInactive")

    await _set_active_ok(client, world.admin, world.alice.uid, True)

    assert (await _get(client, world.admin, world.alice.uid))["status"]["isActive"] is True
    by_key = await _status(client, key.headers)
    assert by_key.status_code == 200, by_key.text
    assert by_key.json()["userUid"] == world.alice.uid
    # The session she held when deactivated stays ended; she logs in again.
    _assert_error(await _status(client, world.alice.headers), 401, "TokenRevoked")
    assert (await _login(client, world.alice.email, "acme", DEFAULT_PASSWORD)).status_code == 200


async def test_deactivated_user_still_listed_and_their_keys_kept_through_reactivation(
    client: httpx.AsyncClient, world: World
) -> None:
    keys = [await make_api_key(client, world.alice, f"k{index}") for index in range(2)]
    await _set_active_ok(client, world.admin, world.alice.uid, False)
    listed = {item["metadata"]["uid"]: item for item in (await _list(client, world.admin))["items"]}
    assert listed[world.alice.uid]["status"]["isActive"] is False
    await _set_active_ok(client, world.admin, world.alice.uid, True)
    assert {key.uid for key in keys} <= await _listed_key_uids(client, world.admin)
    for key in keys:
        assert (await _status(client, key.headers)).status_code == 200


async def test_admin_may_deactivate_another_admin_whose_credentials_stop(
    client: httpx.AsyncClient, world: World
) -> None:
    carol = await _create_actor(client, world.admin, "carol@acme.example", role="tenant-admin")
    key = await make_api_key(client, carol, "automation")
    await _set_active_ok(client, world.admin, carol.uid, False)
    _assert_error(await client.get(USERS, headers=carol.headers), 401, "UserInactive")
    _assert_error(await client.get(USERS, headers=key.headers), 401, "ApiKeyUserInactive")


# --- deleting ---------------------------------------------------------------------------


async def test_deleting_a_user_deletes_their_keys_and_sessions(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    own = await make_api_key(client, world.alice, "deploy")
    given = await make_api_key(client, world.admin, "given", user_uid=world.alice.uid)
    bob_key = await make_api_key(client, world.bob, "deploy")
    assert await _rows_owned_by(runtime, world.alice.uid) == (2, 1)

    response = await client.delete(f"{USERS}/{world.alice.uid}", headers=world.admin.headers)
    assert response.status_code == 204, response.text

    for key in (own, given):
        refused = await _status(client, key.headers)
        _assert_error(refused, 401, "ApiKeyInvalid")
        assert key.value not in refused.text
    listed = await _listed_key_uids(client, world.admin)
    assert own.uid not in listed
    assert given.uid not in listed
    assert bob_key.uid in listed
    for uid in (own.uid, given.uid):
        gone = await client.get(f"/v1/apiKeys/{uid}", headers=world.admin.headers)
        _assert_error(gone, 404, "ApiKeyNotFound")

    _assert_error(await _status(client, world.alice.headers), 401, "TokenInvalid")
    _assert_error(
        await _login(client, world.alice.email, "acme", DEFAULT_PASSWORD),
        401,
        "InvalidCredentials",
    )
    _assert_error(
        await client.get(f"{USERS}/{world.alice.uid}", headers=world.admin.headers),
        404,
        "UserNotFound",
    )
    assert world.alice.email not in await _emails(client, world.admin)
    assert await _rows_owned_by(runtime, world.alice.uid) == (0, 0)

    # Everyone else carries on.
    assert (await _status(client, bob_key.headers)).status_code == 200
    assert (await _status(client, world.bob.headers)).status_code == 200
    # Deleting again is 404.
    again = await client.delete(f"{USERS}/{world.alice.uid}", headers=world.admin.headers)
    _assert_error(again, 404, "UserNotFound")


async def test_deleted_users_email_can_be_used_for_a_new_user(
    client: httpx.AsyncClient, world: World
) -> None:
    old_key = await make_api_key(client, world.alice, "deploy")
    response = await client.delete(f"{USERS}/{world.alice.uid}", headers=world.admin.headers)
    assert response.status_code == 204, response.text
    created = await _create(client, world.admin, world.alice.email, password=NEW_PASSWORD)
    assert created["uid"] != world.alice.uid
    # The new account inherits nothing: not the old key, not the old session.
    _assert_error(await _status(client, old_key.headers), 401, "ApiKeyInvalid")
    _assert_error(await _status(client, world.alice.headers), 401, "TokenInvalid")


async def test_keys_an_admin_created_for_others_survive_the_admins_deletion(
    client: httpx.AsyncClient, world: World
) -> None:
    carol = await _create_actor(client, world.admin, "carol@acme.example", role="tenant-admin")
    for_bob: CreatedKey = await make_api_key(client, carol, "from-carol", user_uid=world.bob.uid)
    response = await client.delete(f"{USERS}/{carol.uid}", headers=world.admin.headers)
    assert response.status_code == 204, response.text
    info = await _status(client, for_bob.headers)
    assert info.status_code == 200, info.text
    assert info.json()["userUid"] == world.bob.uid
    assert for_bob.uid in await _listed_key_uids(client, world.admin)
    _assert_error(await _status(client, carol.headers), 401, "TokenInvalid")


# --- the last tenant admin --------------------------------------------------------------


async def _assert_still_admin(client: httpx.AsyncClient, admin: Actor) -> None:
    me = await _get(client, admin, admin.uid)
    assert me["spec"]["roles"] == ["tenant-admin"]
    assert me["status"]["isActive"] is True
    assert (await client.get(USERS, headers=admin.headers)).status_code == 200


async def test_last_active_tenant_admin_cannot_be_deactivated_demoted_or_deleted(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = world.admin
    path = f"{USERS}/{admin.uid}"
    attempts = [
        await _patch(client, admin, admin.uid, _set_active(False)),
        await _patch(
            client, admin, admin.uid, [{"op": "replace", "path": "/spec/roles", "value": ["user"]}]
        ),
        await client.put(path, json={"spec": {"roles": ["user"]}}, headers=admin.headers),
        await client.put(path, json={"spec": {"roles": ["Tenant User"]}}, headers=admin.headers),
        await client.delete(path, headers=admin.headers),
    ]
    for response in attempts:
        _assert_error(response, 409, "LastTenantAdmin")
    await _assert_still_admin(client, admin)


async def test_an_inactive_admin_does_not_count_as_a_remaining_admin(
    client: httpx.AsyncClient, world: World
) -> None:
    carol = await _create_actor(client, world.admin, "carol@acme.example", role="tenant-admin")
    await _set_active_ok(client, world.admin, carol.uid, False)
    admin = world.admin
    _assert_error(
        await _patch(client, admin, admin.uid, _set_active(False)), 409, "LastTenantAdmin"
    )
    _assert_error(
        await client.delete(f"{USERS}/{admin.uid}", headers=admin.headers), 409, "LastTenantAdmin"
    )
    await _assert_still_admin(client, admin)


async def test_the_other_tenants_admin_does_not_count_either(
    client: httpx.AsyncClient, world: World
) -> None:
    # globex has its own admin; acme's only admin is still acme's last one.
    response = await client.delete(f"{USERS}/{world.admin.uid}", headers=world.admin.headers)
    _assert_error(response, 409, "LastTenantAdmin")
    await _assert_still_admin(client, world.admin)


async def test_with_a_second_active_admin_the_first_can_step_down(
    client: httpx.AsyncClient, world: World
) -> None:
    carol = await _create_actor(client, world.admin, "carol@acme.example", role="tenant-admin")
    demoted = await client.put(
        f"{USERS}/{world.admin.uid}", json={"spec": {"roles": ["user"]}}, headers=carol.headers
    )
    assert demoted.status_code == 204, demoted.text
    _assert_error(await client.get(USERS, headers=world.admin.headers), 401, "TokenRevoked")
    await login(client, world.admin)
    _assert_error(await client.get(USERS, headers=world.admin.headers), 403, "Forbidden")

    # Now carol is the last one.
    _assert_error(
        await _patch(client, carol, carol.uid, _set_active(False)), 409, "LastTenantAdmin"
    )
    _assert_error(
        await client.delete(f"{USERS}/{carol.uid}", headers=carol.headers), 409, "LastTenantAdmin"
    )
    await _assert_still_admin(client, carol)

    # Deleting the demoted one is fine.
    deleted = await client.delete(f"{USERS}/{world.admin.uid}", headers=carol.headers)
    assert deleted.status_code == 204, deleted.text


async def test_admin_may_delete_themselves_when_another_admin_remains(
    client: httpx.AsyncClient, world: World
) -> None:
    carol = await _create_actor(client, world.admin, "carol@acme.example", role="tenant-admin")
    response = await client.delete(f"{USERS}/{world.admin.uid}", headers=world.admin.headers)
    assert response.status_code == 204, response.text
    _assert_error(await _status(client, world.admin.headers), 401, "TokenInvalid")
    await _assert_still_admin(client, carol)


# --- paging -----------------------------------------------------------------------------


async def test_list_without_paging_is_exactly_palettes_shape(
    client: httpx.AsyncClient, world: World
) -> None:
    for index in range(3):
        await _create(client, world.admin, f"user{index}@acme.example")
    body = await _list(client, world.admin)
    assert set(body) == {"items"}
    assert len(body["items"]) == 6


async def test_paging_with_limit_offset_and_continue(
    client: httpx.AsyncClient, world: World
) -> None:
    for index in range(4):
        await _create(client, world.admin, f"user{index}@acme.example")
    everyone = [item["metadata"]["uid"] for item in (await _list(client, world.admin))["items"]]
    assert len(everyone) == 7

    first = await _list(client, world.admin, limit=3)
    assert set(first) == {"items", "listmeta"}
    meta = first["listmeta"]
    assert set(meta) == {"continue", "count", "limit", "offset"}
    assert (meta["count"], meta["limit"], meta["offset"]) == (7, 3, 3)
    assert meta["continue"]
    seen = [item["metadata"]["uid"] for item in first["items"]]
    token = meta["continue"]
    pages = 1
    while token:
        page = await _list(client, world.admin, limit=3, **{"continue": token})
        seen += [item["metadata"]["uid"] for item in page["items"]]
        token = page["listmeta"]["continue"]
        pages += 1
    assert pages == 3
    assert seen == everyone

    by_offset = await _list(client, world.admin, limit=3, offset=5)
    assert [item["metadata"]["uid"] for item in by_offset["items"]] == everyone[5:]
    assert by_offset["listmeta"] == {"continue": "", "count": 7, "limit": 3, "offset": 7}

    past_the_end = await _list(client, world.admin, limit=3, offset=50)
    assert past_the_end["items"] == []
    assert past_the_end["listmeta"]["continue"] == ""
    assert past_the_end["listmeta"]["count"] == 7

    # Asking for paging without a limit pages with the default size.
    defaulted = await _list(client, world.admin, offset=0)
    assert [item["metadata"]["uid"] for item in defaulted["items"]] == everyone
    assert defaulted["listmeta"]["continue"] == ""
    assert defaulted["listmeta"]["count"] == 7
    assert defaulted["listmeta"]["limit"] >= 7


async def test_paging_counts_only_the_callers_tenant(
    client: httpx.AsyncClient, world: World
) -> None:
    body = await _list(client, world.other_admin, limit=10)
    assert [item["metadata"]["uid"] for item in body["items"]] == [world.other_admin.uid]
    assert body["listmeta"]["count"] == 1


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 0}, "InvalidRequest"),
        ({"limit": -1}, "InvalidRequest"),
        ({"limit": "ten"}, "InvalidRequest"),
        ({"limit": 100000}, "InvalidRequest"),
        ({"offset": -1}, "InvalidRequest"),
        ({"continue": "not-a-token"}, "InvalidContinueToken"),
        ({"offset": 1, "continue": "eyJvIjogMX0"}, "InvalidRequest"),
    ],
)
async def test_bad_paging_is_a_clear_400(
    client: httpx.AsyncClient, world: World, params: dict[str, Any], code: str
) -> None:
    response = await client.get(USERS, params=params, headers=world.admin.headers)
    _assert_error(response, 400, code)
