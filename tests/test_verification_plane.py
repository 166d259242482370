"""One rule, two doors: every request the verification plane answers gets the same answer
(status, body, headers) as FastAPI's own route gives with the plane switched off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyplane.app import create_app
from keyplane.kit.db import transaction
from keyplane.kit.keys import generate_api_key
from keyplane.models import Tenant
from keyplane.runtime import Runtime
from keyplane.verification_plane import VerificationPlane
from tests.api_keys.helpers import CreatedKey, backdate_expiry, make_api_key
from tests.conftest import make_settings
from tests.helpers import World, build_world
from tests.users.helpers import Actor, login, make_user

VERIFY = "/v1/apiKeys/verify"
INFO = "/v1/users/info"
# Everything a client may act on; the request id differs per request and is compared with
# the body's ref instead.
HEADERS = (
    "content-type",
    "content-length",
    "cache-control",
    "pragma",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "content-security-policy",
    "allow",
    "retry-after",
    "location",
)


@dataclass
class Doors:
    plane: httpx.AsyncClient
    fastapi: httpx.AsyncClient
    runtime: Runtime
    other: Runtime


@dataclass
class Cast:
    world: World
    verifier: Actor
    admin_key: CreatedKey
    verifier_key: CreatedKey
    valid: CreatedKey
    revoked: CreatedKey
    expired: CreatedKey
    inactive_owner: CreatedKey
    foreign: CreatedKey


@asynccontextmanager
async def both_doors(database_url: str, data_dir: Path, **options: Any) -> AsyncIterator[Doors]:
    """Two Keyplanes on one database, one with the plane and one without."""
    async with AsyncExitStack() as stack:
        clients: list[httpx.AsyncClient] = []
        runtimes: list[Runtime] = []
        for enabled in (True, False):
            app = create_app(
                make_settings(database_url, data_dir, fast_path_enabled=enabled, **options)
            )
            uses_plane = isinstance(getattr(app.front, "app", None), VerificationPlane)
            assert uses_plane is enabled
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 1234))
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://kp.test")
                )
            )
            runtimes.append(app.state.runtime)
        yield Doors(plane=clients[0], fastapi=clients[1], runtime=runtimes[0], other=runtimes[1])


@pytest.fixture
async def doors(database_url: str, tmp_path: Path) -> AsyncIterator[Doors]:
    async with both_doors(database_url, tmp_path, auth_failure_burst=100_000) as found:
        yield found


@pytest.fixture
async def cast(doors: Doors) -> Cast:
    http, runtime = doors.fastapi, doors.runtime
    world = await build_world(http, runtime)
    async with transaction(runtime.sessionmaker, writes=False) as session:
        acme = await session.get(Tenant, world.admin.tenant_uid)
    assert acme is not None
    verifier = await make_user(runtime, acme, "checker@acme.example", role="verifier")
    await login(http, verifier)
    revoked = await make_api_key(http, world.alice, "revoked")
    await http.patch(
        f"/v1/apiKeys/{revoked.uid}", json={"isActive": False}, headers=world.alice.headers
    )
    expired = await make_api_key(http, world.alice, "expired")
    await backdate_expiry(runtime, expired.uid)
    inactive_owner = await make_api_key(http, world.bob, "bobs")
    deactivated = await http.patch(
        f"/v1/users/{world.bob.uid}",
        json=[{"op": "replace", "path": "/status/isActive", "value": False}],
        headers=world.admin.headers,
    )
    assert deactivated.status_code == 204, deactivated.text
    return Cast(
        world=world,
        verifier=verifier,
        admin_key=await make_api_key(http, world.admin, "admin"),
        verifier_key=await make_api_key(http, world.admin, "verifier", user_uid=verifier.uid),
        valid=await make_api_key(http, world.alice, "valid"),
        revoked=revoked,
        expired=expired,
        inactive_owner=inactive_owner,
        foreign=await make_api_key(http, world.other_admin, "globex"),
    )


def _answer(response: httpx.Response) -> tuple[int, bytes, dict[str, str | None]]:
    request_id = response.headers["x-request-id"]
    content = response.content
    if content.startswith(b"{") and b'"ref"' in content:
        assert response.json()["ref"] == request_id
    return (
        response.status_code,
        content.replace(request_id.encode(), b"<ref>"),
        {name: response.headers.get(name) for name in HEADERS},
    )


async def same_through_both(doors: Doors, method: str, path: str, **options: Any) -> httpx.Response:
    plane = await doors.plane.request(method, path, **options)
    fastapi = await doors.fastapi.request(method, path, **options)
    assert _answer(plane) == _answer(fastapi), f"{method} {path} {options}"
    return plane


def _code(response: httpx.Response) -> str:
    code: str = response.json()["code"]
    return code


async def test_verify_verdicts_are_the_same_through_both_doors(doors: Doors, cast: Cast) -> None:
    admin = cast.admin_key.headers
    expected = {
        cast.valid.value: "VALID",
        cast.revoked.value: "REVOKED",
        cast.expired.value: "EXPIRED",
        cast.inactive_owner.value: "USER_INACTIVE",
        cast.foreign.value: "NOT_FOUND",
        generate_api_key(): "NOT_FOUND",
        "kp_mistyped": "MALFORMED",
        f"  {cast.valid.value}  ": "VALID",
    }
    for verifier in (admin, cast.verifier_key.headers, cast.verifier.headers):
        # Twice: once read from the database, once from each door's key cache.
        for _ in range(2):
            for value, code in expected.items():
                response = await same_through_both(
                    doors, "POST", VERIFY, json={"key": value}, headers=verifier
                )
                assert response.status_code == 200
                assert _code(response) == code
    valid = (await doors.plane.post(VERIFY, json={"key": cast.valid.value}, headers=admin)).json()
    assert (valid["valid"], valid["keyUid"], valid["userUid"], valid["tenantUid"]) == (
        True,
        cast.valid.uid,
        cast.world.alice.uid,
        cast.world.alice.tenant_uid,
    )
    foreign = await doors.plane.post(VERIFY, json={"key": cast.foreign.value}, headers=admin)
    assert foreign.json()["keyUid"] is None
    assert doors.runtime.last_used.pending >= 1


async def test_verify_refusals_are_the_same_through_both_doors(doors: Doors, cast: Cast) -> None:
    admin = cast.admin_key.headers
    key = {"key": cast.valid.value}
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[int, str | None, dict[str, Any]]] = [
        (403, "Forbidden", {"json": key, "headers": cast.valid.headers}),
        (403, "Forbidden", {"json": key, "headers": cast.world.alice.headers}),
        (401, "AuthenticationRequired", {"json": key}),
        (401, "ApiKeyRevoked", {"json": key, "headers": cast.revoked.headers}),
        (401, "ApiKeyExpired", {"json": key, "headers": cast.expired.headers}),
        (401, "ApiKeyUserInactive", {"json": key, "headers": cast.inactive_owner.headers}),
        (401, "ApiKeyInvalid", {"json": key, "headers": {"ApiKey": generate_api_key()}}),
        (401, "ApiKeyMalformed", {"json": key, "headers": {"ApiKey": "kp_nope"}}),
        (401, "TokenInvalid", {"json": key, "headers": {"Authorization": "Bearer nope"}}),
        (400, "AmbiguousCredentials", {"json": key, "headers": {**admin, "Authorization": "x"}}),
        (400, "MalformedJson", {"content": b'{"key": ', "headers": {**admin, **json_type}}),
        # The body is read before the credential is looked at, as FastAPI does...
        (400, "MalformedJson", {"content": b"{", "headers": json_type}),
        # ...and its fields are validated after.
        (401, "AuthenticationRequired", {"json": {}}),
        (400, "InvalidRequest", {"json": {}, "headers": admin}),
        (400, "InvalidRequest", {"json": {"key": 5}, "headers": admin}),
        (400, "InvalidRequest", {"json": {"key": None}, "headers": admin}),
        (400, "InvalidRequest", {"json": {"key": "x" * 300}, "headers": admin}),
        (400, "InvalidRequest", {"json": [], "headers": admin}),
        (400, "InvalidRequest", {"json": "kp_x", "headers": admin}),
        (400, "InvalidRequest", {"headers": admin}),
        (400, "InvalidRequest", {"content": b'{"key": "x"}', "headers": admin}),
        (
            400,
            "InvalidRequest",
            {"content": b'{"key": "x"}', "headers": {**admin, "Content-Type": "text/plain"}},
        ),
        (
            200,
            None,
            {
                "content": b'{"key": "x"}',
                "headers": {**admin, "Content-Type": "application/vnd.kp+json"},
            },
        ),
        (
            200,
            None,
            {"json": {"key": "x", "extra": 1}, "headers": admin},
        ),
        (400, "InvalidCharacters", {"json": {"key": "a\u0000b"}, "headers": admin}),
        (400, "JsonTooDeep", {"content": b"[" * 40 + b"]" * 40, "headers": admin}),
        (413, "PayloadTooLarge", {"json": {"key": "x" * 70_000}, "headers": admin}),
    ]
    for status, code, options in cases:
        response = await same_through_both(doors, "POST", VERIFY, **options)
        assert response.status_code == status, (options, response.text)
        if code is not None:
            assert _code(response) == code


async def test_user_info_is_the_same_through_both_doors(doors: Doors, cast: Cast) -> None:
    world = cast.world
    cases: list[tuple[int, str | None, dict[str, str]]] = [
        (200, None, cast.valid.headers),
        (200, None, cast.verifier_key.headers),
        (200, None, world.alice.headers),
        (200, None, {"Authorization": world.alice.headers["Authorization"].join(("  ", " "))}),
        (401, "ApiKeyRevoked", cast.revoked.headers),
        (401, "ApiKeyExpired", cast.expired.headers),
        (401, "ApiKeyUserInactive", cast.inactive_owner.headers),
        (401, "ApiKeyInvalid", {"ApiKey": generate_api_key()}),
        (401, "ApiKeyMalformed", {"ApiKey": "kp_nope"}),
        (401, "TokenInvalid", {"Authorization": "Bearer nope"}),
        (401, "UserInactive", world.bob.headers),
        (401, "AuthenticationRequired", {}),
        (401, "AuthenticationRequired", {"ApiKey": ""}),
        (400, "AmbiguousCredentials", {**cast.valid.headers, **world.alice.headers}),
        (400, "InvalidCharacters", {"ApiKey": "kp_\x00"}),
    ]
    for status, code, headers in cases:
        for _ in range(2):
            response = await same_through_both(doors, "GET", INFO, headers=headers)
            assert response.status_code == status, (headers, response.text)
            if code is not None:
                assert _code(response) == code
    info = await doors.plane.get(INFO, headers=cast.valid.headers)
    assert info.json() == {
        "orgName": world.alice.tenant_name,
        "tenantUid": world.alice.tenant_uid,
        "userUid": world.alice.uid,
    }
    assert info.headers["cache-control"] == "no-store"
    head = await same_through_both(doors, "HEAD", INFO, headers=cast.valid.headers)
    assert head.status_code == 405


async def test_what_the_plane_does_not_answer_reaches_fastapi(doors: Doors, cast: Cast) -> None:
    admin = cast.admin_key.headers
    cases: list[tuple[str, str, int, dict[str, Any]]] = [
        ("GET", VERIFY, 405, {"headers": admin}),
        ("PUT", VERIFY, 405, {"headers": admin, "json": {"key": "x"}}),
        ("HEAD", VERIFY, 405, {"headers": admin}),
        ("POST", INFO, 405, {"headers": admin}),
        ("DELETE", INFO, 405, {"headers": admin}),
        ("GET", INFO + "/", 307, {"headers": admin}),
        ("POST", VERIFY + "/", 307, {"headers": admin, "json": {"key": "x"}}),
        ("GET", "/V1/users/info", 404, {"headers": admin}),
        ("GET", INFO, 400, {"headers": admin, "params": {"apikey": cast.valid.value}}),
        ("POST", VERIFY, 400, {"headers": admin, "params": {"ApiKey": "x"}, "json": {}}),
        ("GET", INFO, 200, {"headers": admin, "params": {"anything": "else"}}),
        ("GET", "/v1/users", 200, {"headers": admin}),
        ("GET", "/healthz", 200, {}),
    ]
    for method, path, status, options in cases:
        response = await same_through_both(doors, method, path, **options)
        assert response.status_code == status, (method, path, response.text)
        if status == 405:
            assert response.headers["allow"]


async def test_the_failed_auth_limit_is_the_same_through_both_doors(
    database_url: str, tmp_path: Path
) -> None:
    options: dict[str, Any] = {"auth_failure_burst": 2, "auth_failure_rate_per_second": 0.01}
    async with both_doors(database_url, tmp_path, **options) as doors:
        codes = []
        for path, method in ((INFO, "GET"), (VERIFY, "POST"), (INFO, "GET")):
            response = await same_through_both(
                doors, method, path, headers={"ApiKey": generate_api_key()}, json={"key": "x"}
            )
            codes.append((response.status_code, _code(response)))
        assert codes == [
            (401, "ApiKeyInvalid"),
            (401, "ApiKeyInvalid"),
            (429, "TooManyAuthFailures"),
        ]


# SQLite only: the file is taken away here; tests/auth/test_database_faults.py cuts
# PostgreSQL's connection.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_unreachable_database_is_the_same_503_through_both_doors(
    database_url: str, tmp_path: Path
) -> None:
    async with both_doors(database_url, tmp_path, key_cache_enabled=False) as doors:
        world = await build_world(doors.fastapi, doors.runtime)
        key = await make_api_key(doors.fastapi, world.admin)
        database = Path(database_url.removeprefix("sqlite:///"))
        # Pooled connections keep the old file open; new ones find an empty database.
        await asyncio.to_thread(database.rename, database.with_suffix(".moved"))
        for engine in (doors.runtime.engine, doors.other.engine):
            await engine.dispose()
        for method, path, headers in (
            ("POST", VERIFY, key.headers),
            ("GET", INFO, key.headers),
            ("GET", INFO, world.admin.headers),
        ):
            response = await same_through_both(
                doors, method, path, headers=headers, json={"key": key.value}
            )
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"]


async def test_restricted_keys_get_the_same_answers_through_both_doors(
    doors: Doors, cast: Cast
) -> None:
    """Scopes, address ranges, permission queries, rate limits and credits decide alike at
    both doors (each door counts its own rate limits: both see the same sequence)."""
    http, world = doors.fastapi, cast.world
    permission = await http.post(
        "/v1/permissions", json={"metadata": {"name": "invoices.read"}}, headers=world.admin.headers
    )
    assert permission.status_code == 201, permission.text

    async def restricted(name: str, **spec: Any) -> CreatedKey:
        response = await http.post(
            "/v1/apiKeys",
            json={"metadata": {"name": name}, "spec": spec},
            headers=world.admin.headers,
        )
        assert response.status_code == 201, response.text
        return CreatedKey(uid=response.json()["uid"], value=response.json()["apiKey"])

    no_verify = await restricted("no-verify", scopes=["apiKeys:read"])
    elsewhere = await restricted("elsewhere", allowedCidrs=["10.0.0.0/8"])
    reader = await restricted("reader", permissions=["invoices.read"], ownerId="c1", meta={"a": 1})
    limited = await restricted("limited", rateLimits=[{"limit": 2, "windowSeconds": 3600}])
    admin = cast.admin_key.headers

    refused = await same_through_both(
        doors, "POST", VERIFY, json={"key": cast.valid.value}, headers=no_verify.headers
    )
    assert _code(refused) == "ApiKeyScopeMissing"
    assert _code(await same_through_both(doors, "GET", INFO, headers=elsewhere.headers)) == (
        "ApiKeyAddressDenied"
    )
    for body, code in (
        ({"key": elsewhere.value}, "FORBIDDEN_ADDRESS"),
        ({"key": elsewhere.value, "clientAddress": "10.9.8.7"}, "VALID"),
        ({"key": reader.value, "permissions": "invoices.read"}, "VALID"),
        (
            {"key": reader.value, "permissions": "invoices.read AND admin"},
            "INSUFFICIENT_PERMISSIONS",
        ),
    ):
        for _ in range(2):
            answer = await same_through_both(doors, "POST", VERIFY, json=body, headers=admin)
            assert answer.json()["code"] == code, body
    malformed = await same_through_both(
        doors, "POST", VERIFY, json={"key": reader.value, "permissions": "("}, headers=admin
    )
    assert malformed.status_code == 400
    codes = []
    for _ in range(3):
        answer = await same_through_both(doors, "GET", INFO, headers=limited.headers)
        codes.append(answer.status_code)
    assert codes == [200, 200, 429]
