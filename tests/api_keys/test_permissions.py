"""The "Who does what" table of the palette notes, cell by cell and in both directions.

Every cell runs twice: with the actor's session token and with an API key the actor owns
as the credential (a key acts with its owner's rights). The cast is the standard world:
admin, alice and bob in tenant "acme", other_admin in tenant "globex"; each of them owns
one target key. A refused cell checks its exact status and code, and then that nothing
changed: the row in the database, the key as the owning tenant's admin reads it, and
whether the key authenticates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from keyplane.kit.db import transaction
from keyplane.kit.keys import is_well_formed_api_key
from keyplane.kit.time import rfc3339, utcnow
from keyplane.models import ApiKey
from keyplane.runtime import Runtime
from tests.api_keys.helpers import CreatedKey, key_body, make_api_key
from tests.helpers import World
from tests.users.helpers import Actor

ACME_ACTORS = ("admin", "alice", "bob")
ACTORS = (*ACME_ACTORS, "other_admin")
KINDS = ("session", "apiKey")
NO_SUCH_UID = "0" * 24
_ROW_COLUMNS = (
    "uid",
    "tenant_uid",
    "user_uid",
    "created_by_uid",
    "name",
    "description",
    "expires_at",
    "is_active",
    "key_hash",
    "created_at",
    "modified_at",
)


@dataclass
class Cast:
    """The world, the credential each actor uses in this run, and the keys in play.

    Target keys and credential keys are created on first use, so that a cell pays only
    for the keys it touches; ``populate`` creates all of them."""

    client: httpx.AsyncClient
    world: World
    kind: str
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    # One key per owner, named "target-<owner>": what the cells act on.
    targets: dict[str, CreatedKey] = field(default_factory=dict)
    # Every key created so far, by uid: (owner's actor name, value).
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)

    def actor(self, name: str) -> Actor:
        actor: Actor = getattr(self.world, name)
        return actor

    def admin_of(self, name: str) -> Actor:
        """The tenant admin of the actor's tenant (read with a session, always)."""
        return self.world.other_admin if name == "other_admin" else self.world.admin

    async def _create(self, owner: str, name: str, **options: Any) -> CreatedKey:
        key = await make_api_key(self.client, self.actor(owner), name, **options)
        self.keys[key.uid] = (owner, key.value)
        return key

    async def headers(self, name: str) -> dict[str, str]:
        """The actor's credential: their session token, or an API key they own."""
        if name not in self.credentials:
            if self.kind == "session":
                self.credentials[name] = dict(self.actor(name).headers)
            else:
                self.credentials[name] = (await self._create(name, f"credential-{name}")).headers
        return self.credentials[name]

    async def target(self, owner: str) -> CreatedKey:
        if owner not in self.targets:
            self.targets[owner] = await self._create(owner, f"target-{owner}", description="before")
        return self.targets[owner]

    async def populate(self) -> None:
        for name in ACTORS:
            await self.target(name)
            await self.headers(name)

    def owned_by(self, *names: str) -> set[str]:
        return {uid for uid, (owner, _value) in self.keys.items() if owner in names}

    def values(self) -> list[str]:
        return [value for _owner, value in self.keys.values()]


@pytest.fixture(params=KINDS)
def cast(request: pytest.FixtureRequest, client: httpx.AsyncClient, world: World) -> Cast:
    return Cast(client=client, world=world, kind=request.param)


# --- observing without changing -------------------------------------------------------


async def _row(runtime: Runtime, uid: str) -> dict[str, Any] | None:
    """The stored key, every column except the last-used time (written in the background)."""
    async with transaction(runtime.sessionmaker, writes=False) as session:
        key = await session.get(ApiKey, uid)
        if key is None:
            return None
        return {column: getattr(key, column) for column in _ROW_COLUMNS}


async def _key_count(runtime: Runtime) -> int:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        return int(await session.scalar(select(func.count()).select_from(ApiKey)) or 0)


