"""No key value, session token or password ever leaves the place it belongs.

A representative run (logins, keys created, used, revoked, re-activated and deleted,
wrong passwords up to a lockout, bad and malformed keys, keys in the query string, failed
validation, the console's login form, token renewal) against the real app, capturing
every log record of every logger at DEBUG (SQL statements and their parameters included),
every response's status line, headers and body, and afterwards every row of every table.
The secrets are then looked for everywhere:

- a key value may appear only in the body of the one 201 response that created it;
- a session token only in the response that issued it (its body, or the console's
  Set-Cookie);
- a password, and any key or token a client made up, nowhere at all.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from sqlalchemy import select

from keyplane.app import create_app
from keyplane.events.types import ALL_EVENT_TYPES
from keyplane.kit.db import transaction
from keyplane.kit.keys import (
    API_KEY_PREFIX,
    CHECKSUM_LENGTH,
    generate_api_key,
    generate_session_token,
)
from keyplane.models import Base
from keyplane.runtime import Runtime
from tests.conftest import make_settings
from tests.helpers import World, build_world
from tests.users.helpers import DEFAULT_PASSWORD

WRONG_PASSWORDS = ["Wrong-Password-1-zq8V", "Wrong-Password-2-xY3p", "Wrong-Password-3-Lm0t"]
NEW_USER_PASSWORD = "Carol-Initial-Password-7Hk2"
CHANGED_PASSWORD = "Alice-Changed-Password-4Rt9"
TOO_SHORT_PASSWORD = "Short-6Tq"
REFRESH = "/v1/auth/refresh/"
# The one place each kind of secret may appear: the response that issued it.
KEY_ISSUED = "POST /v1/apiKeys -> 201: body"
TOKEN_ISSUED = {
    "POST /v1/auth/authenticate -> 200: body",
    "GET /v1/auth/refresh/{token} -> 200: body",
    "POST /login -> 303: header set-cookie",
}


@dataclass
class Capture:
    """Everything observable, as text, each with where it came from."""

    responses: list[tuple[str, httpx.Response, str]] = field(default_factory=list)
    places: list[tuple[str, str]] = field(default_factory=list)

    async def on_response(self, response: httpx.Response) -> None:
        await response.aread()
        request = response.request
        path = request.url.path
        # The renewal's path holds a token: labels name the route, not the value.
        if path.startswith(REFRESH):
            path = REFRESH + "{token}"
        label = f"{request.method} {path} -> {response.status_code}"
        self.responses.append((label, response, response.text))
        self.places.append((f"{label}: body", response.text))
        for name, value in response.headers.multi_items():
            self.places.append((f"{label}: header {name}", f"{name}: {value}"))


@dataclass
class Secrets:
    keys: set[str] = field(default_factory=set)
    # Secrets issued elsewhere than KEY_ISSUED (a rotation, a webhook signing secret):
    # the one response label where each may appear.
    issued_at: dict[str, str] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    forbidden: set[str] = field(default_factory=set)


@dataclass
class Served:
    runtime: Runtime
    capture: Capture
    user: httpx.AsyncClient
    # Two attackers, at two addresses: one guesses passwords, one keys and tokens.
    guesser: httpx.AsyncClient
    thief: httpx.AsyncClient


@pytest.fixture
async def served(database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    settings = make_settings(
        database_url,
        tmp_path,
        auth_failure_burst=6,
        auth_failure_rate_per_second=0.01,
        login_lockout_threshold=3,
    )
    app = create_app(settings)
    capture = Capture()
    async with app.router.lifespan_context(app):

        def client(address: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=(address, 4000)),
                base_url="http://keyplane.test",
                event_hooks={"response": [capture.on_response]},
            )

        async with (
            client("203.0.113.7") as user,
            client("198.51.100.66") as guesser,
            client("198.51.100.67") as thief,
        ):
            yield Served(app.state.runtime, capture, user, guesser, thief)


async def _flow(served: Served, world: World, secrets: Secrets) -> None:
    user, guesser, thief = served.user, served.guesser, served.thief

    async def create_key(headers: dict[str, str], name: str, **spec: Any) -> tuple[str, str]:
        response = await user.post(
            "/v1/apiKeys", json={"metadata": {"name": name}, "spec": spec}, headers=headers
        )
        assert response.status_code == 201, response.text
        secrets.keys.add(response.json()["apiKey"])
        return response.json()["uid"], response.json()["apiKey"]

    alice_key_uid, alice_key = await create_key(world.alice.headers, "alice ci")
    spare_uid, spare = await create_key(world.alice.headers, "alice spare")
    bob_key_uid, bob_key = await create_key(world.admin.headers, "for bob", userUid=world.bob.uid)
    _admin_key_uid, admin_key = await create_key(world.admin.headers, "admin automation")

    # Keys in use, by their owners and by a tenant's service verifying them.
    for key in (alice_key, bob_key, admin_key):
        assert (await user.get("/v1/users/info", headers={"ApiKey": key})).status_code == 200
        assert (await user.get("/v1/apiKeys", headers={"apikey": key})).status_code == 200
    verified = await user.post(
        "/v1/apiKeys/verify", json={"key": alice_key}, headers={"ApiKey": admin_key}
    )
    assert verified.json()["valid"] is True
    edited = await user.put(
        f"/v1/apiKeys/{alice_key_uid}",
        json={"metadata": {"name": "alice ci, renamed"}},
        headers={"ApiKey": alice_key},
    )
    assert edited.status_code == 204

    # Revoked, refused, re-activated; deleted, refused.
    for path, state in ((f"/v1/apiKeys/{spare_uid}", False), (f"/v1/apiKeys/{spare_uid}", True)):
        changed = await user.patch(path, json={"isActive": state}, headers=world.alice.headers)
        assert changed.status_code == 204
        if not state:
            refused = await user.get("/v1/users/info", headers={"ApiKey": spare})
            assert refused.json()["code"] == "ApiKeyRevoked"
    assert (
        await user.delete(f"/v1/apiKeys/{spare_uid}", headers=world.alice.headers)
    ).status_code == 204
    gone = await user.get("/v1/users/info", headers={"ApiKey": spare})
    assert gone.json()["code"] == "ApiKeyInvalid"

    # A webhook endpoint (its signing secret, and every event of this flow in its outbox).
    endpoint = await user.post(
        "/v1/webhooks/endpoints",
        json={"url": "https://hooks.example.com/keyplane", "events": list(ALL_EVENT_TYPES)},
        headers=world.admin.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    secrets.keys.add(endpoint.json()["secret"])
    secrets.issued_at[endpoint.json()["secret"]] = "POST /v1/webhooks/endpoints -> 201: body"

    # Rotated: the new value is issued by the rotation, and both work during the grace.
    rotate_uid, before_rotation = await create_key(world.alice.headers, "alice rotating")
    rotated = await user.post(
        f"/v1/apiKeys/{rotate_uid}/rotate",
        json={"gracePeriodSeconds": 3600},
        headers=world.alice.headers,
    )
    assert rotated.status_code == 201, rotated.text
    after_rotation = rotated.json()["apiKey"]
    secrets.keys.add(after_rotation)
    secrets.issued_at[after_rotation] = f"POST /v1/apiKeys/{rotate_uid}/rotate -> 201: body"
    for key in (before_rotation, after_rotation):
        assert (await user.get("/v1/users/info", headers={"ApiKey": key})).status_code == 200

    # Reported leaked, with a made-up value beside it: the real one is revoked (and its
    # owner told, its webhook event written), and neither value is kept or shown.
    _leaky_uid, leaky = await create_key(world.alice.headers, "alice leaky")
    made_up_leak = generate_api_key()
    secrets.forbidden.add(made_up_leak)
    reported = await user.post(
        "/v1/apiKeys/leaks",
        json={
            "leaks": [
                {"value": leaky, "url": "https://gist.example/1", "source": "gist"},
                {"value": made_up_leak, "url": "https://gist.example/2", "source": "gist"},
            ]
        },
    )
    assert reported.status_code == 202, reported.text
    leaked = await user.get("/v1/users/info", headers={"ApiKey": leaky})
    assert leaked.json()["code"] == "ApiKeyRevoked"

    # Users and passwords: created with one, a refused change, a changed one.
    created = await user.post(
        "/v1/users",
        json={
            "metadata": {},
            "spec": {
                "emailId": "carol@acme.example",
                "firstName": "Carol",
                "lastName": "Clark",
                "roles": ["user"],
                "password": NEW_USER_PASSWORD,
            },
        },
        headers=world.admin.headers,
    )
    assert created.status_code == 201, created.text
    too_short = await user.patch(
        f"/v1/users/{world.bob.uid}",
        json=[{"op": "replace", "path": "/spec/password", "value": TOO_SHORT_PASSWORD}],
        headers=world.admin.headers,
    )
    assert too_short.status_code == 400
    changed = await user.patch(
        f"/v1/users/{world.alice.uid}",
        json=[{"op": "replace", "path": "/spec/password", "value": CHANGED_PASSWORD}],
        headers=world.admin.headers,
    )
    assert changed.status_code == 204
    for email, password in (
        ("carol@acme.example", NEW_USER_PASSWORD),
        (world.alice.email, CHANGED_PASSWORD),
    ):
        logged_in = await user.post(
            "/v1/auth/authenticate",
            json={"emailId": email, "org": "acme", "password": password},
        )
        assert logged_in.status_code == 200
        secrets.tokens.add(logged_in.json()["Authorization"])
    malformed = await user.post(
        "/v1/auth/authenticate",
        content=f'{{"emailId": "alice@acme.example", "password": "{CHANGED_PASSWORD}"',
        headers={"Content-Type": "application/json"},
    )
    assert malformed.json()["code"] == "MalformedJson"

    # Sessions: renewed (the token sits in the path), then ended.
    renewed = await user.get(f"/v1/auth/refresh/{world.bob.headers['Authorization']}")
    assert renewed.status_code == 200
    bob_session = {"Authorization": renewed.json()["Authorization"]}
    assert (await user.post("/v1/auth/logout", headers=bob_session)).status_code == 204
    assert (await user.get("/v1/users/info", headers=bob_session)).status_code == 401

    # The console's login form: a wrong password, then the right one.
    await _console_login(user, world.admin.email, WRONG_PASSWORDS[0], 401)
    await _console_login(user, world.admin.email, DEFAULT_PASSWORD, 303)

    # One attacker guesses passwords into a lockout, and for an email without an account.
    for password in WRONG_PASSWORDS:
        await guesser.post(
            "/v1/auth/authenticate",
            json={"emailId": world.bob.email, "org": "acme", "password": password},
        )
    locked = await guesser.post(
        "/v1/auth/authenticate",
        json={"emailId": world.bob.email, "org": "acme", "password": DEFAULT_PASSWORD},
    )
    assert locked.json()["code"] == "AccountLocked"
    for password in WRONG_PASSWORDS:
        await guesser.post(
            "/v1/auth/authenticate",
            json={"emailId": "nobody@acme.example", "password": password},
        )
    refused = await guesser.post(
        "/v1/auth/authenticate",
        json={"emailId": world.admin.email, "org": "acme", "password": WRONG_PASSWORDS[2]},
    )
    assert refused.json()["code"] == "TooManyAuthFailures"

    # The other has a stolen key, revoked since, and makes up keys and tokens (some sent in
    # the query string) until the address is refused.
    revoked = await user.patch(
        f"/v1/apiKeys/{bob_key_uid}", json={"isActive": False}, headers=world.admin.headers
    )
    assert revoked.status_code == 204
    made_up = [generate_api_key(), generate_api_key(), API_KEY_PREFIX + "Not-A-Real-Key-8s7d"]
    made_up_token = generate_session_token()
    secrets.forbidden.update([*made_up, made_up_token])
    for value in made_up:
        await thief.get("/v1/users/info", headers={"ApiKey": value})
        in_query = await thief.get("/v1/apiKeys", params={"apikey": value})
        assert in_query.json()["code"] == "ApiKeyInQuery"
    await thief.get("/v1/users/info", headers={"Authorization": f"Bearer {made_up_token}"})
    await thief.get(f"/v1/auth/refresh/{made_up_token}")
    statuses = [
        (await thief.get("/v1/users/info", headers={"ApiKey": bob_key})).status_code
        for _ in range(3)
    ]
    assert statuses == [401, 429, 429]
    # Valid keys are never slowed down, even from that address.
    ok = await thief.get("/v1/users/info", headers={"ApiKey": alice_key})
    assert ok.status_code == 200


async def _console_login(client: httpx.AsyncClient, email: str, password: str, status: int) -> None:
    form = await client.get("/login")
    assert form.status_code == 200
    response = await client.post(
        "/login",
        data={
            "email": email,
            "org": "acme",
            "password": password,
            "csrf_token": form.cookies["keyplane_login_csrf"],
        },
    )
    assert response.status_code == status, response.text


async def _table_rows(runtime: Runtime) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    async with transaction(runtime.sessionmaker, writes=False) as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                rows.append((f"table {table.name}", " | ".join(str(value) for value in row)))
    return rows


# The test's own HTTP client logs the URLs it requests (one carries a token in its path):
# that is this test's side of the connection, not the server's.
_CLIENT_LOGGERS = ("httpx", "httpcore")


def _log_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [
        (f"log {record.name}", formatter.format(record))
        for record in caplog.records
        if record.name.split(".")[0] not in _CLIENT_LOGGERS
    ]


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret)}


async def test_no_secret_leaks_anywhere(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    runtime, capture = served.runtime, served.capture
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)

    secrets = Secrets(forbidden={DEFAULT_PASSWORD, *WRONG_PASSWORDS, TOO_SHORT_PASSWORD})
    secrets.forbidden.update({NEW_USER_PASSWORD, CHANGED_PASSWORD})
    world = await build_world(served.user, runtime)
    await _flow(served, world, secrets)
    for label, response, _text in capture.responses:
        if label in {"POST /v1/auth/authenticate -> 200", "GET /v1/auth/refresh/{token} -> 200"}:
            secrets.tokens.add(response.json()["Authorization"])
        elif label == "POST /login -> 303":
            secrets.tokens.add(response.cookies["keyplane_session"])
    await runtime.last_used.flush(runtime.sessionmaker)

    places = [*capture.places, *_log_lines(caplog), *await _table_rows(runtime)]
    assert len(secrets.keys) == 8
    assert len(secrets.tokens) >= 7
    assert any(label.startswith("log keyplane.access") for label, _ in places)
    assert any(label.startswith("log sqlalchemy.engine") for label, _ in places)
    assert any(label == "table audit_events" for label, _ in places)

    def found(secret: str) -> list[str]:
        return [label for label, text in places if any(form in text for form in _forms(secret))]

    # Lists name a key by its last 4 characters (checksum characters, see kit/keys.py): its
    # random part is never stored or shown.
    def random_part(key: str) -> str:
        return key[len(API_KEY_PREFIX) : -CHECKSUM_LENGTH]

    def issued(key: str) -> list[str]:
        return [secrets.issued_at.get(key, KEY_ISSUED)]

    leaks = [
        *(f"key {key[:6]}… in {found(key)}" for key in secrets.keys if found(key) != issued(key)),
        *(
            f"key {key[:6]}…: random part in {found(random_part(key))}"
            for key in secrets.keys
            if key.startswith(API_KEY_PREFIX) and found(random_part(key)) != issued(key)
        ),
        *(
            f"token {token[:6]}… in {found(token)}"
            for token in secrets.tokens
            if len(found(token)) != 1 or not set(found(token)) <= TOKEN_ISSUED
        ),
        *(f"{secret[:6]}… in {found(secret)}" for secret in secrets.forbidden if found(secret)),
    ]
    assert leaks == [], "\n".join(leaks)
