"""A change that can turn a key invalid reaches every instance's key cache at once.

The instances here are real ``keyplane serve`` processes sharing one database. Their
cached entries are allowed to live for a minute, far longer than any test waits, so the
only thing that can make the second instance refuse a key within the bounds below is the
invalidation channel (LISTEN/NOTIFY on PostgreSQL, the watched table on SQLite).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from keyplane.console.session import SESSION_COOKIE
from keyplane.kit.db import create_engine
from keyplane.kit.time import utcnow
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.api_keys.helpers import CreatedKey, key_body, make_api_key
from tests.conftest import make_settings
from tests.helpers import World
from tests.live import seed, server_process
from tests.users.helpers import Actor, login

# How long a change may take to reach the other instance before the test calls it lost.
PROPAGATION_BOUND_SECONDS = 1.0
AFTER_REFUSAL_PROBES = 20


@dataclass
class TwoInstances:
    a: httpx.AsyncClient
    b: httpx.AsyncClient
    world: World


def long_lived_cache_settings(database_url: str, data_dir: Path) -> Settings:
    # Many refusals in a row from one address: keep them clear of the failure rate limit.
    return make_settings(
        database_url, data_dir, key_cache_max_age_seconds=60.0, auth_failure_burst=10_000
    )


@pytest.fixture
async def two_instances(database_url: str, tmp_path: Path) -> AsyncIterator[TwoInstances]:
    settings = long_lived_cache_settings(database_url, tmp_path)
    engine = create_engine(settings.resolved_database_url)
    try:
        world = await seed(Runtime.build(settings, engine))
    finally:
        await engine.dispose()
    async with (
        server_process(settings) as url_a,
        server_process(settings) as url_b,
        httpx.AsyncClient(base_url=url_a) as a,
        httpx.AsyncClient(base_url=url_b) as b,
    ):
        for actor in (world.admin, world.alice):
            await login(a, actor)
        yield TwoInstances(a=a, b=b, world=world)


async def warm(http: httpx.AsyncClient, key: CreatedKey) -> None:
    for _ in range(3):
        response = await http.get("/v1/users/info", headers=key.headers)
        assert response.status_code == 200, response.text


async def assert_refused_everywhere_soon(
    http: httpx.AsyncClient, key: CreatedKey, code: str
) -> None:
    """The first 401 comes within the bound, and nothing is accepted after it."""
    changed_at = time.monotonic()
    while True:
        response = await http.get("/v1/users/info", headers=key.headers)
        if response.status_code == 401:
            break
        assert response.status_code == 200, response.text
        assert time.monotonic() - changed_at < PROPAGATION_BOUND_SECONDS, (
            "the change did not reach the other instance"
        )
        await asyncio.sleep(0.01)
    assert response.json()["code"] == code
    for _ in range(AFTER_REFUSAL_PROBES):
        again = await http.get("/v1/users/info", headers=key.headers)
        assert again.status_code == 401, again.text


Change = Callable[[httpx.AsyncClient, Actor, CreatedKey], Awaitable[httpx.Response]]


async def revoke(http: httpx.AsyncClient, admin: Actor, key: CreatedKey) -> httpx.Response:
    return await http.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=admin.headers
    )


async def delete(http: httpx.AsyncClient, admin: Actor, key: CreatedKey) -> httpx.Response:
    return await http.delete(f"/v1/apiKeys/{key.uid}", headers=admin.headers)


async def test_revoke_and_reactivate_through_one_instance_reach_the_other(
    two_instances: TwoInstances,
) -> None:
    a, b, world = two_instances.a, two_instances.b, two_instances.world
    key = await make_api_key(a, world.alice, "ci")
    await warm(b, key)

    assert (await revoke(a, world.admin, key)).status_code == 204
    await assert_refused_everywhere_soon(b, key, "ApiKeyRevoked")

    reactivated = await a.put(
        f"/v1/apiKeys/{key.uid}/state", json={"isActive": True}, headers=world.admin.headers
    )
    assert reactivated.status_code == 204
    started = time.monotonic()
    while (await b.get("/v1/users/info", headers=key.headers)).status_code != 200:
        assert time.monotonic() - started < PROPAGATION_BOUND_SECONDS
        await asyncio.sleep(0.01)


async def test_delete_through_one_instance_reaches_the_other(
    two_instances: TwoInstances,
) -> None:
    a, b, world = two_instances.a, two_instances.b, two_instances.world
    key = await make_api_key(a, world.alice, "ci")
    await warm(b, key)
    assert (await delete(a, world.admin, key)).status_code == 204
    await assert_refused_everywhere_soon(b, key, "ApiKeyInvalid")


async def test_a_shortened_expiry_reaches_the_other_instance(
    two_instances: TwoInstances,
) -> None:
    a, b, world = two_instances.a, two_instances.b, two_instances.world
    key = await make_api_key(a, world.alice, "ci")
    await warm(b, key)
    expiry = utcnow() + timedelta(seconds=2)
    edited = await a.put(
        f"/v1/apiKeys/{key.uid}", json=key_body("ci", expiry=expiry), headers=world.admin.headers
    )
    assert edited.status_code == 204, edited.text
    # B's cached entry still says 30 days; only the invalidation can teach it otherwise.
    await asyncio.sleep(max(0.0, (expiry - utcnow()).total_seconds()) + 0.1)
    await assert_refused_everywhere_soon(b, key, "ApiKeyExpired")


async def test_deactivating_or_deleting_a_user_reaches_the_other_instance(
    two_instances: TwoInstances,
) -> None:
    a, b, world = two_instances.a, two_instances.b, two_instances.world
    first = await make_api_key(a, world.alice, "first")
    second = await make_api_key(a, world.alice, "second")
    await warm(b, first)
    await warm(b, second)

    deactivated = await a.patch(
        f"/v1/users/{world.alice.uid}",
        json=[{"op": "replace", "path": "/status/isActive", "value": False}],
        headers=world.admin.headers,
    )
    assert deactivated.status_code == 204, deactivated.text
    await assert_refused_everywhere_soon(b, first, "ApiKeyUserInactive")
    await assert_refused_everywhere_soon(b, second, "ApiKeyUserInactive")

    reactivated = await a.patch(
        f"/v1/users/{world.alice.uid}",
        json=[{"op": "replace", "path": "/status/isActive", "value": True}],
        headers=world.admin.headers,
    )
    assert reactivated.status_code == 204
    await asyncio.sleep(PROPAGATION_BOUND_SECONDS)
    await warm(b, first)

    deleted = await a.delete(f"/v1/users/{world.alice.uid}", headers=world.admin.headers)
    assert deleted.status_code == 204
    await assert_refused_everywhere_soon(b, first, "ApiKeyInvalid")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_two_workers_on_one_sqlite_file_refuse_a_revoked_key_at_once(
    database_url: str, tmp_path: Path
) -> None:
    """``keyplane serve --workers 2``: whichever worker answers, the revoke holds."""
    settings = long_lived_cache_settings(database_url, tmp_path)
    engine = create_engine(settings.resolved_database_url)
    try:
        world = await seed(Runtime.build(settings, engine))
    finally:
        await engine.dispose()
    async with server_process(settings, workers=2) as url, httpx.AsyncClient(base_url=url) as http:
        await login(http, world.alice)
        key = await make_api_key(http, world.alice, "ci")
        # New connections spread the requests over both workers, so both cache the key.
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, limits=fresh) as spread:
            for _ in range(40):
                assert (await spread.get("/v1/users/info", headers=key.headers)).status_code == 200
            assert (await revoke(http, world.alice, key)).status_code == 204
            await asyncio.sleep(PROPAGATION_BOUND_SECONDS)
            for _ in range(40):
                refused = await spread.get("/v1/users/info", headers=key.headers)
                assert refused.status_code == 401, refused.text


async def test_a_password_set_on_one_instance_ends_sessions_and_cookies_on_the_other_at_once(
    two_instances: TwoInstances,
) -> None:
    """Sessions are read from the database on every request, never cached: the first
    request to the other instance after the change is already refused, REST and console."""
    a, b, world = two_instances.a, two_instances.b, two_instances.world
    console = await b.post(
        "/v1/auth/authenticate",
        json={"emailId": world.alice.email, "org": "acme", "password": world.alice.password},
    )
    assert console.status_code == 200, console.text
    cookie = {"Cookie": f"{SESSION_COOKIE}={console.json()['Authorization']}"}
    key = await make_api_key(a, world.alice, "ci")
    for _ in range(3):
        assert (await b.get("/v1/users/info", headers=world.alice.headers)).status_code == 200
        assert (await b.get("/my/api-keys", headers=cookie)).status_code == 200
    await warm(b, key)

    changed = await a.patch(
        f"/v1/users/{world.alice.uid}",
        json=[{"op": "replace", "path": "/spec/password", "value": "A-New-Passphrase-8830"}],
        headers=world.admin.headers,
    )
    assert changed.status_code == 204, changed.text

    refused = await b.get("/v1/users/info", headers=world.alice.headers)
    assert refused.status_code == 401, refused.text
    assert refused.json()["code"] == "TokenRevoked"
    page = await b.get("/my/api-keys", headers=cookie)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login")
    # Her key is a credential of its own: it keeps working.
    assert (await b.get("/v1/users/info", headers=key.headers)).status_code == 200