async def _admin_view(
    client: httpx.AsyncClient, cast: Cast, owner: str, uid: str
) -> dict[str, Any] | None:
    """The key as the owning tenant's admin reads it; None when it does not exist."""
    response = await client.get(f"/v1/apiKeys/{uid}", headers=cast.admin_of(owner).headers)
    if response.status_code == 404:
        assert response.json()["code"] == "ApiKeyNotFound"
        return None
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    body["status"].pop("lastUsedTimestamp", None)
    return body


async def _admin_list(client: httpx.AsyncClient, admin: Actor) -> list[dict[str, Any]]:
    response = await client.get("/v1/apiKeys", headers=admin.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    for item in items:
        item["status"].pop("lastUsedTimestamp", None)
    return items


async def _auth(client: httpx.AsyncClient, key: CreatedKey) -> tuple[int, str | None]:
    """Whether the key authenticates: (200, owner uid) or (401, code)."""
    response = await client.get("/v1/users/info", headers=key.headers)
    assert key.value not in response.text
    if response.status_code == 200:
        uid: str = response.json()["userUid"]
        return 200, uid
    assert response.status_code == 401, response.text
    code: str = response.json()["code"]
    return 401, code


def _assert_refused(response: httpx.Response, status: int, code: str, *secrets: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "ref"}
    assert body["code"] == code, body
    for secret in secrets:
        assert secret not in response.text


def _without_ref(body: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name != "ref"}


def _no_values(cast: Cast, text: str) -> None:
    for value in cast.values():
        assert value not in text


# --- list -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "sees"),
    [
        ("admin", ACME_ACTORS),  # every key in the tenant
        ("alice", ("alice",)),  # own keys only
        ("bob", ("bob",)),
        ("other_admin", ("other_admin",)),  # the other tenant: none of acme's
    ],
)
async def test_list_shows_exactly_what_the_caller_may_see(
    client: httpx.AsyncClient, cast: Cast, actor: str, sees: tuple[str, ...]
) -> None:
    await cast.populate()
    response = await client.get("/v1/apiKeys", headers=await cast.headers(actor))
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert {item["metadata"]["uid"] for item in items} == cast.owned_by(*sees)
    for item in items:
        owner = cast.keys[item["metadata"]["uid"]][0]
        assert item["spec"]["user"]["uid"] == cast.actor(owner).uid
        assert "apiKey" not in item
    _no_values(cast, response.text)


@pytest.mark.parametrize(
    ("actor", "filter_by", "status", "sees"),
    [
        ("admin", "alice", 200, ("alice",)),
        ("admin", "other_admin", 200, ()),
        ("alice", "alice", 200, ("alice",)),
        ("alice", "bob", 403, ()),
        ("alice", "admin", 403, ()),
        ("other_admin", "alice", 200, ()),
        ("other_admin", "admin", 200, ()),
    ],
)
async def test_list_filtered_by_user_never_widens_what_the_caller_sees(
    client: httpx.AsyncClient,
    cast: Cast,
    actor: str,
    filter_by: str,
    status: int,
    sees: tuple[str, ...],
) -> None:
    await cast.populate()
    response = await client.get(
        "/v1/apiKeys",
        params={"userUid": cast.actor(filter_by).uid},
        headers=await cast.headers(actor),
    )
    if status == 403:
        _assert_refused(response, 403, "Forbidden", *cast.values())
        return
    assert response.status_code == 200, response.text
    assert {item["metadata"]["uid"] for item in response.json()["items"]} == cast.owned_by(*sees)
    _no_values(cast, response.text)


# --- create ---------------------------------------------------------------------------

