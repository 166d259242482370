"""What checking a key costs and what it trusts: counted in database statements, not time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, update

from keyplane.app import create_app
from keyplane.kit.db import transaction
from keyplane.kit.keys import generate_api_key
from keyplane.kit.time import utcnow
from keyplane.models import ApiKey
from keyplane.runtime import Runtime
from tests.api_keys.helpers import make_api_key
from tests.conftest import make_settings
from tests.helpers import World, build_world, wait_until

CACHE_SIZE = 3
NEGATIVE_CACHE_SIZE = 50


@pytest.fixture
async def small_cache_app(database_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        database_url,
        tmp_path,
        key_cache_size=CACHE_SIZE,
        key_cache_negative_size=NEGATIVE_CACHE_SIZE,
        key_cache_max_age_seconds=60.0,
        key_cache_negative_ttl_seconds=60.0,
        auth_failure_burst=100_000,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        await wait_until(lambda: application.state.runtime.key_cache.enabled)
        yield application


@pytest.fixture
def cached_runtime(small_cache_app: FastAPI) -> Runtime:
    runtime: Runtime = small_cache_app.state.runtime
    return runtime


@pytest.fixture
async def http(small_cache_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=small_cache_app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://keyplane.test") as client:
        yield client


@pytest.fixture
async def cast(http: httpx.AsyncClient, cached_runtime: Runtime) -> World:
    return await build_world(http, cached_runtime)


@contextmanager
def database_statements(runtime: Runtime) -> Iterator[list[str]]:
    """Every SQL statement the app sends while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engines = {runtime.engine.sync_engine, runtime.read_engine.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def info(http: httpx.AsyncClient, key: str) -> httpx.Response:
    return await http.get("/v1/users/info", headers={"ApiKey": key})


async def test_a_malformed_key_never_reaches_the_database(
    http: httpx.AsyncClient, cached_runtime: Runtime
) -> None:
    good = generate_api_key()
    bad_checksum = good[:-1] + ("A" if good[-1] != "A" else "B")
    with database_statements(cached_runtime) as statements:
        for value in (
            bad_checksum,
            "kp_short",
            "sk_" + good[3:],
            good + "x",
            good[:10] + "!" + good[11:],
        ):
            response = await info(http, value)
            assert response.status_code == 401
            assert response.json()["code"] == "ApiKeyMalformed"
    assert statements == []


async def test_a_cached_key_is_checked_without_any_database_statement(
    http: httpx.AsyncClient, cached_runtime: Runtime, cast: World
) -> None:
    key = await make_api_key(http, cast.alice)
    assert (await info(http, key.value)).status_code == 200
    with database_statements(cached_runtime) as statements:
        for _ in range(20):
            assert (await info(http, key.value)).status_code == 200
    assert statements == []
    # Last-used times wait in memory for the batch writer.
    assert cached_runtime.last_used.pending >= 1


async def test_a_flood_of_random_keys_stays_bounded_and_repeats_cost_nothing(
    http: httpx.AsyncClient, cached_runtime: Runtime, cast: World
) -> None:
    cache = cached_runtime.key_cache
    flood = [generate_api_key() for _ in range(NEGATIVE_CACHE_SIZE * 4)]
    for value in flood:
        response = await info(http, value)
        assert response.status_code == 401
        assert response.json()["code"] == "ApiKeyInvalid"
    assert cache.negative_size == NEGATIVE_CACHE_SIZE
    with database_statements(cached_runtime) as statements:
        for value in flood[-NEGATIVE_CACHE_SIZE:]:
            assert (await info(http, value)).status_code == 401
    assert statements == []

    # A real key created after the flood still works: nothing negative was kept for it.
    key = await make_api_key(http, cast.alice)
    assert (await info(http, key.value)).status_code == 200


async def test_the_key_cache_never_grows_past_its_size(
    http: httpx.AsyncClient, cached_runtime: Runtime, cast: World
) -> None:
    keys = [await make_api_key(http, cast.alice, f"key-{n}") for n in range(CACHE_SIZE * 3)]
    for _ in range(2):
        for key in keys:
            assert (await info(http, key.value)).status_code == 200
    assert len(cached_runtime.key_cache) == CACHE_SIZE


async def test_a_key_expires_on_time_even_while_cached(
    http: httpx.AsyncClient, cached_runtime: Runtime, cast: World
) -> None:
    expiry = utcnow() + timedelta(seconds=2)
    key = await make_api_key(http, cast.alice, expiry=expiry)
    assert (await info(http, key.value)).status_code == 200
    with database_statements(cached_runtime) as statements:
        assert (await info(http, key.value)).status_code == 200
        await asyncio.sleep((expiry - utcnow()).total_seconds() + 0.05)
        refused = await info(http, key.value)
    assert refused.status_code == 401
    assert refused.json()["code"] == "ApiKeyExpired"
    # The cached entry answered both times: the clock, not the database, refused it.
    assert statements == []


async def test_a_cached_entry_is_read_again_after_its_max_age(
    database_url: str, tmp_path: Path
) -> None:
    """Even a change that reached no channel (written behind Keyplane's back) is seen
    within the bound."""
    max_age = 0.5
    settings = make_settings(database_url, tmp_path, key_cache_max_age_seconds=max_age)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        runtime: Runtime = application.state.runtime
        await wait_until(lambda: runtime.key_cache.enabled)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://keyplane.test") as http:
            world = await build_world(http, runtime)
            key = await make_api_key(http, world.alice)
            assert (await info(http, key.value)).status_code == 200
            async with transaction(runtime.sessionmaker) as session:
                await session.execute(
                    update(ApiKey).where(ApiKey.uid == key.uid).values(is_active=False)
                )
            changed_at = time.monotonic()
            while (await info(http, key.value)).status_code == 200:
                assert time.monotonic() - changed_at < max_age + 0.5
                await asyncio.sleep(0.02)
            assert (await info(http, key.value)).json()["code"] == "ApiKeyRevoked"


async def test_a_cache_miss_is_one_statement_without_a_transaction_around_it(
    http: httpx.AsyncClient, cached_runtime: Runtime, cast: World
) -> None:
    key = await make_api_key(http, cast.alice)
    isolation: list[object] = []

    def record(conn: Any, *_args: Any) -> None:
        isolation.append(conn.get_execution_options().get("isolation_level"))

    event.listen(cached_runtime.read_engine.sync_engine, "before_cursor_execute", record)
    try:
        with database_statements(cached_runtime) as statements:
            assert (await info(http, key.value)).status_code == 200
    finally:
        event.remove(cached_runtime.read_engine.sync_engine, "before_cursor_execute", record)
    # No BEGIN before it (SQLite), and autocommit (PostgreSQL: asyncpg sends no BEGIN or
    # COMMIT then).
    assert len(statements) == 1
    assert statements[0].lstrip().upper().startswith("SELECT")
    if cached_runtime.engine.dialect.name == "postgresql":
        assert isolation == ["AUTOCOMMIT"]


async def test_a_busy_key_is_refreshed_ahead_of_its_max_age(
    http: httpx.AsyncClient, cached_runtime: Runtime, cast: World
) -> None:
    """Served from the cache near its max age while a background read renews it: even a
    change written behind Keyplane's back shows before the entry would have ended."""
    cache = cached_runtime.key_cache
    clock = [0.0]
    cache._clock = lambda: clock[0]
    key = await make_api_key(http, cast.alice)
    assert (await info(http, key.value)).status_code == 200
    async with transaction(cached_runtime.sessionmaker) as session:
        await session.execute(update(ApiKey).where(ApiKey.uid == key.uid).values(is_active=False))
    clock[0] = cache.max_age * 0.5
    assert (await info(http, key.value)).status_code == 200
    # Past the refresh point, still within the max age (which the clock never reaches).
    clock[0] = cache.max_age * 0.9
    with database_statements(cached_runtime) as statements:
        assert (await info(http, key.value)).status_code == 200

        async def refused() -> bool:
            return (await info(http, key.value)).status_code == 401

        deadline = time.monotonic() + 10
        while not await refused():
            assert time.monotonic() < deadline, "never refreshed"
            await asyncio.sleep(0.02)
    assert (await info(http, key.value)).json()["code"] == "ApiKeyRevoked"
    # The refresh was one read, whatever the number of requests that found the entry due.
    assert len(statements) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_cache_miss_survives_a_pooled_connection_the_database_dropped(
    http: httpx.AsyncClient, cached_runtime: Runtime, cast: World, database_url: str
) -> None:
    """The hot path's reads skip the pool's liveness ping (a round trip per read): a
    connection the server has closed since is replaced and the read sent again, once."""
    assert cached_runtime.read_engine is not cached_runtime.engine
    assert cached_runtime.read_engine.pool._pre_ping is False
    first = await make_api_key(http, cast.alice)
    assert (await info(http, first.value)).status_code == 200
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        # Every backend of this database but this one: the pooled read connection included.
        terminated = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    assert terminated >= 1
    second = await make_api_key(http, cast.alice, "second")
    cached_runtime.key_cache.discard(cached_runtime.secret_hasher.hash(second.value))
    response = await info(http, second.value)
    assert response.status_code == 200, response.text
