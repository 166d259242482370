"""A change that can turn a key invalid reaches every instance's key cache at once.

The instances here are real ``keyplane serve`` processes sharing one database. Their
cached entries are allowed to live for a minute, far longer than any test waits, so the
only thing that can make the second instance refuse a key within the bounds below is the
invalidation channel (LISTEN/NOTIFY on PostgreSQL, the watched table on SQLite).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete as sa_delete
from sqlalchemy.engine import make_url

from keyplane.console.session import SESSION_COOKIE
from keyplane.kit.db import create_engine
from keyplane.kit.time import utcnow
from keyplane.models import CacheInstance
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.api_keys.helpers import CreatedKey, key_body, make_api_key
from tests.conftest import make_settings
from tests.helpers import World, wait_until
from tests.live import seed, server_process
from tests.tcp_proxy import TcpProxy
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


# --- No instance accepts a key once the change has answered (kit/invalidation.py) ---------

LEASE_SECONDS = 2.0  # the default KEYPLANE_INVALIDATION_LEASE_SECONDS
# A change waits out a worker that cannot confirm it for at most about one lease.
WAITED_OUT_BOUND_SECONDS = LEASE_SECONDS + 1.5
ROUNDS = 30


def many_keys_settings(database_url: str, data_dir: Path) -> Settings:
    return make_settings(
        database_url,
        data_dir,
        key_cache_max_age_seconds=60.0,
        auth_failure_burst=10_000,
        api_key_default_per_user_limit=1000,
        api_key_max_per_user_limit=1000,
    )


async def seeded_world(settings: Settings) -> World:
    engine = create_engine(settings.resolved_database_url)
    try:
        return await seed(Runtime.build(settings, engine))
    finally:
        await engine.dispose()


def serving_pid(url: str) -> int:
    """The process of a one-worker ``keyplane serve`` (tests.live.server_process) on the
    URL's port."""
    port = url.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"keyplane" in arguments and b"serve" in arguments and port.encode() in arguments:
            return int(entry.name)
    raise AssertionError(f"no keyplane serve process on port {port}")


async def keep_busy(http: httpx.AsyncClient, key: CreatedKey, stop: asyncio.Event) -> int:
    served = 0
    while not stop.is_set():
        response = await http.get("/v1/users/info", headers=key.headers)
        assert response.status_code == 200, response.text
        served += 1
    return served


async def test_once_a_change_has_answered_the_busy_other_instance_refuses_at_once(
    database_url: str, tmp_path: Path
) -> None:
    """Round after round, B holds the key cached and serves another key to a steady load;
    the very first request B gets after A's answer is refused."""
    settings = many_keys_settings(database_url, tmp_path)
    world = await seeded_world(settings)
    async with (
        server_process(settings) as url_a,
        server_process(settings) as url_b,
        httpx.AsyncClient(base_url=url_a) as a,
        httpx.AsyncClient(base_url=url_b) as b,
        httpx.AsyncClient(base_url=url_b, limits=httpx.Limits(max_connections=4)) as load,
    ):
        for actor in (world.admin, world.alice, world.bob):
            await login(a, actor)
        busy_key = await make_api_key(a, world.bob, "busy")
        stop = asyncio.Event()
        loaders = [asyncio.create_task(keep_busy(load, busy_key, stop)) for _ in range(4)]
        try:
            for round_number in range(ROUNDS):
                key = await make_api_key(a, world.alice, f"round-{round_number}")
                await warm(b, key)
                if round_number % 3 == 2:
                    changed, code = await delete(a, world.admin, key), "ApiKeyInvalid"
                else:
                    changed, code = await revoke(a, world.admin, key), "ApiKeyRevoked"
                assert changed.status_code == 204, changed.text
                first = await b.get("/v1/users/info", headers=key.headers)
                assert first.status_code == 401, f"round {round_number}: {first.text}"
                assert first.json()["code"] == code

            # A user's deactivation, the same way: every key of hers, at once.
            keys = [await make_api_key(a, world.alice, f"user-{n}") for n in range(3)]
            for key in keys:
                await warm(b, key)
            deactivated = await a.patch(
                f"/v1/users/{world.alice.uid}",
                json=[{"op": "replace", "path": "/status/isActive", "value": False}],
                headers=world.admin.headers,
            )
            assert deactivated.status_code == 204, deactivated.text
            for key in keys:
                refused = await b.get("/v1/users/info", headers=key.headers)
                assert refused.status_code == 401, refused.text
                assert refused.json()["code"] == "ApiKeyUserInactive"
        finally:
            stop.set()
            served = await asyncio.gather(*loaders)
        assert sum(served) > ROUNDS


