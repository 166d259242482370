"""Logging in, session tokens and API keys as credentials, through the REST API: what
succeeds, what is refused with which code, and that no refusal ever echoes a secret."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from keyplane.app import create_app
from keyplane.kit.db import transaction
from keyplane.kit.keys import (
    API_KEY_PREFIX,
    BASE62_ALPHABET,
    generate_api_key,
    generate_session_token,
    is_well_formed_session_token,
)
from keyplane.kit.time import utcnow
from keyplane.models import AuthSession
from keyplane.runtime import Runtime
from tests.api_keys.helpers import CreatedKey, backdate_expiry, make_api_key
from tests.conftest import make_settings
from tests.helpers import World
from tests.tenants.helpers import make_tenant
from tests.users.helpers import DEFAULT_PASSWORD, Actor, make_user

# Distinctive, so that finding it in a response body cannot be a coincidence.
WRONG_PASSWORD = "Wr0ng-but-Secret-Passphrase-7731"
INFO = "/v1/users/info"


def _login_body(actor: Actor, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "emailId": actor.email,
        "org": actor.tenant_name,
        "password": actor.password,
    }
    body.update(changes)
    return body


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details", "ref"}
    assert body["code"] == code, body
    assert body["message"]
    assert body["ref"] == response.headers["x-request-id"]
    return body


async def _info(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.get(INFO, headers=headers)


async def _expect_info(
    client: httpx.AsyncClient, headers: dict[str, str], actor: Actor
) -> dict[str, Any]:
    response = await _info(client, headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body == {
        "orgName": actor.tenant_name,
        "tenantUid": actor.tenant_uid,
        "userUid": actor.uid,
    }
    return body


async def _set_session_times(
    runtime: Runtime, token: str, *, expires_at: datetime | None, max_expires_at: datetime | None
) -> None:
    values: dict[str, datetime] = {}
    if expires_at is not None:
        values["expires_at"] = expires_at
    if max_expires_at is not None:
        values["max_expires_at"] = max_expires_at
    async with transaction(runtime.sessionmaker) as session:
        result = await session.execute(
            update(AuthSession)
            .where(AuthSession.token_hash == runtime.secret_hasher.hash(token))
            .values(**values)
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]


async def _expire_key(runtime: Runtime, uid: str) -> None:
    await backdate_expiry(runtime, uid)


async def _deactivate(client: httpx.AsyncClient, admin: Actor, user: Actor) -> None:
    response = await client.patch(
        f"/v1/users/{user.uid}",
        json=[{"op": "replace", "path": "/status/isActive", "value": False}],
        headers=admin.headers,
    )
    assert response.status_code == 204, response.text


def _token(actor: Actor) -> str:
    return actor.headers["Authorization"]


# --- logging in -----------------------------------------------------------------------


async def test_login_answers_a_palette_token_that_authenticates(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.post("/v1/auth/authenticate", json=_login_body(world.alice))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"Authorization", "isMfa"}
    assert body["isMfa"] is False
    token = body["Authorization"]
    assert is_well_formed_session_token(token)
    assert world.alice.password not in response.text
    # A second login is a second, independent session.
    assert token != _token(world.alice)
    await _expect_info(client, {"Authorization": token}, world.alice)
    await _expect_info(client, world.alice.headers, world.alice)


async def test_login_records_a_session_row_with_the_configured_lifetime(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    before = utcnow()
    response = await client.post("/v1/auth/authenticate", json=_login_body(world.bob))
    after = utcnow()
    token = response.json()["Authorization"]
    async with transaction(runtime.sessionmaker, writes=False) as session:
        row = await session.scalar(
            select(AuthSession).where(AuthSession.token_hash == runtime.secret_hasher.hash(token))
        )
    assert row is not None
    assert row.user_uid == world.bob.uid
    assert row.tenant_uid == world.bob.tenant_uid
    assert row.revoked_at is None
    ttl = timedelta(seconds=runtime.settings.session_ttl_seconds)
    assert before + ttl <= row.expires_at <= after + ttl
    # Only a keyed hash is stored, never the token.
    assert row.token_hash != token
    assert token not in row.token_hash


@pytest.mark.parametrize(
    "case",
    ["wrong password", "unknown email", "unknown org", "user of another org", "empty org"],
)
async def test_bad_credentials_are_one_indistinguishable_401(
    client: httpx.AsyncClient, world: World, case: str
) -> None:
    bodies = {
        "wrong password": _login_body(world.alice, password=WRONG_PASSWORD),
        "unknown email": _login_body(
            world.alice, emailId="nobody@acme.example", password=WRONG_PASSWORD
        ),
        "unknown org": _login_body(world.alice, org="initech", password=WRONG_PASSWORD),
        # Alice's right password, but globex is not her organization.
        "user of another org": _login_body(world.alice, org="globex"),
        "empty org": _login_body(world.alice, org=""),
    }
    reference = await client.post(
        "/v1/auth/authenticate", json=_login_body(world.bob, password=WRONG_PASSWORD)
    )
    reference_body = _assert_error(reference, 401, "InvalidCredentials")

    response = await client.post("/v1/auth/authenticate", json=bodies[case])
    body = _assert_error(response, 401, "InvalidCredentials")
    # No enumeration: the same message and details whatever was wrong.
    assert body["message"] == reference_body["message"]
    assert body["details"] == reference_body["details"] is None
    assert "Authorization" not in response.headers
    assert WRONG_PASSWORD not in response.text
    assert DEFAULT_PASSWORD not in response.text


async def test_deactivated_user_cannot_log_in_but_a_wrong_password_reveals_nothing(
    client: httpx.AsyncClient, world: World
) -> None:
    await _deactivate(client, world.admin, world.alice)
    wrong = await client.post(
        "/v1/auth/authenticate", json=_login_body(world.alice, password=WRONG_PASSWORD)
    )
    _assert_error(wrong, 401, "InvalidCredentials")
    right = await client.post("/v1/auth/authenticate", json=_login_body(world.alice))
    _assert_error(right, 401, "UserInactive")
    assert DEFAULT_PASSWORD not in right.text
    # The session she had before is refused too.
    _assert_error(await _info(client, world.alice.headers), 401, "UserInactive")


@pytest.mark.parametrize("org", ["ACME", "Acme", "aCmE", " acme "])
async def test_org_is_matched_case_insensitively(
    client: httpx.AsyncClient, world: World, org: str
) -> None:
    response = await client.post("/v1/auth/authenticate", json=_login_body(world.alice, org=org))
    assert response.status_code == 200, response.text
    await _expect_info(client, {"Authorization": response.json()["Authorization"]}, world.alice)


async def test_email_is_matched_case_insensitively(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        "/v1/auth/authenticate", json=_login_body(world.alice, emailId="Alice@ACME.example")
    )
    assert response.status_code == 200, response.text
    await _expect_info(client, {"Authorization": response.json()["Authorization"]}, world.alice)


async def test_org_may_be_omitted_only_when_the_email_is_in_one_org(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    alone = await client.post(
        "/v1/auth/authenticate", json={"emailId": world.bob.email, "password": DEFAULT_PASSWORD}
    )
    assert alone.status_code == 200, alone.text
    await _expect_info(client, {"Authorization": alone.json()["Authorization"]}, world.bob)

    initech = await make_tenant(runtime, "initech")
    twin = await make_user(runtime, initech, world.bob.email)
    ambiguous = await client.post(
        "/v1/auth/authenticate", json={"emailId": world.bob.email, "password": DEFAULT_PASSWORD}
    )
    _assert_error(ambiguous, 400, "OrgRequired")
    assert DEFAULT_PASSWORD not in ambiguous.text
    chosen = await client.post(
        "/v1/auth/authenticate",
        json={"emailId": twin.email, "org": "Initech", "password": DEFAULT_PASSWORD},
    )
    assert chosen.status_code == 200, chosen.text
    await _expect_info(client, {"Authorization": chosen.json()["Authorization"]}, twin)


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("missing emailId", {"org": "acme", "password": WRONG_PASSWORD}),
        ("missing password", {"emailId": "alice@acme.example", "org": "acme"}),
        ("empty body", {}),
        ("empty emailId", {"emailId": "", "org": "acme", "password": WRONG_PASSWORD}),
        ("empty password", {"emailId": "alice@acme.example", "org": "acme", "password": ""}),
        ("emailId a list", {"emailId": ["alice"], "org": "acme", "password": WRONG_PASSWORD}),
        ("emailId a number", {"emailId": 7, "org": "acme", "password": WRONG_PASSWORD}),
        ("org a number", {"emailId": "alice@acme.example", "org": 1, "password": WRONG_PASSWORD}),
        (
            "password a number",
            {"emailId": "alice@acme.example", "org": "acme", "password": 77317731},
        ),
        (
            "password an object",
            {"emailId": "alice@acme.example", "org": "acme", "password": {"v": WRONG_PASSWORD}},
        ),
        (
            "password null",
            {"emailId": "alice@acme.example", "org": "acme", "password": None},
        ),
        (
            "password too long",
            {"emailId": "alice@acme.example", "org": "acme", "password": WRONG_PASSWORD * 10},
        ),
        ("body a list", [WRONG_PASSWORD]),
        ("body a string", WRONG_PASSWORD),
    ],
)
async def test_invalid_login_bodies_are_400_without_echoing_the_password(
    client: httpx.AsyncClient, world: World, case: str, body: Any
) -> None:
    response = await client.post("/v1/auth/authenticate", json=body)
    error = _assert_error(response, 400, "InvalidRequest")
    assert error["details"]["fields"], case
    assert WRONG_PASSWORD not in response.text
    assert "77317731" not in response.text
    assert "Authorization" not in response.json()


@pytest.mark.parametrize(
    "raw",
    [
        '{"emailId": "alice@acme.example", "org": "acme", "password": "' + WRONG_PASSWORD + '"',
        '{"emailId": "alice@acme.example", "password": "' + WRONG_PASSWORD + '",}',
        "emailId=alice&password=" + WRONG_PASSWORD,
        '{"password": "' + WRONG_PASSWORD + "\x00",
    ],
)
async def test_malformed_json_is_400_malformed_json_without_echoing_the_password(
    client: httpx.AsyncClient, world: World, raw: str
) -> None:
    response = await client.post(
        "/v1/auth/authenticate", content=raw, headers={"Content-Type": "application/json"}
    )
    _assert_error(response, 400, "MalformedJson")
    assert WRONG_PASSWORD not in response.text


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
)
async def test_a_body_that_is_not_json_is_400_without_echoing_the_password(
    client: httpx.AsyncClient, world: World, content_type: str
) -> None:
    response = await client.post(
        "/v1/auth/authenticate",
        content=f"emailId=alice%40acme.example&org=acme&password={WRONG_PASSWORD}",
        headers={"Content-Type": content_type},
    )
    _assert_error(response, 400, "InvalidRequest")
    assert WRONG_PASSWORD not in response.text


# --- session tokens -------------------------------------------------------------------


@pytest.mark.parametrize(
    "template", ["{token}", "Bearer {token}", "bearer {token}", "BEARER {token}"]
)
async def test_session_token_is_accepted_bare_or_as_bearer(
    client: httpx.AsyncClient, world: World, template: str
) -> None:
    headers = {"Authorization": template.format(token=_token(world.alice))}
    await _expect_info(client, headers, world.alice)
    await _expect_info(client, world.admin.headers, world.admin)


@pytest.mark.parametrize(
    "template", ["{token}", "Bearer {token}", "{token}x", "Bearer {token}x", "Basic {token}"]
)
async def test_unknown_session_token_is_401_token_invalid_without_echo(
    client: httpx.AsyncClient, world: World, template: str
) -> None:
    token = generate_session_token()  # well formed, but no session has it
    response = await _info(client, {"Authorization": template.format(token=token)})
    _assert_error(response, 401, "TokenInvalid")
    assert token not in response.text


async def test_refresh_returns_a_new_token_and_retires_the_old_one(
    client: httpx.AsyncClient, world: World
) -> None:
    old = _token(world.alice)
    response = await client.get(f"/v1/auth/refresh/{old}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"Authorization", "isMfa"}
    assert body["isMfa"] is False
    new = body["Authorization"]
    assert is_well_formed_session_token(new)
    assert new != old
    await _expect_info(client, {"Authorization": new}, world.alice)
    await _expect_info(client, {"Authorization": f"Bearer {new}"}, world.alice)

    stale = await _info(client, {"Authorization": old})
    _assert_error(stale, 401, "TokenInvalid")
    assert old not in stale.text
    again = await client.get(f"/v1/auth/refresh/{old}")
    _assert_error(again, 401, "TokenInvalid")
    assert old not in again.text
    # Other people's sessions are untouched.
    await _expect_info(client, world.bob.headers, world.bob)


async def test_refresh_extends_the_session_but_not_past_its_maximum_lifetime(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    soon = utcnow() + timedelta(seconds=40)
    await _set_session_times(runtime, _token(world.alice), expires_at=soon, max_expires_at=soon)
    response = await client.get(f"/v1/auth/refresh/{_token(world.alice)}")
    assert response.status_code == 200, response.text
    new = response.json()["Authorization"]
    async with transaction(runtime.sessionmaker, writes=False) as session:
        row = await session.scalar(
            select(AuthSession).where(AuthSession.token_hash == runtime.secret_hasher.hash(new))
        )
    assert row is not None
    assert row.expires_at <= row.max_expires_at


async def test_refresh_after_the_maximum_lifetime_is_401_token_expired(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    token = _token(world.alice)
    await _set_session_times(
        runtime,
        token,
        expires_at=utcnow() + timedelta(minutes=5),
        max_expires_at=utcnow() - timedelta(seconds=1),
    )
    response = await client.get(f"/v1/auth/refresh/{token}")
    _assert_error(response, 401, "TokenExpired")
    assert token not in response.text


@pytest.mark.parametrize(
    "token",
    ["nonsense", "kps_short", generate_api_key()],
    # Fixed ids: a generated value differs in every process that collects the tests.
    ids=["nonsense", "short", "api-key"],
)
async def test_refresh_of_a_malformed_token_is_401_token_invalid(
    client: httpx.AsyncClient, world: World, token: str
) -> None:
    response = await client.get(f"/v1/auth/refresh/{token}")
    _assert_error(response, 401, "TokenInvalid")
    assert token not in response.text


async def test_logout_revokes_that_session_only(client: httpx.AsyncClient, world: World) -> None:
    second = await client.post("/v1/auth/authenticate", json=_login_body(world.alice))
    other_session = {"Authorization": second.json()["Authorization"]}
    token = _token(world.alice)

    response = await client.post("/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 204
    assert response.content == b""

    for headers in ({"Authorization": token}, {"Authorization": f"Bearer {token}"}):
        refused = await _info(client, headers)
        _assert_error(refused, 401, "TokenRevoked")
        assert token not in refused.text
    _assert_error(await client.get(f"/v1/auth/refresh/{token}"), 401, "TokenRevoked")
    _assert_error(
        await client.post("/v1/auth/logout", headers={"Authorization": token}), 401, "TokenRevoked"
    )
    await _expect_info(client, other_session, world.alice)


async def test_logout_without_credentials_is_401(client: httpx.AsyncClient, world: World) -> None:
    _assert_error(await client.post("/v1/auth/logout"), 401, "AuthenticationRequired")


async def test_logout_with_an_api_key_is_400_and_leaves_the_key_working(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    response = await client.post("/v1/auth/logout", headers=key.headers)
    _assert_error(response, 400, "NotASession")
    assert key.value not in response.text
    await _expect_info(client, key.headers, world.alice)
    await _expect_info(client, world.alice.headers, world.alice)


async def test_expired_session_token_is_401_token_expired(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    token = _token(world.alice)
    await _set_session_times(
        runtime, token, expires_at=utcnow() - timedelta(seconds=1), max_expires_at=None
    )
    for headers in ({"Authorization": token}, {"Authorization": f"Bearer {token}"}):
        response = await _info(client, headers)
        _assert_error(response, 401, "TokenExpired")
        assert token not in response.text
    refresh = await client.get(f"/v1/auth/refresh/{token}")
    _assert_error(refresh, 401, "TokenExpired")
    await _expect_info(client, world.bob.headers, world.bob)


@pytest.fixture
async def short_lived(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose sessions last the minimum the settings allow."""
    settings = make_settings(database_url, tmp_path, session_ttl_seconds=30)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("192.0.2.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://kp.test") as http:
            yield http