# spec.userUid as the cell names it: None (left out), "<actor>" (that user's uid),
# "self" (the caller's own uid), "own tenant" / "other tenant" (a tenant's uid),
# "nobody" (a uid no user has).
CREATE_CELLS: list[tuple[str, str | None, int, str]] = [
    # For themselves, both roles, in both tenants.
    ("admin", None, 201, "admin"),
    ("alice", None, 201, "alice"),
    ("other_admin", None, 201, "other_admin"),
    ("admin", "self", 201, "admin"),
    ("alice", "self", 201, "alice"),
    ("other_admin", "self", 201, "other_admin"),
    # The tenant's own uid means the caller (Palette's Go SDK sends it).
    ("admin", "own tenant", 201, "admin"),
    ("alice", "own tenant", 201, "alice"),
    ("other_admin", "own tenant", 201, "other_admin"),
    # For another user of the tenant: admins yes, users no.
    ("admin", "alice", 201, "alice"),
    ("admin", "bob", 201, "bob"),
    ("alice", "bob", 403, "Forbidden"),
    ("alice", "admin", 403, "Forbidden"),
    ("bob", "alice", 403, "Forbidden"),
    # Naming someone of the other tenant (or its uid): not a user of this tenant.
    ("admin", "other_admin", 400, "UnknownUser"),
    ("admin", "other tenant", 400, "UnknownUser"),
    ("other_admin", "alice", 400, "UnknownUser"),
    ("other_admin", "admin", 400, "UnknownUser"),
    ("other_admin", "other tenant", 400, "UnknownUser"),
    ("admin", "nobody", 400, "UnknownUser"),
    # A plain user may not name anyone but themselves, wherever they are.
    ("alice", "other_admin", 403, "Forbidden"),
    ("alice", "other tenant", 403, "Forbidden"),
]


def _user_uid_for(cast: Cast, caller: str, named: str | None) -> str | None:
    if named is None:
        return None
    if named == "self":
        return cast.actor(caller).uid
    if named == "own tenant":
        return cast.actor(caller).tenant_uid
    if named == "other tenant":
        other = cast.world.admin if caller == "other_admin" else cast.world.other_admin
        return other.tenant_uid
    if named == "nobody":
        return NO_SUCH_UID
    return cast.actor(named).uid


@pytest.mark.parametrize(("actor", "named", "status", "outcome"), CREATE_CELLS)
async def test_create(
    client: httpx.AsyncClient,
    runtime: Runtime,
    cast: Cast,
    actor: str,
    named: str | None,
    status: int,
    outcome: str,
) -> None:
    await cast.populate()
    user_uid = _user_uid_for(cast, actor, named)
    count = await _key_count(runtime)
    lists = {
        admin.uid: await _admin_list(client, admin)
        for admin in (cast.world.admin, cast.world.other_admin)
    }
    response = await client.post(
        "/v1/apiKeys",
        json=key_body("new-key", user_uid=user_uid),
        headers=await cast.headers(actor),
    )

    if status != 201:
        _assert_refused(response, status, outcome, *cast.values())
        assert await _key_count(runtime) == count
        for admin in (cast.world.admin, cast.world.other_admin):
            assert await _admin_list(client, admin) == lists[admin.uid]
        return

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"apiKey", "uid"}
    assert is_well_formed_api_key(body["apiKey"])
    created = CreatedKey(uid=body["uid"], value=body["apiKey"])
    owner = cast.actor(outcome)
    assert await _key_count(runtime) == count + 1
    row = await _row(runtime, created.uid)
    assert row is not None
    assert row["user_uid"] == owner.uid
    assert row["tenant_uid"] == owner.tenant_uid
    assert row["created_by_uid"] == cast.actor(actor).uid
    # The key acts as its owner, whoever created it.
    assert await _auth(client, created) == (200, owner.uid)
    view = await _admin_view(client, cast, outcome, created.uid)
    assert view is not None
    assert view["spec"]["user"]["uid"] == owner.uid
    # The owner sees it in their own list; the value is in no body but the 201.
    owner_list = await client.get("/v1/apiKeys", headers=owner.headers)
    assert created.uid in {item["metadata"]["uid"] for item in owner_list.json()["items"]}
    assert created.value not in owner_list.text
    assert (
        created.value
        not in (await client.get(f"/v1/apiKeys/{created.uid}", headers=owner.headers)).text
    )