async def test_a_paused_instance_is_waited_out_and_refuses_the_key_when_it_resumes(
    database_url: str, tmp_path: Path
) -> None:
    settings = many_keys_settings(database_url, tmp_path)
    world = await seeded_world(settings)
    async with (
        server_process(settings) as url_a,
        server_process(settings) as url_b,
        httpx.AsyncClient(base_url=url_a) as a,
        httpx.AsyncClient(base_url=url_b, timeout=10) as b,
    ):
        await login(a, world.admin)
        await login(a, world.alice)
        key = await make_api_key(a, world.alice, "paused")
        await warm(b, key)
        pid_b = serving_pid(url_b)
        os.kill(pid_b, signal.SIGSTOP)
        try:
            started = time.monotonic()
            revoked = await revoke(a, world.admin, key)
            waited = time.monotonic() - started
            assert revoked.status_code == 204, revoked.text
            assert waited < WAITED_OUT_BOUND_SECONDS, f"the revoke took {waited:.2f} s"
            # Paused past its lease: on resuming, B must not trust what it cached.
            await asyncio.sleep(0.2)
        finally:
            os.kill(pid_b, signal.SIGCONT)
        first = await b.get("/v1/users/info", headers=key.headers)
        assert first.status_code == 401, first.text
        assert first.json()["code"] == "ApiKeyRevoked"

        # B is back in the table: the next change waits for its confirmation, briefly.
        other = await make_api_key(a, world.alice, "after")
        await asyncio.sleep(LEASE_SECONDS / 2)
        await warm(b, other)
        started = time.monotonic()
        assert (await revoke(a, world.admin, other)).status_code == 204
        assert time.monotonic() - started < LEASE_SECONDS / 2
        refused = await b.get("/v1/users/info", headers=other.headers)
        assert refused.status_code == 401, refused.text


