"""A tenant's permission names and permission roles through REST: tenant admins define,
list, change and delete them; everyone else is refused; another tenant's are invisible;
and keys lose (or follow) what they were given by name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from keyplane.auth.principal import AuthMethod, Principal
from keyplane.kit.db import transaction
from keyplane.kit.errors import ValidationFailed
from keyplane.kit.invalidation import InvalidationKind
from keyplane.kit.invalidation_feed import Subscription
from keyplane.models import ApiKey, Permission, PermissionRole, Role, Tenant
from keyplane.permissions import repository
from keyplane.permissions import service as permissions
from keyplane.runtime import Runtime
from tests.api_keys.helpers import make_api_key
from tests.helpers import World, wait_until
from tests.permissions.helpers import make_permission, make_role, permission_body, role_body
from tests.users.helpers import Actor, login, make_user

PERMISSIONS = "/v1/permissions"
ROLES = "/v1/permissionRoles"
NO_SUCH_UID = "0" * 24


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details", "ref"}
    assert body["code"] == code, body
    assert body["message"]
    return body


async def _items(client: httpx.AsyncClient, actor: Actor, path: str) -> list[dict[str, Any]]:
    response = await client.get(path, headers=actor.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items"}
    items: list[dict[str, Any]] = body["items"]
    return items


async def _names(client: httpx.AsyncClient, actor: Actor, path: str) -> list[str]:
    return [item["metadata"]["name"] for item in await _items(client, actor, path)]


async def _roles(client: httpx.AsyncClient, actor: Actor) -> dict[str, list[str]]:
    return {
        item["metadata"]["name"]: item["spec"]["permissions"]
        for item in await _items(client, actor, ROLES)
    }


async def _key_with(
    client: httpx.AsyncClient,
    runtime: Runtime,
    owner: Actor,
    name: str,
    permissions: list[str],
    roles: list[str],
) -> str:
    """A key given permissions and roles by name, written straight to its row."""
    key = await make_api_key(client, owner, name)
    async with transaction(runtime.sessionmaker) as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.uid == key.uid)
            .values(permissions=permissions, permission_roles=roles)
        )
    return key.uid


async def _key_grants(runtime: Runtime, uid: str) -> tuple[list[str], list[str]]:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        row = (
            await session.execute(
                select(ApiKey.permissions, ApiKey.permission_roles).where(ApiKey.uid == uid)
            )
        ).one()
    return list(row[0]), list(row[1])


async def _audits(client: httpx.AsyncClient, admin: Actor) -> list[dict[str, Any]]:
    response = await client.get("/v1/audits", params={"limit": 100}, headers=admin.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _of(audits: list[dict[str, Any]], action: str, name: str) -> list[dict[str, Any]]:
    return [
        item["spec"]
        for item in audits
        if item["metadata"]["annotations"]["action"] == action
        and item["spec"]["resource"]["name"] == name
    ]


def _admin_principal(actor: Actor) -> Principal:
    return Principal(
        tenant_uid=actor.tenant_uid,
        tenant_name=actor.tenant_name,
        user_uid=actor.uid,
        email=actor.email,
        first_name="",
        last_name="",
        role=Role.TENANT_ADMIN,
        method=AuthMethod.SESSION,
        credential_uid="",
    )


async def _verifier(client: httpx.AsyncClient, runtime: Runtime, world: World) -> Actor:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        acme = await session.get(Tenant, world.admin.tenant_uid)
    assert acme is not None
    vera = await make_user(runtime, acme, "vera@acme.example", role="verifier")
    await login(client, vera)
    return vera


# --- permissions --------------------------------------------------------------------


async def test_an_admin_defines_lists_and_deletes_permissions(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = world.admin
    assert await _items(client, admin, PERMISSIONS) == []
    response = await client.post(
        PERMISSIONS,
        json=permission_body("invoices.read", "Read the invoices."),
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {"metadata"}
    metadata = created["metadata"]
    assert metadata["name"] == "invoices.read"
    assert metadata["annotations"] == {"description": "Read the invoices."}
    assert metadata["uid"]
    assert metadata["creationTimestamp"].endswith("Z")
    assert metadata["lastModifiedTimestamp"] == metadata["creationTimestamp"]

    for name in ("Zeta", "billing:admin", "a", "invoices.write", "A-1", "x9_x"):
        await make_permission(client, admin, name)
    # By code point, the same on both databases.
    assert await _names(client, admin, PERMISSIONS) == sorted(
        ["invoices.read", "Zeta", "billing:admin", "a", "invoices.write", "A-1", "x9_x"]
    )
    listed = await _items(client, admin, PERMISSIONS)
    assert listed[[item["metadata"]["name"] for item in listed].index("invoices.read")] == created

    paged = await client.get(PERMISSIONS, params={"limit": 3}, headers=admin.headers)
    assert paged.status_code == 200, paged.text
    page = paged.json()
    assert [item["metadata"]["name"] for item in page["items"]] == ["A-1", "Zeta", "a"]
    assert page["listmeta"]["count"] == 7
    after = await client.get(
        PERMISSIONS,
        params={"limit": 3, "continue": page["listmeta"]["continue"]},
        headers=admin.headers,
    )
    assert [item["metadata"]["name"] for item in after.json()["items"]] == [
        "billing:admin",
        "invoices.read",
        "invoices.write",
    ]

    deleted = await client.delete(f"{PERMISSIONS}/{metadata['uid']}", headers=admin.headers)
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    assert "invoices.read" not in await _names(client, admin, PERMISSIONS)
    again = await client.delete(f"{PERMISSIONS}/{metadata['uid']}", headers=admin.headers)
    _error(again, 404, "PermissionNotFound")


async def test_a_name_is_trimmed_and_a_description_is_optional(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.post(
        PERMISSIONS, json=permission_body("  reports.read \t"), headers=world.admin.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["metadata"]["name"] == "reports.read"
    assert response.json()["metadata"]["annotations"] == {"description": ""}


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "with space",
        "-leading",
        ".leading",
        "a" * 65,
        "and",
        "OR",
        "Not",
        "naïve",
        "a/b",
        "a,b",
        "line\nbreak",
        "(x)",
    ],
)
async def test_invalid_names_are_refused(
    name: str, client: httpx.AsyncClient, world: World
) -> None:
    admin = world.admin
    response = await client.post(PERMISSIONS, json=permission_body(name), headers=admin.headers)
    body = _error(response, 400, "InvalidPermissionName")
    assert body["details"] == {"field": "metadata.name"}
    response = await client.post(ROLES, json=role_body(name), headers=admin.headers)
    body = _error(response, 400, "InvalidPermissionRoleName")
    assert body["details"] == {"field": "metadata.name"}
    assert await _items(client, admin, PERMISSIONS) == []
    assert await _items(client, admin, ROLES) == []


async def test_a_reserved_word_is_explained(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        PERMISSIONS, json=permission_body("and"), headers=world.admin.headers
    )
    assert "reserved" in _error(response, 400, "InvalidPermissionName")["message"]


@pytest.mark.parametrize(
    "body",
    [{}, {"metadata": {}}, {"name": "flat"}, {"metadata": {"name": 7}}, {"metadata": "x"}],
)
async def test_malformed_bodies_are_refused(
    body: dict[str, Any], client: httpx.AsyncClient, world: World
) -> None:
    for path in (PERMISSIONS, ROLES):
        response = await client.post(path, json=body, headers=world.admin.headers)
        assert _error(response, 400, "InvalidRequest")["details"]["fields"]


async def test_names_are_unique_per_tenant_and_case_sensitive(
    client: httpx.AsyncClient, world: World
) -> None:
    admin, other = world.admin, world.other_admin
    await make_permission(client, admin, "invoices.read")
    response = await client.post(
        PERMISSIONS, json=permission_body("invoices.read"), headers=admin.headers
    )
    body = _error(response, 409, "PermissionNameTaken")
    assert body["details"] == {"field": "metadata.name"}
    # Names in queries are case-sensitive, so these are other permissions.
    await make_permission(client, admin, "Invoices.Read")
    # Another tenant has names of its own.
    await make_permission(client, other, "invoices.read")
    assert await _names(client, admin, PERMISSIONS) == ["Invoices.Read", "invoices.read"]
    assert await _names(client, other, PERMISSIONS) == ["invoices.read"]


async def test_a_tenant_holds_at_most_1000_permissions(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    admin = world.admin
    async with transaction(runtime.sessionmaker) as session:
        session.add_all(
            Permission(tenant_uid=admin.tenant_uid, name=f"p{number}") for number in range(999)
        )
    await make_permission(client, admin, "the.last")
    response = await client.post(
        PERMISSIONS, json=permission_body("one.more"), headers=admin.headers
    )
    body = _error(response, 409, "PermissionLimitReached")
    assert body["details"] == {"kind": "permission", "limit": 1000}
    # Another tenant's count is its own.
    await make_permission(client, world.other_admin, "one.more")
    assert len(await _items(client, admin, PERMISSIONS)) == 1000


# --- roles --------------------------------------------------------------------------


async def test_an_admin_defines_changes_and_deletes_roles(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = world.admin
    for name in ("invoices.read", "invoices.write", "reports.read"):
        await make_permission(client, admin, name)
    response = await client.post(
        ROLES,
        json=role_body(
            "billing",
            ["invoices.write", "invoices.read", "invoices.write"],
            "Everything about invoices.",
        ),
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    role = response.json()
    assert set(role) == {"metadata", "spec"}
    assert role["metadata"]["name"] == "billing"
    assert role["metadata"]["annotations"] == {"description": "Everything about invoices."}
    # Sorted, without repeats.
    assert role["spec"] == {"permissions": ["invoices.read", "invoices.write"]}
    uid = role["metadata"]["uid"]

    empty = await client.post(ROLES, json={"metadata": {"name": "nobody"}}, headers=admin.headers)
    assert empty.status_code == 201, empty.text
    assert empty.json()["spec"] == {"permissions": []}
    assert await _names(client, admin, ROLES) == ["billing", "nobody"]

    response = await client.put(
        f"{ROLES}/{uid}",
        json=role_body("billing-reader", ["reports.read", "invoices.read"], "Reads."),
        headers=admin.headers,
    )
    assert response.status_code == 204, response.text
    assert response.content == b""
    items = {item["metadata"]["name"]: item for item in await _items(client, admin, ROLES)}
    assert set(items) == {"billing-reader", "nobody"}
    changed = items["billing-reader"]
    assert changed["metadata"]["uid"] == uid
    assert changed["metadata"]["annotations"] == {"description": "Reads."}
    assert changed["spec"] == {"permissions": ["invoices.read", "reports.read"]}
    assert changed["metadata"]["lastModifiedTimestamp"] >= changed["metadata"]["creationTimestamp"]

    # PUT replaces: a description left out is emptied.
    response = await client.put(
        f"{ROLES}/{uid}", json=role_body("billing-reader", []), headers=admin.headers
    )
    assert response.status_code == 204, response.text
    changed = (await _items(client, admin, ROLES))[0]
    assert changed["metadata"]["annotations"] == {"description": ""}
    assert changed["spec"] == {"permissions": []}
    # The permissions must be given.
    response = await client.put(
        f"{ROLES}/{uid}", json={"metadata": {"name": "billing-reader"}}, headers=admin.headers
    )
    _error(response, 400, "InvalidRequest")

    response = await client.delete(f"{ROLES}/{uid}", headers=admin.headers)
    assert response.status_code == 204, response.text
    assert await _names(client, admin, ROLES) == ["nobody"]
    _error(
        await client.delete(f"{ROLES}/{uid}", headers=admin.headers), 404, "PermissionRoleNotFound"
    )
    response = await client.put(f"{ROLES}/{uid}", json=role_body("x"), headers=admin.headers)
    _error(response, 404, "PermissionRoleNotFound")


async def test_a_role_names_only_permissions_of_its_tenant(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = world.admin
    await make_permission(client, admin, "invoices.read")
    # Defined in the other tenant only: unknown here.
    await make_permission(client, world.other_admin, "reports.read")
    response = await client.post(
        ROLES,
        json=role_body("mixed", ["invoices.read", "reports.read", "nope", "bad name"]),
        headers=admin.headers,
    )
    body = _error(response, 400, "UnknownPermission")
    assert body["details"] == {
        "field": "spec.permissions",
        "unknown": ["bad name", "nope", "reports.read"],
    }
    assert "nope" in body["message"]
    assert await _items(client, admin, ROLES) == []

    uid = await make_role(client, admin, "reader", ["invoices.read"])
    response = await client.put(
        f"{ROLES}/{uid}", json=role_body("renamed", ["missing"]), headers=admin.headers
    )
    _error(response, 400, "UnknownPermission")
    # Nothing of the refused change was kept.
    assert await _roles(client, admin) == {"reader": ["invoices.read"]}


async def test_a_role_holds_at_most_100_permissions(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    admin = world.admin
    async with transaction(runtime.sessionmaker) as session:
        session.add_all(
            Permission(tenant_uid=admin.tenant_uid, name=f"p{number:03}") for number in range(101)
        )
    names = [f"p{number:03}" for number in range(101)]
    response = await client.post(ROLES, json=role_body("big", names), headers=admin.headers)
    body = _error(response, 400, "TooManyPermissions")
    assert body["details"] == {"field": "spec.permissions", "max": 100}
    # Repeats do not count.
    response = await client.post(
        ROLES, json=role_body("big", names[:100] + names[:5]), headers=admin.headers
    )
    assert response.status_code == 201, response.text
    assert len(response.json()["spec"]["permissions"]) == 100


async def test_role_names_are_unique_per_tenant(client: httpx.AsyncClient, world: World) -> None:
    admin = world.admin
    await make_role(client, admin, "billing")
    uid = await make_role(client, admin, "support")
    body = _error(
        await client.post(ROLES, json=role_body("billing"), headers=admin.headers),
        409,
        "PermissionRoleNameTaken",
    )
    assert body["details"] == {"field": "metadata.name"}
    response = await client.put(f"{ROLES}/{uid}", json=role_body("billing"), headers=admin.headers)
    _error(response, 409, "PermissionRoleNameTaken")
    # Keeping its own name is no conflict.
    response = await client.put(
        f"{ROLES}/{uid}", json=role_body("support", [], "Kept."), headers=admin.headers
    )
    assert response.status_code == 204, response.text
    await make_role(client, world.other_admin, "billing")
    assert await _names(client, admin, ROLES) == ["billing", "support"]


async def test_a_tenant_holds_at_most_200_roles(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    admin = world.admin
    async with transaction(runtime.sessionmaker) as session:
        session.add_all(
            PermissionRole(tenant_uid=admin.tenant_uid, name=f"r{number}") for number in range(200)
        )
    body = _error(
        await client.post(ROLES, json=role_body("one-more"), headers=admin.headers),
        409,
        "PermissionLimitReached",
    )
    assert body["details"] == {"kind": "permissionRole", "limit": 200}
    await make_role(client, world.other_admin, "one-more")


# --- who may --------------------------------------------------------------------------


def _operations(permission_uid: str, role_uid: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", PERMISSIONS, None),
        ("POST", PERMISSIONS, permission_body("made.here")),
        ("DELETE", f"{PERMISSIONS}/{permission_uid}", None),
        ("GET", ROLES, None),
        ("POST", ROLES, role_body("made-here", ["invoices.read"])),
        ("PUT", f"{ROLES}/{role_uid}", role_body("renamed", [])),
        ("DELETE", f"{ROLES}/{role_uid}", None),
    ]


@pytest.mark.parametrize("who", ["alice", "verifier", "alice's key", "verifier's key"])
async def test_only_tenant_admins_may_read_or_change_anything(
    who: str, client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    admin = world.admin
    permission_uid = await make_permission(client, admin, "invoices.read")
    role_uid = await make_role(client, admin, "reader", ["invoices.read"])
    actor = world.alice if who.startswith("alice") else await _verifier(client, runtime, world)
    headers = actor.headers
    if who.endswith("key"):
        headers = (await make_api_key(client, admin, "credential", user_uid=actor.uid)).headers
    code = "Forbidden" if who.startswith("alice") else "VerifierNotAllowed"
    for method, path, body in [
        *_operations(permission_uid, role_uid),
        *_operations(NO_SUCH_UID, NO_SUCH_UID),
    ]:
        response = await client.request(method, path, json=body, headers=headers)
        refusal = _error(response, 403, code)
        if code == "Forbidden":
            assert "tenant admins" in refusal["message"], refusal
    assert await _names(client, admin, PERMISSIONS) == ["invoices.read"]
    assert await _roles(client, admin) == {"reader": ["invoices.read"]}


async def test_another_tenants_permissions_and_roles_do_not_exist(
    client: httpx.AsyncClient, world: World
) -> None:
    admin, other = world.admin, world.other_admin
    permission_uid = await make_permission(client, admin, "invoices.read")
    role_uid = await make_role(client, admin, "reader", ["invoices.read"])
    assert await _items(client, other, PERMISSIONS) == []
    assert await _items(client, other, ROLES) == []
    for uid in (permission_uid, NO_SUCH_UID):
        response = await client.delete(f"{PERMISSIONS}/{uid}", headers=other.headers)
        _error(response, 404, "PermissionNotFound")
    for uid in (role_uid, NO_SUCH_UID):
        response = await client.put(f"{ROLES}/{uid}", json=role_body("mine"), headers=other.headers)
        _error(response, 404, "PermissionRoleNotFound")
        response = await client.delete(f"{ROLES}/{uid}", headers=other.headers)
        _error(response, 404, "PermissionRoleNotFound")
    # A role of the other tenant cannot name this tenant's permission either.
    response = await client.post(
        ROLES, json=role_body("borrowed", ["invoices.read"]), headers=other.headers
    )
    _error(response, 400, "UnknownPermission")
    assert await _names(client, admin, PERMISSIONS) == ["invoices.read"]
    assert await _roles(client, admin) == {"reader": ["invoices.read"]}


# --- what keys hold -------------------------------------------------------------------


async def test_deleting_a_permission_takes_it_from_every_role_and_key_of_the_tenant(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    admin, other = world.admin, world.other_admin
    doomed = await make_permission(client, admin, "invoices.read")
    for name in ("invoices.write", "invoices.read.all", "xinvoices.read"):
        await make_permission(client, admin, name)
    await make_role(client, admin, "billing", ["invoices.read", "invoices.write"])
    await make_role(client, admin, "reader", ["invoices.read"])
    await make_role(client, admin, "lookalike", ["invoices.read.all", "xinvoices.read"])
    alices = await _key_with(
        client, runtime, world.alice, "alice's", ["invoices.read", "invoices.write"], ["billing"]
    )
    admins = await _key_with(
        client, runtime, admin, "admin's", ["invoices.read.all", "xinvoices.read"], []
    )
    # The same name in another tenant is another permission.
    await make_permission(client, other, "invoices.read")
    await make_role(client, other, "reader", ["invoices.read"])
    globex = await _key_with(client, runtime, other, "globex's", ["invoices.read"], ["reader"])

    response = await client.delete(f"{PERMISSIONS}/{doomed}", headers=admin.headers)
    assert response.status_code == 204, response.text

    assert await _roles(client, admin) == {
        "billing": ["invoices.write"],
        "lookalike": ["invoices.read.all", "xinvoices.read"],
        "reader": [],
    }
    assert await _key_grants(runtime, alices) == (["invoices.write"], ["billing"])
    assert await _key_grants(runtime, admins) == (["invoices.read.all", "xinvoices.read"], [])
    assert await _roles(client, other) == {"reader": ["invoices.read"]}
    assert await _key_grants(runtime, globex) == (["invoices.read"], ["reader"])

    audits = await _audits(client, admin)
    (deleted,) = _of(audits, "permission.delete", "invoices.read")
    assert deleted["resource"] == {
        "kind": "permission",
        "uid": doomed,
        "name": "invoices.read",
        "label": "invoices.read",
    }
    assert deleted["contentMsg"] == "removed from 2 roles and 1 API key"
    (billing,) = _of(audits, "permissionRole.update", "billing")
    assert billing["changes"] == {
        "permissions": {"old": ["invoices.read", "invoices.write"], "new": ["invoices.write"]}
    }
    (reader,) = _of(audits, "permissionRole.update", "reader")
    assert reader["changes"] == {"permissions": {"old": ["invoices.read"], "new": []}}
    assert _of(audits, "permissionRole.update", "lookalike") == []
    assert _of(await _audits(client, other), "permission.delete", "invoices.read") == []


async def test_renaming_or_deleting_a_role_follows_on_every_key_of_the_tenant(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    admin, other = world.admin, world.other_admin
    await make_permission(client, admin, "invoices.read")
    billing = await make_role(client, admin, "billing", ["invoices.read"])
    await make_role(client, admin, "billing2")
    first = await _key_with(client, runtime, world.alice, "first", [], ["billing", "billing2"])
    second = await _key_with(client, runtime, world.bob, "second", ["invoices.read"], ["billing"])
    untouched = await _key_with(client, runtime, admin, "untouched", [], ["billing2"])
    await make_role(client, other, "billing")
    globex = await _key_with(client, runtime, other, "globex's", [], ["billing"])

    response = await client.put(
        f"{ROLES}/{billing}", json=role_body("accounts", ["invoices.read"]), headers=admin.headers
    )
    assert response.status_code == 204, response.text
    assert await _key_grants(runtime, first) == ([], ["accounts", "billing2"])
    assert await _key_grants(runtime, second) == (["invoices.read"], ["accounts"])
    assert await _key_grants(runtime, untouched) == ([], ["billing2"])
    assert await _key_grants(runtime, globex) == ([], ["billing"])

    response = await client.delete(f"{ROLES}/{billing}", headers=admin.headers)
    assert response.status_code == 204, response.text
    assert await _key_grants(runtime, first) == ([], ["billing2"])
    assert await _key_grants(runtime, second) == (["invoices.read"], [])
    assert await _key_grants(runtime, untouched) == ([], ["billing2"])
    assert await _key_grants(runtime, globex) == ([], ["billing"])

    audits = await _audits(client, admin)
    (renamed,) = _of(audits, "permissionRole.update", "accounts")
    assert renamed["changes"] == {"name": {"old": "billing", "new": "accounts"}}
    assert renamed["contentMsg"] == "renamed on 2 API keys"
    (deleted,) = _of(audits, "permissionRole.delete", "accounts")
    assert deleted["actionType"] == "delete"
    assert deleted["contentMsg"] == "removed from 2 API keys"
    assert deleted["changes"] == {"permissions": {"old": ["invoices.read"], "new": None}}


async def test_every_change_is_audited_with_what_it_changed(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = world.admin
    permission_uid = await make_permission(client, admin, "invoices.read", "Read invoices.")
    await make_permission(client, admin, "invoices.write")
    uid = await make_role(client, admin, "billing", ["invoices.read"], "Billing.")
    response = await client.put(
        f"{ROLES}/{uid}",
        json=role_body("billing", ["invoices.read", "invoices.write"], "All of billing."),
        headers=admin.headers,
    )
    assert response.status_code == 204, response.text
    # Nothing changed: nothing recorded.
    response = await client.put(
        f"{ROLES}/{uid}",
        json=role_body("billing", ["invoices.write", "invoices.read"], "All of billing."),
        headers=admin.headers,
    )
    assert response.status_code == 204, response.text

    audits = await _audits(client, admin)
    (created,) = _of(audits, "permission.create", "invoices.read")
    assert created["actionType"] == "create"
    assert created["resource"]["kind"] == "permission"
    assert created["resource"]["uid"] == permission_uid
    assert created["changes"] == {"description": {"old": None, "new": "Read invoices."}}
    assert created["actor"]["user"]["uid"] == admin.uid
    (plain,) = _of(audits, "permission.create", "invoices.write")
    assert plain["changes"] is None
    (role_created,) = _of(audits, "permissionRole.create", "billing")
    assert role_created["resource"]["kind"] == "permissionRole"
    assert role_created["changes"] == {
        "permissions": {"old": None, "new": ["invoices.read"]},
        "description": {"old": None, "new": "Billing."},
    }
    (updated,) = _of(audits, "permissionRole.update", "billing")
    assert updated["actionType"] == "update"
    assert updated["changes"] == {
        "description": {"old": "Billing.", "new": "All of billing."},
        "permissions": {"old": ["invoices.read"], "new": ["invoices.read", "invoices.write"]},
    }


# --- key caches -------------------------------------------------------------------------


@pytest.fixture
async def feed(runtime: Runtime) -> AsyncIterator[Subscription]:
    """What this worker applies to its key cache, as its invalidation feed sees it."""
    await wait_until(lambda: runtime.invalidation_feed.healthy)
    subscription = runtime.invalidation_feed.subscribe("any")
    assert subscription is not None
    yield subscription
    runtime.invalidation_feed.unsubscribe(subscription)


def _drain(subscription: Subscription) -> set[InvalidationKind]:
    """The kinds of invalidation applied since the last look. On SQLite the worker's own
    change comes twice (at its commit, and again from the watched table)."""
    kinds = set()
    while not subscription.queue.empty():
        item = subscription.queue.get_nowait()
        if item.invalidation is not None:
            kinds.add(item.invalidation.kind)
    return kinds


async def test_changes_that_alter_what_keys_may_do_reach_every_key_cache(
    client: httpx.AsyncClient, runtime: Runtime, world: World, feed: Subscription
) -> None:
    admin = world.admin
    generation = runtime.key_cache.generation
    read = await make_permission(client, admin, "invoices.read")
    await make_permission(client, admin, "invoices.write")
    uid = await make_role(client, admin, "billing", ["invoices.read"])
    # Defining names changes no key: nothing to tell.
    assert _drain(feed) == set()

    async def changed(method: str, path: str, body: Any = None) -> set[InvalidationKind]:
        response = await client.request(method, path, json=body, headers=admin.headers)
        assert response.is_success, response.text
        return _drain(feed)

    description_only = role_body("billing", ["invoices.read"], "Only words.")
    assert await changed("PUT", f"{ROLES}/{uid}", description_only) == set()
    more = role_body("billing", ["invoices.read", "invoices.write"], "Only words.")
    assert await changed("PUT", f"{ROLES}/{uid}", more) == {InvalidationKind.ALL}
    renamed = role_body("accounts", ["invoices.read", "invoices.write"], "Only words.")
    assert await changed("PUT", f"{ROLES}/{uid}", renamed) == {InvalidationKind.ALL}
    assert await changed("DELETE", f"{PERMISSIONS}/{read}") == {InvalidationKind.ALL}
    assert await changed("DELETE", f"{ROLES}/{uid}") == {InvalidationKind.ALL}
    assert runtime.key_cache.generation > generation


# --- for attaching to keys, and for the credential path -------------------------------


async def test_names_are_checked_against_the_callers_tenant(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    admin, other = world.admin, world.other_admin
    await make_permission(client, admin, "invoices.read")
    await make_permission(client, admin, "invoices.write")
    await make_role(client, admin, "billing", ["invoices.read"])
    await make_permission(client, other, "reports.read")
    await make_role(client, other, "reports", ["reports.read"])
    principal = _admin_principal(admin)
    async with transaction(runtime.sessionmaker) as session:
        checked = await permissions.check_permission_names(
            session, principal, ["invoices.write", "invoices.read", "invoices.write"]
        )
        assert checked == ["invoices.read", "invoices.write"]
        assert await permissions.check_permission_names(session, principal, []) == []
        assert await permissions.check_role_names(session, principal, ["billing"]) == ["billing"]
        with pytest.raises(ValidationFailed) as refused:
            await permissions.check_permission_names(
                session, principal, ["invoices.read", "reports.read", "nope"]
            )
        assert refused.value.code == "UnknownPermission"
        assert refused.value.details == {
            "field": "spec.permissions",
            "unknown": ["nope", "reports.read"],
        }
        with pytest.raises(ValidationFailed) as refused:
            await permissions.check_role_names(session, principal, ["reports", "billing"])
        assert refused.value.code == "UnknownPermissionRole"
        assert refused.value.details == {"field": "spec.permissionRoles", "unknown": ["reports"]}


async def test_role_permissions_is_the_union_of_a_tenants_named_roles(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    admin, other = world.admin, world.other_admin
    for name in ("a.read", "a.write", "b.read"):
        await make_permission(client, admin, name)
    await make_role(client, admin, "one", ["a.read", "a.write"])
    await make_role(client, admin, "two", ["a.read", "b.read"])
    await make_role(client, admin, "none")
    await make_permission(client, other, "secret")
    await make_role(client, other, "one", ["secret"])
    async with runtime.engine.connect() as connection:
        union = await repository.role_permissions(
            connection, admin.tenant_uid, ["one", "two", "none", "missing"]
        )
        assert union == {"a.read", "a.write", "b.read"}
        assert await repository.role_permissions(connection, admin.tenant_uid, []) == set()
        assert await repository.role_permissions(connection, admin.tenant_uid, ["none"]) == set()
        assert await repository.role_permissions(connection, other.tenant_uid, ["one"]) == {
            "secret"
        }
    async with transaction(runtime.sessionmaker, writes=False) as session:
        assert await repository.role_permissions(session, admin.tenant_uid, ["two"]) == {
            "a.read",
            "b.read",
        }