# --- get, edit, revoke, re-activate, delete on one key ---------------------------------

# (actor, owner of the target key, allowed). Refused cells are all 404: a key the caller
# may not touch is a key they may not see.
KEY_CELLS: list[tuple[str, str, bool]] = [
    ("admin", "admin", True),  # own key
    ("admin", "alice", True),  # another user's key in the tenant
    ("admin", "other_admin", False),  # a key in another tenant
    ("alice", "alice", True),  # own key
    ("alice", "bob", False),  # another user's key in the tenant
    ("alice", "admin", False),  # ... even the admin's
    ("alice", "other_admin", False),  # a key in another tenant
    ("other_admin", "other_admin", True),  # own key, other tenant
    ("other_admin", "alice", False),  # another tenant's admin: never
    ("other_admin", "admin", False),
]
OPERATIONS = (
    "get",
    "edit",
    "revoke (PATCH)",
    "revoke (PUT /state)",
    "re-activate (PATCH)",
    "re-activate (PUT /state)",
    "delete",
)


def _cell_id(cell: tuple[str, str, bool]) -> str:
    actor, owner, allowed = cell
    return f"{actor}-on-{owner}s-key-{'allowed' if allowed else 'refused'}"


async def _perform(
    client: httpx.AsyncClient,
    operation: str,
    uid: str,
    headers: dict[str, str],
    new_expiry: datetime,
) -> httpx.Response:
    path = f"/v1/apiKeys/{uid}"
    if operation == "get":
        return await client.get(path, headers=headers)
    if operation == "edit":
        body = {
            "metadata": {"name": "renamed", "annotations": {"description": "after"}},
            "spec": {"expiry": rfc3339(new_expiry)},
        }
        return await client.put(path, json=body, headers=headers)
    if operation == "delete":
        return await client.delete(path, headers=headers)
    active = operation.startswith("re-activate")
    if operation.endswith("(PATCH)"):
        return await client.patch(path, json={"isActive": active}, headers=headers)
    return await client.put(f"{path}/state", json={"isActive": active}, headers=headers)


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(("actor", "owner", "allowed"), KEY_CELLS, ids=map(_cell_id, KEY_CELLS))
async def test_key_operation(
    client: httpx.AsyncClient,
    runtime: Runtime,
    cast: Cast,
    operation: str,
    actor: str,
    owner: str,
    allowed: bool,
) -> None:
    target = await cast.target(owner)
    headers = await cast.headers(actor)
    if operation.startswith("re-activate"):
        revoked = await client.patch(
            f"/v1/apiKeys/{target.uid}",
            json={"isActive": False},
            headers=cast.admin_of(owner).headers,
        )
        assert revoked.status_code == 204, revoked.text
    new_expiry = (utcnow() + timedelta(days=10)).replace(microsecond=0)
    row_before = await _row(runtime, target.uid)
    view_before = await _admin_view(client, cast, owner, target.uid)
    assert row_before is not None
    assert view_before is not None
    owner_uid = cast.actor(owner).uid

    response = await _perform(client, operation, target.uid, headers, new_expiry)

    if not allowed:
        _assert_refused(response, 404, "ApiKeyNotFound", *cast.values())
        # Indistinguishable from a key that does not exist: nothing to enumerate.
        missing = await _perform(client, operation, NO_SUCH_UID, headers, new_expiry)
        assert missing.status_code == 404
        assert _without_ref(missing.json()) == _without_ref(response.json())
        assert await _row(runtime, target.uid) == row_before
        assert await _admin_view(client, cast, owner, target.uid) == view_before
        expected = (200, owner_uid) if row_before["is_active"] else (401, "ApiKeyRevoked")
        assert await _auth(client, target) == expected
        return

    _no_values(cast, response.text)
    row_after = await _row(runtime, target.uid)
    view_after = await _admin_view(client, cast, owner, target.uid)
    if operation == "get":
        assert response.status_code == 200, response.text
        body = response.json()
        body["status"].pop("lastUsedTimestamp", None)
        assert body == view_before
        assert "apiKey" not in body
        assert row_after == row_before
        return
    assert response.status_code == 204, response.text
    assert response.content == b""
    if operation == "delete":
        assert row_after is None
        assert view_after is None
        assert await _auth(client, target) == (401, "ApiKeyInvalid")
        return

    assert row_after is not None
    assert view_after is not None
    # Whatever changed, the owner, the tenant and the value did not.
    for column in ("user_uid", "tenant_uid", "created_by_uid", "key_hash", "created_at"):
        assert row_after[column] == row_before[column]
    assert view_after["spec"]["user"] == view_before["spec"]["user"]
    assert view_after["spec"]["user"]["uid"] == owner_uid
    if operation == "edit":
        assert view_after["metadata"]["name"] == "renamed"
        assert view_after["metadata"]["annotations"] == {"description": "after"}
        assert view_after["spec"]["expiry"] == rfc3339(new_expiry)
        assert view_after["status"] == view_before["status"]
        assert await _auth(client, target) == (200, owner_uid)
    elif operation.startswith("revoke"):
        assert view_after["status"]["isActive"] is False
        assert row_after["name"] == row_before["name"]
        assert await _auth(client, target) == (401, "ApiKeyRevoked")
    else:
        assert view_after["status"]["isActive"] is True
        assert row_after["name"] == row_before["name"]
        assert await _auth(client, target) == (200, owner_uid)