async def test_a_killed_instance_holds_up_one_change_for_a_lease_at_most(
    database_url: str, tmp_path: Path
) -> None:
    settings = many_keys_settings(database_url, tmp_path)
    world = await seeded_world(settings)
    async with (
        server_process(settings) as url_a,
        server_process(settings) as url_b,
        httpx.AsyncClient(base_url=url_a) as a,
        httpx.AsyncClient(base_url=url_b) as b,
    ):
        await login(a, world.admin)
        await login(a, world.alice)
        first, second = [await make_api_key(a, world.alice, name) for name in ("one", "two")]
        await warm(b, first)
        os.kill(serving_pid(url_b), signal.SIGKILL)

        started = time.monotonic()
        assert (await revoke(a, world.admin, first)).status_code == 204
        assert time.monotonic() - started < WAITED_OUT_BOUND_SECONDS
        # Its row is gone with that change: the next one waits for nobody.
        started = time.monotonic()
        assert (await revoke(a, world.admin, second)).status_code == 204
        assert time.monotonic() - started < LEASE_SECONDS / 4
        assert (await a.get("/v1/users/info", headers=first.headers)).status_code == 401


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("failure", ["cut", "partition"])
async def test_an_instance_cut_off_from_the_database_neither_holds_up_a_change_nor_accepts(
    database_url: str, tmp_path: Path, failure: str
) -> None:
    settings = many_keys_settings(database_url, tmp_path / "a")
    world = await seeded_world(settings)
    with TcpProxy("127.0.0.1", make_url(database_url).port or 5432) as proxy:
        proxied = make_url(database_url).set(port=proxy.port).render_as_string(False)
        settings_b = many_keys_settings(proxied, tmp_path / "b").model_copy(
            update={"secret_key": settings.secret_key}
        )
        async with (
            server_process(settings) as url_a,
            server_process(settings_b) as url_b,
            httpx.AsyncClient(base_url=url_a) as a,
            httpx.AsyncClient(base_url=url_b, timeout=15) as b,
        ):
            await login(a, world.admin)
            await login(a, world.alice)
            key = await make_api_key(a, world.alice, "cut-off")
            await warm(b, key)
            proxy.cut() if failure == "cut" else proxy.partition()

            started = time.monotonic()
            assert (await revoke(a, world.admin, key)).status_code == 204
            assert time.monotonic() - started < WAITED_OUT_BOUND_SECONDS
            # B cannot reach the database to check: it answers 503, never 200.
            cut_off = await b.get("/v1/users/info", headers=key.headers)
            assert cut_off.status_code == 503, cut_off.text

            if failure == "cut":
                proxy.start()
            else:
                proxy.heal()
            deadline = time.monotonic() + 15
            while (
                response := await b.get("/v1/users/info", headers=key.headers)
            ).status_code != 401:
                assert response.status_code == 503, response.text
                assert time.monotonic() < deadline, "B did not recover"
                await asyncio.sleep(0.2)
            assert response.json()["code"] == "ApiKeyRevoked"


async def test_a_worker_that_renews_but_does_not_apply_is_removed_and_waited_out(
    runtime: Runtime, client: httpx.AsyncClient, world: World
) -> None:
    """A row that stays live but never confirms (whatever the cause) holds a change up for
    half a lease, is deleted (so that it can no longer be renewed), and is waited out."""
    await wait_until(lambda: runtime.key_cache.enabled)
    key = await make_api_key(client, world.alice, "stuck")
    lease = runtime.settings.invalidation_lease_seconds
    async with runtime.sessionmaker() as session, session.begin():
        session.add(
            CacheInstance(
                id="stuck-worker",
                label="test",
                applied_sequence=0,
                started_at=utcnow(),
                expires_at=utcnow() + timedelta(seconds=lease),
            )
        )
    started = time.monotonic()
    revoked = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.admin.headers
    )
    waited = time.monotonic() - started
    assert revoked.status_code == 204, revoked.text
    # Its lease ran from the insert: waited out at about a lease, not sooner.
    assert lease * 0.9 < waited < lease + 1.0
    async with runtime.sessionmaker() as session:
        assert await session.get(CacheInstance, "stuck-worker") is None
        own = await session.get(CacheInstance, runtime.instance_id)
        assert own is not None


async def test_a_worker_whose_lease_was_taken_registers_again_with_an_empty_cache(
    runtime: Runtime, client: httpx.AsyncClient, world: World
) -> None:
    await wait_until(lambda: runtime.key_cache.enabled)
    key = await make_api_key(client, world.alice, "cached")
    assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 200
    assert len(runtime.key_cache) == 1
    async with runtime.sessionmaker() as session, session.begin():
        await session.execute(
            sa_delete(CacheInstance).where(CacheInstance.id == runtime.instance_id)
        )
    # The next renewal finds no row: it registers again and empties the cache first.
    await wait_until(lambda: len(runtime.key_cache) == 0, within=LEASE_SECONDS)
    await wait_until(runtime.lease.valid, within=LEASE_SECONDS)
    async with runtime.sessionmaker() as session:
        assert await session.get(CacheInstance, runtime.instance_id) is not None
    assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 200
    assert len(runtime.key_cache) == 1