async def test_session_ttl_setting_decides_when_a_token_expires(
    short_lived: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    # ``world`` lives in the standard app's database, which is the same database.
    response = await short_lived.post("/v1/auth/authenticate", json=_login_body(world.alice))
    assert response.status_code == 200, response.text
    token = response.json()["Authorization"]
    async with transaction(runtime.sessionmaker, writes=False) as session:
        row = await session.scalar(
            select(AuthSession).where(AuthSession.token_hash == runtime.secret_hasher.hash(token))
        )
    assert row is not None
    lifetime = (row.expires_at - row.created_at).total_seconds()
    assert lifetime == pytest.approx(30, abs=1)
    await _expect_info(short_lived, {"Authorization": token}, world.alice)
    # Thirty seconds later, without waiting them: move the clock of the row instead.
    await _set_session_times(
        runtime, token, expires_at=row.created_at - timedelta(seconds=1), max_expires_at=None
    )
    _assert_error(await _info(short_lived, {"Authorization": token}), 401, "TokenExpired")


# --- API keys as credentials ----------------------------------------------------------


@pytest.mark.parametrize("name", ["ApiKey", "apikey", "APIKEY", "apiKey", "aPiKeY"])
async def test_api_key_header_name_is_case_insensitive(
    client: httpx.AsyncClient, world: World, name: str
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    await _expect_info(client, {name: key.value}, world.alice)


@pytest.mark.parametrize("param", ["ApiKey", "apikey", "api_key", "APIKEY", "API_KEY", "api-key"])
@pytest.mark.parametrize("path", [INFO, "/v1/apiKeys", "/healthz"])
async def test_api_key_in_the_query_string_is_refused_without_echo(
    client: httpx.AsyncClient, world: World, param: str, path: str
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    for headers in ({}, key.headers, world.alice.headers):
        response = await client.get(path, params={param: key.value}, headers=headers)
        _assert_error(response, 400, "ApiKeyInQuery")
        assert key.value not in response.text
        assert key.value not in str(response.headers)
    # Also among other parameters and on a write.
    created = await client.post(
        "/v1/apiKeys",
        params={"limit": "5", param: key.value},
        json={"metadata": {"name": "x"}},
        headers=world.alice.headers,
    )
    _assert_error(created, 400, "ApiKeyInQuery")
    assert key.value not in created.text
    listed = await client.get("/v1/apiKeys", headers=world.alice.headers)
    assert [item["metadata"]["name"] for item in listed.json()["items"]] == ["deploy"]


async def test_api_key_authenticates_as_its_owner_with_the_owners_role(
    client: httpx.AsyncClient, world: World
) -> None:
    admin_key = await make_api_key(client, world.admin, "admin-own")
    # Created by the admin, but owned by alice: it acts as alice, a plain user.
    for_alice = await make_api_key(client, world.admin, "made-for-alice", user_uid=world.alice.uid)
    alice_key = await make_api_key(client, world.alice, "alice-own")
    bob_key = await make_api_key(client, world.bob, "bob-own")

    await _expect_info(client, admin_key.headers, world.admin)
    await _expect_info(client, for_alice.headers, world.alice)
    await _expect_info(client, alice_key.headers, world.alice)

    async def listed(headers: dict[str, str]) -> set[str]:
        response = await client.get("/v1/apiKeys", headers=headers)
        assert response.status_code == 200, response.text
        return {item["metadata"]["uid"] for item in response.json()["items"]}

    everything = {admin_key.uid, for_alice.uid, alice_key.uid, bob_key.uid}
    assert await listed(admin_key.headers) == everything
    assert await listed(for_alice.headers) == {for_alice.uid, alice_key.uid}
    assert await listed(alice_key.headers) == {for_alice.uid, alice_key.uid}

    # Admin-only endpoints: the admin's key may, alice's keys may not.
    assert (await client.get("/v1/users", headers=admin_key.headers)).status_code == 200
    for headers in (for_alice.headers, alice_key.headers):
        _assert_error(await client.get("/v1/users", headers=headers), 403, "Forbidden")
        _assert_error(await client.get("/v1/audits", headers=headers), 403, "Forbidden")
        refused = await client.get(f"/v1/apiKeys/{bob_key.uid}", headers=headers)
        _assert_error(refused, 404, "ApiKeyNotFound")


async def test_api_key_created_with_a_key_belongs_to_the_keys_owner(
    client: httpx.AsyncClient, world: World
) -> None:
    alice_key = await make_api_key(client, world.alice, "first")
    response = await client.post(
        "/v1/apiKeys", json={"metadata": {"name": "second"}}, headers=alice_key.headers
    )
    assert response.status_code == 201, response.text
    second = CreatedKey(uid=response.json()["uid"], value=response.json()["apiKey"])
    await _expect_info(client, second.headers, world.alice)


def _bad_checksum(value: str) -> str:
    last = value[-1]
    replacement = BASE62_ALPHABET[(BASE62_ALPHABET.index(last) + 1) % len(BASE62_ALPHABET)]
    return value[:-1] + replacement


def _malformed(value: str, kind: str) -> str:
    return {
        "bad checksum": _bad_checksum(value),
        "flipped body character": value[:5]
        + BASE62_ALPHABET[(BASE62_ALPHABET.index(value[5]) + 7) % 62]
        + value[6:],
        "truncated": value[:-1],
        "extended": value + "A",
        "wrong prefix": "xp_" + value[len(API_KEY_PREFIX) :],
        "no prefix": value[len(API_KEY_PREFIX) :],
        "lower-cased": value.lower() if value.lower() != value else value.upper(),
        "not base62": value[:10] + "-" + value[11:],
        "session token": generate_session_token(),
        "unknown but well formed": generate_api_key(),
        "garbage": "not-a-key",
    }[kind]


@pytest.mark.parametrize(
    "kind",
    [
        "bad checksum",
        "flipped body character",
        "truncated",
        "extended",
        "wrong prefix",
        "no prefix",
        "lower-cased",
        "not base62",
        "session token",
        "unknown but well formed",
        "garbage",
    ],
)
async def test_malformed_or_unknown_api_key_is_401_api_key_malformed_or_invalid(
    client: httpx.AsyncClient, world: World, kind: str
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    value = _malformed(key.value, kind)
    assert value != key.value
    response = await _info(client, {"ApiKey": value})
    # The same words as the verify endpoint's MALFORMED and NOT_FOUND.
    expected = "ApiKeyInvalid" if kind == "unknown but well formed" else "ApiKeyMalformed"
    _assert_error(response, 401, expected)
    assert value not in response.text
    assert key.value not in response.text
    await _expect_info(client, key.headers, world.alice)


async def _revoke(client: httpx.AsyncClient, world: World, key: CreatedKey) -> None:
    response = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.alice.headers
    )
    assert response.status_code == 204, response.text


async def _delete(client: httpx.AsyncClient, world: World, key: CreatedKey) -> None:
    response = await client.delete(f"/v1/apiKeys/{key.uid}", headers=world.alice.headers)
    assert response.status_code == 204, response.text


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ("revoked", "ApiKeyRevoked"),
        ("expired", "ApiKeyExpired"),
        ("deleted", "ApiKeyInvalid"),
        ("owner deactivated", "ApiKeyUserInactive"),
        ("owner deleted", "ApiKeyInvalid"),
    ],
)
async def test_unusable_api_key_is_401_with_its_reason_and_never_echoed(
    client: httpx.AsyncClient, world: World, runtime: Runtime, state: str, code: str
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    other = await make_api_key(client, world.bob, "unrelated")
    await _expect_info(client, key.headers, world.alice)
    if state == "revoked":
        await _revoke(client, world, key)
    elif state == "expired":
        await _expire_key(runtime, key.uid)
    elif state == "deleted":
        await _delete(client, world, key)
    elif state == "owner deactivated":
        await _deactivate(client, world.admin, world.alice)
    else:
        deleted = await client.delete(f"/v1/users/{world.alice.uid}", headers=world.admin.headers)
        assert deleted.status_code == 204, deleted.text

    for name in ("ApiKey", "apikey"):
        response = await _info(client, {name: key.value})
        _assert_error(response, 401, code)
        assert key.value not in response.text
        assert key.value not in str(response.headers)
    # Any other endpoint refuses it the same way.
    listed = await client.get("/v1/apiKeys", headers=key.headers)
    _assert_error(listed, 401, code)
    assert key.value not in listed.text
    # A key of someone else is unaffected.
    await _expect_info(client, other.headers, world.bob)


async def test_no_credentials_is_401_authentication_required(
    client: httpx.AsyncClient, world: World
) -> None:
    for path in (INFO, "/v1/apiKeys", "/v1/apiKeys/anything", "/v1/users", "/v1/audits"):
        _assert_error(await client.get(path), 401, "AuthenticationRequired")
    _assert_error(
        await client.post("/v1/apiKeys", json={"metadata": {"name": "x"}}),
        401,
        "AuthenticationRequired",
    )
    for empty in ({"Authorization": ""}, {"ApiKey": ""}, {"ApiKey": "", "Authorization": ""}):
        _assert_error(await _info(client, empty), 401, "AuthenticationRequired")


async def test_users_info_answers_for_sessions_and_keys_in_both_tenants(
    client: httpx.AsyncClient, world: World
) -> None:
    for actor in (world.admin, world.alice, world.bob, world.other_admin):
        key = await make_api_key(client, actor, "whoami")
        session_body = await _expect_info(client, actor.headers, actor)
        key_body = await _expect_info(client, key.headers, actor)
        assert session_body == key_body
        assert set(key_body) == {"orgName", "tenantUid", "userUid"}
    assert world.admin.tenant_uid == world.alice.tenant_uid != world.other_admin.tenant_uid


async def _set_role(client: httpx.AsyncClient, admin: Actor, user: Actor, role: str) -> None:
    response = await client.patch(
        f"/v1/users/{user.uid}",
        json=[{"op": "replace", "path": "/spec/roles", "value": [role]}],
        headers=admin.headers,
    )
    assert response.status_code == 204, response.text


async def test_api_key_follows_its_owners_current_role(
    client: httpx.AsyncClient, world: World
) -> None:
    alice_key = await make_api_key(client, world.alice, "alice-own")
    bob_key = await make_api_key(client, world.bob, "bob-own")

    async def visible(headers: dict[str, str]) -> set[str]:
        response = await client.get("/v1/apiKeys", headers=headers)
        assert response.status_code == 200, response.text
        return {item["metadata"]["uid"] for item in response.json()["items"]}

    assert await visible(alice_key.headers) == {alice_key.uid}
    await _set_role(client, world.admin, world.alice, "tenant-admin")
    # The same key, now an admin's: it sees the tenant's keys and may manage users.
    assert await visible(alice_key.headers) == {alice_key.uid, bob_key.uid}
    assert (await client.get("/v1/users", headers=alice_key.headers)).status_code == 200
    await _set_role(client, world.admin, world.alice, "user")
    assert await visible(alice_key.headers) == {alice_key.uid}
    _assert_error(await client.get("/v1/users", headers=alice_key.headers), 403, "Forbidden")


async def test_secrets_never_reach_the_logs(
    client: httpx.AsyncClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    caplog.set_level(logging.DEBUG)
    login = await client.post("/v1/auth/authenticate", json=_login_body(world.alice))
    token = login.json()["Authorization"]
    refreshed = await client.get(f"/v1/auth/refresh/{token}")
    new_token = refreshed.json()["Authorization"]
    await client.get(INFO, params={"apikey": key.value})
    await client.get(INFO, headers=key.headers)
    await client.get(INFO, headers={"Authorization": new_token})
    await client.post(
        "/v1/auth/authenticate", json=_login_body(world.alice, password=WRONG_PASSWORD)
    )
    await client.get(INFO, headers={"ApiKey": _bad_checksum(key.value)})
    # Everything the server logged (httpx logs the client's own URLs: not the server's).
    logged = "\n".join(
        f"{record.name} {record.getMessage()} {record.exc_text or ''}"
        for record in caplog.records
        if not record.name.startswith(("httpx", "httpcore"))
    )
    assert "/v1/auth/refresh/[redacted]" in logged
    for secret in (
        key.value,
        _bad_checksum(key.value),
        token,
        new_token,
        DEFAULT_PASSWORD,
        WRONG_PASSWORD,
    ):
        assert secret not in logged