# --- reassigning: nobody --------------------------------------------------------------


REASSIGN_SHAPES = ("spec.userUid", "spec.user.uid", "with a rename", "PATCH", "PUT /state")


async def _try_reassign(
    client: httpx.AsyncClient, path: str, shape: str, new_uid: str, headers: dict[str, str]
) -> httpx.Response:
    spec = {"userUid": new_uid, "user": {"uid": new_uid}}
    if shape == "spec.userUid":
        return await client.put(path, json={"spec": {"userUid": new_uid}}, headers=headers)
    if shape == "spec.user.uid":
        return await client.put(path, json={"spec": {"user": {"uid": new_uid}}}, headers=headers)
    if shape == "with a rename":
        return await client.put(
            path, json={"metadata": {"name": "moved"}, "spec": spec}, headers=headers
        )
    if shape == "PATCH":
        return await client.patch(path, json={"isActive": True, **spec}, headers=headers)
    return await client.put(f"{path}/state", json={"isActive": True, **spec}, headers=headers)


@pytest.mark.parametrize(
    ("actor", "owner", "new_owner"),
    [
        ("admin", "alice", "bob"),  # an admin moving a user's key to another user
        ("admin", "alice", "admin"),  # ... or to themselves
        ("admin", "admin", "other_admin"),  # ... or across tenants
        ("alice", "alice", "bob"),  # a user giving their key away
        ("alice", "alice", "admin"),
    ],
)
async def test_nobody_can_reassign_a_key(
    client: httpx.AsyncClient,
    runtime: Runtime,
    cast: Cast,
    actor: str,
    owner: str,
    new_owner: str,
) -> None:
    target = await cast.target(owner)
    headers = await cast.headers(actor)
    owner_uid = cast.actor(owner).uid
    new_uid = cast.actor(new_owner).uid
    row_before = await _row(runtime, target.uid)
    assert row_before is not None
    for shape in REASSIGN_SHAPES:
        response = await _try_reassign(client, f"/v1/apiKeys/{target.uid}", shape, new_uid, headers)
        # Palette clients send fields Keyplane does not use, so they are ignored rather
        # than refused: what may change changes, and the owner stays.
        assert response.status_code == 204, (shape, response.text)
        row_after = await _row(runtime, target.uid)
        assert row_after is not None
        assert row_after["user_uid"] == row_before["user_uid"] == owner_uid, shape
        assert row_after["tenant_uid"] == row_before["tenant_uid"], shape
        assert row_after["created_by_uid"] == row_before["created_by_uid"], shape
        assert row_after["key_hash"] == row_before["key_hash"], shape
        view = await _admin_view(client, cast, owner, target.uid)
        assert view is not None
        assert view["spec"]["user"]["uid"] == owner_uid, shape
        assert await _auth(client, target) == (200, owner_uid), shape
    final = await _row(runtime, target.uid)
    assert final is not None
    assert final["name"] == "moved"
    # The would-be owner does not see it (an admin of the same tenant sees every key).
    if new_owner not in ("admin", owner):
        listed = await client.get("/v1/apiKeys", headers=cast.actor(new_owner).headers)
        assert target.uid not in {item["metadata"]["uid"] for item in listed.json()["items"]}


