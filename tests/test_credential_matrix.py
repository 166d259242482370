"""Every operation, REST and console, sent with every kind of credential that must not work.

Each cell asserts the exact status and error code; each sweep then checks that nothing
stored changed. The REST operations come from the app's own OpenAPI document and the
console's from its router, so an endpoint added later is in the matrix without anyone
remembering to add it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text, update

from keyplane.auth.scopes import OPERATION_SCOPES, SCOPES
from keyplane.console.router import router as console_router
from keyplane.console.session import SESSION_COOKIE, csrf_token_for
from keyplane.kit.db import transaction
from keyplane.kit.keys import generate_api_key
from keyplane.kit.time import utcnow
from keyplane.models import AuthSession, Tenant
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.api_keys.helpers import backdate_expiry, make_api_key
from tests.conftest import make_settings
from tests.helpers import World, http_scope
from tests.matrix import count
from tests.permissions.helpers import make_permission, make_role, permission_body, role_body
from tests.users.helpers import Actor, login, make_user

# Operations anyone may call: they take no credential, or the path carries it.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    # Guarded by KEYPLANE_METRICS (address or its own token), not by a user's credential.
    ("GET", "/metrics"),
    ("POST", "/v1/auth/authenticate"),
    ("GET", "/v1/auth/refresh/{token}"),
    # Leak reports: anyone's (rate limited per address), and GitHub's (signed by GitHub).
    ("POST", "/v1/apiKeys/leaks"),
    ("POST", "/v1/apiKeys/leaks/github"),
}
# "/" only sends the visitor on (to the login page or to My API Keys, which checks).
CONSOLE_PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/")}
# Stored state that a refused request must leave alone. Audit events are left out on
# purpose: refusals may be recorded there.
WATCHED_TABLES = (
    "tenants",
    "users",
    "api_keys",
    "resource_limits",
    "auth_sessions",
    "permissions",
    "permission_roles",
)


@pytest.fixture
def settings(database_url: str, tmp_path: Any) -> Settings:
    # Hundreds of refusals from one address: keep them clear of the failure rate limit,
    # which has tests of its own.
    return make_settings(database_url, tmp_path, auth_failure_burst=1_000_000)


@dataclass(frozen=True)
class Credential:
    name: str
    status: int
    code: str
    make: Callable[[httpx.AsyncClient, Runtime, World], Awaitable[dict[str, str]]]


async def _key_of(client: httpx.AsyncClient, owner: Actor, name: str) -> tuple[str, str]:
    key = await make_api_key(client, owner, name)
    return key.uid, key.value


async def _anonymous(_c: httpx.AsyncClient, _r: Runtime, _w: World) -> dict[str, str]:
    return {}


async def _revoked_key(client: httpx.AsyncClient, _r: Runtime, world: World) -> dict[str, str]:
    uid, value = await _key_of(client, world.alice, "revoked")
    response = await client.patch(
        f"/v1/apiKeys/{uid}", json={"isActive": False}, headers=world.alice.headers
    )
    assert response.status_code == 204
    return {"ApiKey": value}


async def _expired_key(client: httpx.AsyncClient, runtime: Runtime, world: World) -> dict[str, str]:
    uid, value = await _key_of(client, world.alice, "expired")
    await backdate_expiry(runtime, uid)
    return {"ApiKey": value}


async def _deleted_key(client: httpx.AsyncClient, _r: Runtime, world: World) -> dict[str, str]:
    uid, value = await _key_of(client, world.alice, "deleted")
    assert (await client.delete(f"/v1/apiKeys/{uid}", headers=world.alice.headers)).is_success
    return {"ApiKey": value}


async def _deactivated_owner(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> dict[str, str]:
    carol = await _carol(client, runtime, world)
    _uid, value = await _key_of(client, carol, "carol's")
    await _deactivate(client, world, carol)
    return {"ApiKey": value}


async def _malformed_key(_c: httpx.AsyncClient, _r: Runtime, _w: World) -> dict[str, str]:
    return {"ApiKey": "kp_this-is-not-a-key"}


async def _bad_checksum(_c: httpx.AsyncClient, _r: Runtime, _w: World) -> dict[str, str]:
    value = generate_api_key()
    return {"ApiKey": value[:-1] + ("0" if value[-1] != "0" else "1")}


async def _unknown_key(_c: httpx.AsyncClient, _r: Runtime, _w: World) -> dict[str, str]:
    return {"ApiKey": generate_api_key()}


async def _expired_session(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> dict[str, str]:
    headers = await _fresh_session(client, world.alice)
    async with transaction(runtime.sessionmaker) as session:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.user_uid == world.alice.uid)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    return headers


async def _logged_out_session(
    client: httpx.AsyncClient, _r: Runtime, world: World
) -> dict[str, str]:
    headers = await _fresh_session(client, world.bob)
    assert (await client.post("/v1/auth/logout", headers=headers)).is_success
    return headers


async def _deactivated_users_session(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> dict[str, str]:
    carol = await _carol(client, runtime, world)
    await _deactivate(client, world, carol)
    return carol.headers


async def _garbage_session(_c: httpx.AsyncClient, _r: Runtime, _w: World) -> dict[str, str]:
    return {"Authorization": "Bearer not-a-token"}


async def _fresh_session(client: httpx.AsyncClient, actor: Actor) -> dict[str, str]:
    stand_in = Actor(actor.uid, actor.email, actor.tenant_uid, actor.tenant_name, actor.password)
    return await login(client, stand_in)


async def _carol(client: httpx.AsyncClient, runtime: Runtime, world: World) -> Actor:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        acme = await session.get(Tenant, world.admin.tenant_uid)
    assert acme is not None
    carol = await make_user(runtime, acme, "carol@acme.example", first_name="Carol")
    await login(client, carol)
    return carol


async def _deactivate(client: httpx.AsyncClient, world: World, actor: Actor) -> None:
    response = await client.patch(
        f"/v1/users/{actor.uid}",
        json=[{"op": "replace", "path": "/status/isActive", "value": False}],
        headers=world.admin.headers,
    )
    assert response.status_code == 204, response.text


CREDENTIALS = [
    Credential("anonymous", 401, "AuthenticationRequired", _anonymous),
    Credential("revoked key", 401, "ApiKeyRevoked", _revoked_key),
    Credential("expired key", 401, "ApiKeyExpired", _expired_key),
    Credential("deleted key", 401, "ApiKeyInvalid", _deleted_key),
    Credential("deactivated user's key", 401, "ApiKeyUserInactive", _deactivated_owner),
    Credential("malformed key", 401, "ApiKeyMalformed", _malformed_key),
    Credential("key with a bad checksum", 401, "ApiKeyMalformed", _bad_checksum),
    Credential("well-formed unknown key", 401, "ApiKeyInvalid", _unknown_key),
    Credential("expired session token", 401, "TokenExpired", _expired_session),
    Credential("logged-out session token", 401, "TokenRevoked", _logged_out_session),
    Credential("deactivated user's session", 401, "UserInactive", _deactivated_users_session),
    Credential("garbage session token", 401, "TokenInvalid", _garbage_session),
]


def rest_operations(app: FastAPI) -> Iterator[tuple[str, str]]:
    for path, item in app.openapi()["paths"].items():
        for method in item:
            if (method.upper(), path) not in PUBLIC:
                yield method.upper(), path


def concrete_path(path: str, world: World, key_uid: str) -> str:
    return (
        path.replace("{tenantUid}", world.admin.tenant_uid)
        .replace("/apiKeys/{uid}", f"/apiKeys/{key_uid}")
        .replace("/users/{uid}", f"/users/{world.alice.uid}")
    )


async def snapshot(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        return {
            table: [
                tuple(row)
                for row in (await session.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608
            ]
            for table in WATCHED_TABLES
        }


def _sorted(state: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[str]]:
    return {table: sorted(map(repr, rows)) for table, rows in state.items()}


@pytest.mark.parametrize("credential", CREDENTIALS, ids=lambda credential: credential.name)
async def test_rest_operations_refuse_the_credential(
    credential: Credential,
    app: FastAPI,
    client: httpx.AsyncClient,
    runtime: Runtime,
    world: World,
) -> None:
    target = await make_api_key(client, world.alice, "target")
    headers = await credential.make(client, runtime, world)
    before = _sorted(await snapshot(runtime))
    operations = list(rest_operations(app))
    assert len(operations) >= 19
    for method, path in operations:
        response = await client.request(
            method,
            concrete_path(path, world, target.uid),
            headers=headers,
            json={} if method in {"POST", "PUT", "PATCH"} else None,
        )
        cell = f"{credential.name}: {method} {path}"
        assert response.status_code == credential.status, f"{cell}: {response.text}"
        body = response.json()
        assert body["code"] == credential.code, cell
        assert set(body) == {"code", "message", "details", "ref"}, cell
        for value in headers.values():
            assert value not in response.text, f"{cell} echoes the credential"
        count("REST operations x refused credentials")
    assert _sorted(await snapshot(runtime)) == before


def console_operations() -> Iterator[tuple[str, str]]:
    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                context = route.include_context
                nested = context.get("prefix", "") if isinstance(context, dict) else ""
                yield from walk(included.routes, prefix + (nested or ""))
            elif getattr(route, "methods", None):
                for method in sorted(route.methods - {"HEAD"}):
                    if (method, route.path) not in CONSOLE_PUBLIC:
                        yield method, prefix + route.path

    yield from walk(list(console_router.routes), "")


CONSOLE_SESSIONS = ["no cookie", "expired session", "logged-out session", "garbage cookie"]


@pytest.mark.parametrize("console_session", CONSOLE_SESSIONS)
async def test_console_pages_send_the_visitor_to_log_in(
    console_session: str, client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    target = await make_api_key(client, world.alice, "target")
    cookie = ""
    if console_session == "expired session":
        cookie = (await _expired_session(client, runtime, world))["Authorization"]
    elif console_session == "logged-out session":
        cookie = (await _logged_out_session(client, runtime, world))["Authorization"]
    elif console_session == "garbage cookie":
        cookie = "kps_garbage"
    before = _sorted(await snapshot(runtime))
    operations = list(console_operations())
    assert len(operations) >= 30
    for method, path in operations:
        concrete = path.replace("/api-keys/{uid}", f"/api-keys/{target.uid}").replace(
            "/users/{uid}", f"/users/{world.alice.uid}"
        )
        response = await client.request(
            method,
            concrete,
            headers={"Cookie": f"{SESSION_COOKIE}={cookie}"} if cookie else {},
            data={"csrf_token": "x", "name": "changed"} if method == "POST" else None,
        )
        cell = f"{console_session}: {method} {path}"
        assert response.status_code == 303, f"{cell}: {response.status_code}"
        assert response.headers["location"].startswith("/login"), cell
        count("console routes x missing or dead sessions")
    assert _sorted(await snapshot(runtime)) == before


async def _console_cookie_and_csrf(runtime: Runtime, headers: dict[str, str]) -> tuple[str, str]:
    """A console session is a session token in a cookie; its CSRF token is bound to it."""
    token = headers["Authorization"]
    async with transaction(runtime.sessionmaker, writes=False) as session:
        auth_session = (
            await session.execute(
                select(AuthSession).where(
                    AuthSession.token_hash == runtime.secret_hasher.hash(token)
                )
            )
        ).scalar_one()
    return token, csrf_token_for(runtime, auth_session.uid)


def _console_expectation(actor: str, path: str) -> int | None:
    """The refusal an actor gets on a page about alice's key or alice herself; None where
    the actor is allowed (those cells belong to the console's feature tests)."""
    about_alice = "{uid}" in path
    tenant_pages = path.startswith("/tenant/")
    if actor == "alice":
        return 403 if tenant_pages else None
    if actor == "bob":
        if tenant_pages:
            return 403
        return 404 if about_alice else None
    # The admin of another tenant: acme's key and user do not exist for them.
    return 404 if about_alice else None


@pytest.mark.parametrize("actor", ["alice", "bob", "other_admin"])
async def test_console_pages_refuse_what_the_actor_may_not_do(
    actor: str, client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    target = await make_api_key(client, world.alice, "target")
    cookie, csrf = await _console_cookie_and_csrf(runtime, getattr(world, actor).headers)
    before = _sorted(await snapshot(runtime))
    cells = 0
    for method, path in console_operations():
        expected = _console_expectation(actor, path)
        if expected is None:
            continue
        concrete = path.replace("/api-keys/{uid}", f"/api-keys/{target.uid}").replace(
            "/users/{uid}", f"/users/{world.alice.uid}"
        )
        response = await client.request(
            method,
            concrete,
            headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
            data={"csrf_token": csrf, "name": "changed", "limit": "1"}
            if method == "POST"
            else None,
        )
        assert response.status_code == expected, f"{actor}: {method} {path}"
        assert target.value not in response.text
        cells += 1
        count("console routes x actors refused")
    assert cells >= 10
    assert _sorted(await snapshot(runtime)) == before


# --- every operation, for every role --------------------------------------------------

ROLES = ("tenant admin", "user", "verifier")
NO_SUCH_UID = "0" * 24
# Every operation of /openapi.json, in the order the sweep runs them (deleting and
# logging out last), with the exact status for (tenant admin, user, verifier). Each one
# acts on what the caller may most plausibly touch: its own key, itself, another user of
# its tenant for changes, its own tenant. A verifier gets 403 VerifierNotAllowed for
# everything but verifying keys, reading /v1/users/info and its own session; a user gets
# 403 Forbidden where only tenant admins may act.
ROLE_TABLE: list[tuple[str, str, tuple[int, int, int]]] = [
    ("GET", "/healthz", (200, 200, 200)),
    ("GET", "/readyz", (200, 200, 200)),
    # Whatever the role: the sweep's client is not on this host (KEYPLANE_METRICS=loopback).
    ("GET", "/metrics", (403, 403, 403)),
    ("POST", "/v1/auth/authenticate", (200, 200, 200)),
    ("GET", "/v1/auth/refresh/{token}", (200, 200, 200)),
    ("GET", "/v1/users/info", (200, 200, 200)),
    ("POST", "/v1/apiKeys/verify", (200, 403, 200)),
    # No credential needed: a credential sent along changes nothing. No GitHub keys are
    # configured here, so the partner endpoint is not there.
    ("POST", "/v1/apiKeys/leaks", (202, 202, 202)),
    ("POST", "/v1/apiKeys/leaks/github", (404, 404, 404)),
    ("GET", "/v1/apiKeys/invalidations", (200, 403, 200)),
    ("GET", "/v1/apiKeys", (200, 200, 403)),
    ("POST", "/v1/apiKeys", (201, 201, 403)),
    ("GET", "/v1/apiKeys/{uid}", (200, 200, 403)),
    ("PUT", "/v1/apiKeys/{uid}", (204, 204, 403)),
    ("PATCH", "/v1/apiKeys/{uid}", (204, 204, 403)),
    ("PUT", "/v1/apiKeys/{uid}/state", (204, 204, 403)),
    ("POST", "/v1/apiKeys/{uid}/rotate", (201, 201, 403)),
    ("DELETE", "/v1/apiKeys/{uid}", (204, 204, 403)),
    ("GET", "/v1/users", (200, 403, 403)),
    ("POST", "/v1/users", (201, 403, 403)),
    ("GET", "/v1/users/{uid}", (200, 200, 403)),
    ("PUT", "/v1/users/{uid}", (204, 403, 403)),
    ("PATCH", "/v1/users/{uid}", (204, 403, 403)),
    ("GET", "/v1/users/me/notifications", (200, 200, 403)),
    ("GET", "/v1/users/me/notificationSettings", (200, 200, 403)),
    # Turning the daily digest on: tenant admins only.
    ("PUT", "/v1/users/me/notificationSettings", (204, 403, 403)),
    ("DELETE", "/v1/users/{uid}", (204, 403, 403)),
    ("GET", "/v1/audits", (200, 403, 403)),
    ("GET", "/v1/tenants/{tenantUid}/resourceLimits", (200, 403, 403)),
    ("PATCH", "/v1/tenants/{tenantUid}/resourceLimits", (204, 403, 403)),
    # Every member reads the rules that bind the keys they create.
    ("GET", "/v1/tenants/{tenantUid}/apiKeyPolicy", (200, 200, 403)),
    ("PUT", "/v1/tenants/{tenantUid}/apiKeyPolicy", (200, 403, 403)),
    ("GET", "/v1/tenants/{tenantUid}/apiKeyPolicy/violations", (200, 403, 403)),
    ("GET", "/v1/permissions", (200, 403, 403)),
    ("POST", "/v1/permissions", (201, 403, 403)),
    ("GET", "/v1/permissionRoles", (200, 403, 403)),
    ("POST", "/v1/permissionRoles", (201, 403, 403)),
    ("PUT", "/v1/permissionRoles/{uid}", (204, 403, 403)),
    ("DELETE", "/v1/permissionRoles/{uid}", (204, 403, 403)),
    ("DELETE", "/v1/permissions/{uid}", (204, 403, 403)),
    ("GET", "/v1/webhooks/endpoints", (200, 403, 403)),
    ("POST", "/v1/webhooks/endpoints", (201, 403, 403)),
    ("GET", "/v1/webhooks/endpoints/{uid}", (200, 403, 403)),
    ("PUT", "/v1/webhooks/endpoints/{uid}", (200, 403, 403)),
    ("POST", "/v1/webhooks/endpoints/{uid}/rotateSecret", (200, 403, 403)),
    ("GET", "/v1/webhooks/endpoints/{uid}/deliveries", (200, 403, 403)),
    ("POST", "/v1/webhooks/deliveries/{uid}/resend", (201, 403, 403)),
    ("DELETE", "/v1/webhooks/endpoints/{uid}", (204, 403, 403)),
    ("POST", "/v1/auth/logout", (204, 204, 204)),
]


FEED = "/v1/apiKeys/invalidations"


async def _feed_opening(app: FastAPI, headers: dict[str, str]) -> httpx.Response:
    """The status and first chunk of the invalidation feed, an endless stream that
    httpx's ASGITransport would wait for to end: the app is called directly and told the
    client left once the first chunk (``ready``, or the error body) is sent."""
    status: list[int] = []
    body = bytearray()
    sent = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            sent.set()

    scope = http_scope("GET", FEED, headers)
    await asyncio.wait_for(app(scope, receive, send), 10)
    return httpx.Response(status[0], content=bytes(body))


@dataclass
class RoleCell:
    """One role's actor, the credential it calls with, and the things it acts on."""

    actor: Actor
    headers: dict[str, str]
    own_key: Any
    other_user_uid: str
    deletable_user_uid: str
    # The tenant's own, made by its admin.
    permission_uid: str
    permission_role_uid: str
    # A webhook endpoint of the tenant's, and one delivery to it.
    webhook_endpoint_uid: str = ""
    webhook_delivery_uid: str = ""


async def _role_cell(
    client: httpx.AsyncClient, runtime: Runtime, world: World, role: str, kind: str
) -> RoleCell:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        acme = await session.get(Tenant, world.admin.tenant_uid)
    assert acme is not None
    if role == "verifier":
        actor = await make_user(runtime, acme, "vera@acme.example", role="verifier")
        await login(client, actor)
    else:
        actor = world.admin if role == "tenant admin" else world.alice
    dora = await make_user(runtime, acme, "dora@acme.example")
    # Keys made by the tenant admin: a verifier may not make its own.
    own_key = await make_api_key(client, world.admin, "own", user_uid=actor.uid)
    headers = dict(actor.headers)
    if kind == "apiKey":
        headers = (
            await make_api_key(client, world.admin, "credential", user_uid=actor.uid)
        ).headers
    permission_uid = await make_permission(client, world.admin, "invoices.read")
    role_uid = await make_role(client, world.admin, "billing", ["invoices.read"])
    endpoint = await client.post(
        "/v1/webhooks/endpoints",
        json={"url": "https://hooks.example.com/in", "events": ["apiKey.created"]},
        headers=world.admin.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    endpoint_uid = endpoint.json()["uid"]
    await make_api_key(client, world.admin, "webhook-trigger")
    delivered = await client.get(
        f"/v1/webhooks/endpoints/{endpoint_uid}/deliveries", headers=world.admin.headers
    )
    (delivery,) = delivered.json()["items"]
    return RoleCell(
        actor,
        headers,
        own_key,
        world.bob.uid,
        dora.uid,
        permission_uid,
        role_uid,
        endpoint_uid,
        delivery["uid"],
    )


def _role_request(
    cell: RoleCell, world: World, method: str, path: str, uid: str | None = None
) -> tuple[str, dict[str, Any] | list[Any] | None, dict[str, str]]:
    """The concrete path, the body and the headers of one cell."""
    headers = cell.headers
    body: dict[str, Any] | list[Any] | None = None
    concrete = path.replace("{tenantUid}", cell.actor.tenant_uid)
    if path.startswith("/v1/apiKeys/{uid}"):
        concrete = concrete.replace("{uid}", uid or cell.own_key.uid)
        if path.endswith("/rotate"):
            body = {"gracePeriodSeconds": 3600}
        elif method == "PUT" and not path.endswith("/state"):
            body = {"metadata": {"name": "renamed"}}
        elif method in {"PUT", "PATCH"}:
            body = {"isActive": True}
    elif path == "/v1/users/{uid}":
        target = {"GET": cell.actor.uid, "DELETE": cell.deletable_user_uid}.get(
            method, cell.other_user_uid
        )
        concrete = concrete.replace("{uid}", uid or target)
        if method == "PUT":
            body = {"spec": {"firstName": "Robert"}}
        elif method == "PATCH":
            body = [{"op": "replace", "path": "/spec/lastName", "value": "Bee"}]
    elif path == "/v1/apiKeys/verify":
        body = {"key": cell.own_key.value}
    elif path == "/v1/apiKeys/leaks":
        body = {"leaks": [{"value": generate_api_key(), "url": "https://example.com/x"}]}
    elif path == "/v1/apiKeys/leaks/github":
        body = [{"token": generate_api_key(), "type": "keyplane_api_key"}]
    elif path == "/v1/apiKeys":
        body = {"metadata": {"name": "made-here"}} if method == "POST" else None
    elif path == "/v1/users/me/notificationSettings" and method == "PUT":
        body = {"expiryDigest": True}
    elif path == "/v1/users" and method == "POST":
        body = {"spec": {"emailId": "erin@acme.example", "roles": ["user"]}}
    elif path == "/v1/permissions/{uid}":
        concrete = concrete.replace("{uid}", uid or cell.permission_uid)
    elif path == "/v1/permissionRoles/{uid}":
        concrete = concrete.replace("{uid}", uid or cell.permission_role_uid)
        if method == "PUT":
            body = role_body("renamed", [])
    elif path == "/v1/permissions" and method == "POST":
        body = permission_body("made.here")
    elif path.startswith("/v1/webhooks/endpoints/{uid}"):
        concrete = concrete.replace("{uid}", uid or cell.webhook_endpoint_uid)
        if method == "PUT":
            body = {"url": "https://hooks.example.com/v2", "events": ["user.created"]}
    elif path == "/v1/webhooks/deliveries/{uid}/resend":
        concrete = concrete.replace("{uid}", uid or cell.webhook_delivery_uid)
    elif path == "/v1/webhooks/endpoints" and method == "POST":
        body = {"url": "https://hooks.example.com/made-here", "events": ["apiKey.created"]}
    elif path == "/v1/permissionRoles" and method == "POST":
        body = role_body("made-here", ["invoices.read"])
    elif path.endswith("/apiKeyPolicy") and method == "PUT":
        body = {}
    elif path.endswith("/resourceLimits") and method == "PATCH":
        body = {"resources": [{"kind": "apiKey", "limit": 20}]}
    elif path == "/v1/auth/authenticate":
        actor = cell.actor
        body = {"emailId": actor.email, "org": actor.tenant_name, "password": actor.password}
        headers = {}
    return concrete, body, headers


async def _stored(runtime: Runtime) -> dict[str, list[str]]:
    """What a refused request must leave alone (the last-used time, written in the
    background, left out)."""
    queries = {
        "users": "SELECT * FROM users",
        "api_keys": "SELECT uid, user_uid, name, description, expires_at, is_active FROM api_keys",
        "resource_limits": "SELECT * FROM resource_limits",
        "auth_sessions": "SELECT * FROM auth_sessions",
        "permissions": "SELECT * FROM permissions",
        "permission_roles": "SELECT * FROM permission_roles",
        "webhook_endpoints": "SELECT * FROM webhook_endpoints",
        "webhook_deliveries": "SELECT uid, endpoint_uid, event_uid FROM webhook_deliveries",
    }
    async with transaction(runtime.sessionmaker, writes=False) as session:
        return {
            table: sorted(repr(tuple(row)) for row in (await session.execute(text(query))).all())
            for table, query in queries.items()
        }


@pytest.mark.parametrize("kind", ["session", "apiKey"])
@pytest.mark.parametrize("role", ROLES)
async def test_every_operation_answers_each_role_as_the_permission_table_says(
    role: str, kind: str, app: FastAPI, client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    table = {(method, path): statuses for method, path, statuses in ROLE_TABLE}
    # The table covers every operation there is: a new endpoint must be added to it.
    assert set(table) == set(rest_operations(app)) | PUBLIC
    cell = await _role_cell(client, runtime, world, role, kind)
    column = ROLES.index(role)
    for method, path, statuses in ROLE_TABLE:
        expected = statuses[column]
        if path == "/v1/auth/logout" and kind == "apiKey":
            expected = 400  # NotASession: an API key is revoked, not logged out
        concrete, body, headers = _role_request(cell, world, method, path)
        if path == "/v1/auth/refresh/{token}":
            token = (await _fresh_session(client, cell.actor))["Authorization"]
            concrete = path.replace("{token}", token)
        before = await _stored(runtime) if expected >= 400 else None
        if path == FEED:
            response = await _feed_opening(app, headers)
        else:
            response = await client.request(method, concrete, json=body, headers=headers)
        where = f"{role} by {kind}: {method} {path}"
        assert response.status_code == expected, f"{where}: {response.text}"
        if expected == 403:
            code = "VerifierNotAllowed" if role == "verifier" else "Forbidden"
            if path == "/metrics":
                code = "MetricsLoopbackOnly"
            assert response.json()["code"] == code, where
            assert await _stored(runtime) == before, f"{where} changed something"
            if "{uid}" in path:
                # Refused before any lookup: a uid that exists and one that does not
                # answer alike, so nothing can be learnt by probing.
                missing, _body, _headers = _role_request(cell, world, method, path, NO_SUCH_UID)
                probe = await client.request(method, missing, json=body, headers=headers)
                assert probe.status_code == 403, where
                assert probe.json()["code"] == code, where
        elif expected == 400:
            assert response.json()["code"] == "NotASession", where
        assert cell.own_key.value not in response.text, f"{where} echoes a key"
        count("REST operations x roles")


async def test_console_refuses_a_verifier_every_page_but_logging_out(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    """A verifier has no keys to manage and no tenant to administer: every console page
    answers with the refusal page (403), My API Keys included; it may log out."""
    async with transaction(runtime.sessionmaker, writes=False) as session:
        acme = await session.get(Tenant, world.admin.tenant_uid)
    assert acme is not None
    vera = await make_user(runtime, acme, "vera@acme.example", role="verifier")
    await login(client, vera)
    target = await make_api_key(client, world.admin, "vera's", user_uid=vera.uid)
    cookie, csrf = await _console_cookie_and_csrf(runtime, vera.headers)
    before = _sorted(await snapshot(runtime))
    operations = [op for op in console_operations() if op != ("POST", "/logout")]
    assert ("GET", "/my/api-keys") in operations
    assert ("GET", "/my/api-keys/new") in operations
    for method, path in operations:
        for uid in (target.uid, NO_SUCH_UID):
            concrete = path.replace("{uid}", uid)
            response = await client.request(
                method,
                concrete,
                headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
                data={"csrf_token": csrf, "name": "changed", "limit": "1"}
                if method == "POST"
                else None,
            )
            assert response.status_code == 403, f"verifier: {method} {path}"
            assert target.value not in response.text
            count("console routes x verifier")
    assert _sorted(await snapshot(runtime)) == before
    out = await client.post(
        "/logout", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}, data={"csrf_token": csrf}
    )
    assert out.status_code == 303
    assert out.headers["location"] == "/login"


def _operation_ids(app: FastAPI) -> dict[tuple[str, str], str]:
    return {
        (method.upper(), path): operation["operationId"]
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
    }


# Operations no API key is used for (sessions, probes): outside the scope catalogue.
NOT_KEY_OPERATIONS = {
    "v1Authenticate",
    "v1AuthRefresh",
    "v1AuthLogout",
    "metrics",
    "readyz",
    # Leak reports take no credential (api_keys.leak_endpoints).
    "v1ApiKeysLeaksReport",
    "v1ApiKeysLeaksGitHub",
}


def test_every_operation_has_its_scope_in_the_catalogue(app: FastAPI) -> None:
    """A route added later must say which scope it needs before a scoped key can call it."""
    ids = set(_operation_ids(app).values()) - {"healthz"}
    assert ids - NOT_KEY_OPERATIONS == set(OPERATION_SCOPES)


@pytest.mark.parametrize("kind", ["lacking", "holding"])
async def test_every_operation_answers_a_scoped_key_as_the_scope_catalogue_says(
    kind: str, app: FastAPI, client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    """For each operation a tenant admin's key may call: a key with every scope but the
    one it needs is refused with 403 ApiKeyScopeMissing naming that scope, and changes
    nothing; a key with only that scope gets the tenant admin's answer."""
    table = {(method, path): statuses for method, path, statuses in ROLE_TABLE}
    ids = _operation_ids(app)
    cell = await _role_cell(client, runtime, world, "tenant admin", "apiKey")
    key = await make_api_key(client, world.admin, "scoped")
    # A key that rotates a key obtains its new value, so it may rotate only keys no broader
    # than itself (api_keys.rotation): the key the table rotates carries one scope.
    narrowed_target = await client.put(
        f"/v1/apiKeys/{cell.own_key.uid}",
        json={"spec": {"scopes": ["apiKeys:write"]}},
        headers=world.admin.headers,
    )
    assert narrowed_target.status_code == 204, narrowed_target.text
    for method, path, _statuses in ROLE_TABLE:
        operation = ids[(method, path)]
        if operation not in OPERATION_SCOPES or OPERATION_SCOPES[operation] is None:
            continue
        needed = OPERATION_SCOPES[operation]
        assert needed is not None
        scopes = sorted(set(SCOPES) - {needed}) if kind == "lacking" else [needed]
        narrowed = await client.put(
            f"/v1/apiKeys/{key.uid}", json={"spec": {"scopes": scopes}}, headers=world.admin.headers
        )
        assert narrowed.status_code == 204, narrowed.text
        scoped = RoleCell(**{**cell.__dict__, "headers": {"ApiKey": key.value}})
        concrete, body, headers = _role_request(scoped, world, method, path)
        where = f"{kind} {needed}: {method} {path}"
        before = await _stored(runtime)
        if path == FEED:
            response = await _feed_opening(app, headers)
        else:
            response = await client.request(method, concrete, json=body, headers=headers)
        if kind == "lacking":
            assert response.status_code == 403, f"{where}: {response.text}"
            assert response.json()["code"] == "ApiKeyScopeMissing", where
            assert response.json()["details"] == {"scope": needed}, where
            after = await _stored(runtime)
            # Only the narrowing of the key itself changed anything.
            assert after["users"] == before["users"], where
            assert after["permissions"] == before["permissions"], where
        else:
            assert response.status_code == table[(method, path)][0], f"{where}: {response.text}"
        count("REST operations x scopes")