# --- the value after creation: nobody -------------------------------------------------


async def test_no_one_sees_a_key_value_after_creation(
    client: httpx.AsyncClient, runtime: Runtime, cast: Cast
) -> None:
    await cast.populate()
    for name in ACTORS:
        headers = await cast.headers(name)
        listed = await client.get("/v1/apiKeys", headers=headers)
        assert listed.status_code == 200
        _no_values(cast, listed.text)
        for item in listed.json()["items"]:
            assert "apiKey" not in item
            shown = await client.get(f"/v1/apiKeys/{item['metadata']['uid']}", headers=headers)
            assert shown.status_code == 200
            assert "apiKey" not in shown.json()
            _no_values(cast, shown.text)
    for admin in (cast.world.admin, cast.world.other_admin):
        audits = await client.get("/v1/audits", headers=admin.headers)
        assert audits.status_code == 200, audits.text
        _no_values(cast, audits.text)
    # Not even the database holds a value: only its keyed hash.
    for uid, (_owner, value) in cast.keys.items():
        row = await _row(runtime, uid)
        assert row is not None
        assert value not in str(row)
        assert row["key_hash"] == runtime.secret_hasher.hash(value)


async def test_a_key_an_admin_made_for_a_user_is_that_users_own(
    client: httpx.AsyncClient, runtime: Runtime, cast: Cast
) -> None:
    admin_headers = await cast.headers("admin")
    response = await client.post(
        "/v1/apiKeys",
        json=key_body("made-for-alice", user_uid=cast.world.alice.uid),
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    key = CreatedKey(uid=response.json()["uid"], value=response.json()["apiKey"])
    cast.keys[key.uid] = ("alice", key.value)
    path = f"/v1/apiKeys/{key.uid}"
    alice, bob = await cast.headers("alice"), await cast.headers("bob")

    # Bob (same tenant, not the owner) may not touch it; nothing changes.
    before = await _row(runtime, key.uid)
    _assert_refused(await client.get(path, headers=bob), 404, "ApiKeyNotFound", key.value)
    _assert_refused(
        await client.patch(path, json={"isActive": False}, headers=bob), 404, "ApiKeyNotFound"
    )
    _assert_refused(await client.delete(path, headers=bob), 404, "ApiKeyNotFound")
    assert await _row(runtime, key.uid) == before

    # Alice, its owner, manages it like any key of hers.
    shown = await client.get(path, headers=alice)
    assert shown.status_code == 200, shown.text
    assert shown.json()["spec"]["user"]["uid"] == cast.world.alice.uid
    assert key.value not in shown.text
    edited = await client.put(path, json={"metadata": {"name": "mine-now"}}, headers=alice)
    assert edited.status_code == 204, edited.text
    revoked = await client.put(f"{path}/state", json={"isActive": False}, headers=alice)
    assert revoked.status_code == 204, revoked.text
    assert await _auth(client, key) == (401, "ApiKeyRevoked")
    deleted = await client.delete(path, headers=alice)
    assert deleted.status_code == 204, deleted.text
    assert await _row(runtime, key.uid) is None
    assert await _auth(client, key) == (401, "ApiKeyInvalid")
