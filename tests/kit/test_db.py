from __future__ import annotations

import asyncio
import time
from asyncio import Event
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

from keyplane.api_keys.last_used import LastUsedRecorder
from keyplane.audit.actions import Action
from keyplane.kit.db import (
    DbSession,
    UnsupportedDatabase,
    create_engine,
    create_sessionmaker,
    normalise_database_url,
    transaction,
)
from keyplane.kit.time import utcnow
from keyplane.models import ApiKey, AuditEvent
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.api_keys.helpers import key_body, make_api_key
from tests.conftest import make_settings
from tests.helpers import World
from tests.tcp_proxy import TcpProxy


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///data/keyplane.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///data/keyplane.db", "sqlite+aiosqlite"),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql+asyncpg"),
        ("postgres://postgres@127.0.0.1/test", "postgresql+asyncpg"),
        ("postgresql+psycopg://postgres@127.0.0.1/test", "postgresql+asyncpg"),
    ],
)
def test_urls_people_write_get_the_async_driver(given: str, driver: str) -> None:
    assert normalise_database_url(given).drivername == driver


def test_libpq_sslmode_becomes_asyncpg_ssl() -> None:
    url = normalise_database_url("postgresql://u@db.example/keyplane?sslmode=require")
    assert url.query == {"ssl": "require"}


def test_unsupported_schemes_are_refused_with_guidance() -> None:
    with pytest.raises(UnsupportedDatabase, match=r"sqlite:///.*postgresql://"):
        normalise_database_url("mysql://root@localhost/keyplane")


# What the database layer does when the database cannot serve: every wait is bounded, and
# the answer says which failure it was (the handlers in keyplane.kit.errors).

# Short, so that the tests are quick; the bound under test is "the setting, plus a little".
TIMEOUT = 1.0
# What "within a few seconds" must mean.
ANSWER_BOUND = 8.0


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url,
        tmp_path,
        database_timeout_seconds=TIMEOUT,
        api_key_default_per_user_limit=1000,
    )


def assert_503(response: httpx.Response, code: str, says: str) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == code
    assert says in body["message"]
    assert int(response.headers["Retry-After"]) >= 1


async def test_no_free_pooled_connection_answers_503_within_the_bound(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    held: list[AsyncConnection] = []
    try:
        while True:
            connection = runtime.engine.connect()
            try:
                await connection.start()
            except PoolTimeout:
                break
            held.append(connection)
        started = time.monotonic()
        response = await client.get("/v1/users/info", headers=world.alice.headers)
        took = time.monotonic() - started
        assert_503(response, "DatabaseTimeout", "no connection to it came free in time")
        assert took < ANSWER_BOUND
    finally:
        for connection in held:
            await connection.close()
    assert (await client.get("/v1/users/info", headers=world.alice.headers)).status_code == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_full_sqlite_database_answers_503_storage_full_and_keeps_nothing_of_the_write(
    client: httpx.AsyncClient, runtime: Runtime, world: World, database_url: str
) -> None:
    @event.listens_for(runtime.engine.sync_engine, "connect")
    def _no_room_to_grow(dbapi_connection: Any, _record: Any) -> None:
        # SQLite's own limit on the file's size: a real SQLITE_FULL once it would grow.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA page_count")
        cursor.execute(f"PRAGMA max_page_count={cursor.fetchone()[0]}")
        cursor.close()

    await runtime.engine.dispose()
    created: list[str] = []
    refused = None
    for n in range(500):
        response = await client.post(
            "/v1/apiKeys", json=key_body(f"filler {n}"), headers=world.admin.headers
        )
        if response.status_code != 201:
            refused = response
            break
        created.append(response.json()["uid"])
    assert refused is not None, "the database never filled up"
    assert_503(refused, "StorageFull", "run out of storage space")
    assert "cannot be reached" not in refused.text

    event.remove(runtime.engine.sync_engine, "connect", _no_room_to_grow)
    await runtime.engine.dispose()
    async with transaction(runtime.sessionmaker, writes=False) as session:
        names = set((await session.scalars(select(ApiKey.name))).all())
        uids = set((await session.scalars(select(ApiKey.uid))).all())
        audited = (
            await session.scalars(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == Action.API_KEY_CREATE)
            )
        ).one()
    # Every acknowledged key is there with its audit record; of the refused one, nothing.
    assert uids == set(created)
    assert f"filler {len(created)}" not in names
    assert audited == len(created)


async def _connect(database_url: str) -> asyncpg.Connection:
    parsed = make_url(database_url)
    return await asyncpg.connect(
        host=parsed.host, port=parsed.port or 5432, user=parsed.username, database=parsed.database
    )


def _add_colliding_route(app: FastAPI, first: str, second: str) -> tuple[Event, Event]:
    """A route that holds one tenant row (changed, or read in a repeatable-read snapshot)
    and then changes another (or the same), pausing in between, so that a test can make a
    real second transaction collide with it."""
    holding, go_on = Event(), Event()
    change = text("UPDATE tenants SET name = 'changed by the loser' WHERE uid = :uid")

    @app.post("/test-only/collide/{kind}")
    async def collide(kind: str, session: DbSession) -> dict[str, str]:
        if kind == "serialization":
            await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            await session.execute(text("SELECT name FROM tenants WHERE uid = :uid"), {"uid": first})
        else:
            # Well within the test's statement timeout, which would otherwise come first.
            await session.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
            await session.execute(change, {"uid": first})
        holding.set()
        await go_on.wait()
        await session.execute(change, {"uid": second})
        return {}

    return holding, go_on


async def _wait_for_a_lock_wait(observer: asyncpg.Connection) -> None:
    for _ in range(500):
        if await observer.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
            return
        await asyncio.sleep(0.01)
    pytest.fail("the route never waited for the lock")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_deadlock_answers_409_try_again_and_keeps_nothing_of_the_loser(
    app: FastAPI, client: httpx.AsyncClient, world: World, database_url: str
) -> None:
    first, second = world.alice.tenant_uid, world.other_admin.tenant_uid
    holding, go_on = _add_colliding_route(app, first, second)
    other, observer = await _connect(database_url), await _connect(database_url)
    try:
        # Its own detector waits longer: the route's transaction is the one PostgreSQL ends.
        await other.execute("SET deadlock_timeout = '60s'")
        async with other.transaction():
            await other.execute("UPDATE tenants SET name = name WHERE uid = $1", second)
            request = asyncio.create_task(client.post("/test-only/collide/deadlock"))
            await holding.wait()
            go_on.set()
            await _wait_for_a_lock_wait(observer)
            closing_the_cycle = asyncio.create_task(
                other.execute("UPDATE tenants SET name = name WHERE uid = $1", first)
            )
            response = await request
            await closing_the_cycle
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "Conflict"
        assert "try again" in response.json()["message"]
        assert "UPDATE" not in response.text
        names = await observer.fetch("SELECT name FROM tenants WHERE uid = $1", first)
        assert [row["name"] for row in names] == [world.alice.tenant_name]
    finally:
        await other.close()
        await observer.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_serialization_failure_answers_409_try_again(
    app: FastAPI, client: httpx.AsyncClient, world: World, database_url: str
) -> None:
    first = world.alice.tenant_uid
    holding, go_on = _add_colliding_route(app, first, first)
    other = await _connect(database_url)
    try:
        request = asyncio.create_task(client.post("/test-only/collide/serialization"))
        await holding.wait()
        # Committed after the route's snapshot, on the row the route then changes.
        await other.execute("UPDATE tenants SET name = 'changed meanwhile' WHERE uid = $1", first)
        go_on.set()
        response = await request
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "Conflict"
        assert "try again" in response.json()["message"]
        name = await other.fetchval("SELECT name FROM tenants WHERE uid = $1", first)
        assert name == "changed meanwhile"
    finally:
        await other.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_lock_held_too_long_answers_503_database_timeout(
    client: httpx.AsyncClient, world: World, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = await make_api_key(client, world.alice)
    other = await _connect(database_url)
    try:
        async with other.transaction():
            await other.execute("SELECT uid FROM api_keys WHERE uid = $1 FOR UPDATE", key.uid)
            started = time.monotonic()
            # Unbounded, the request would wait for this transaction, which waits for it.
            async with asyncio.timeout(ANSWER_BOUND * 2):
                response = await client.patch(
                    f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.alice.headers
                )
            took = time.monotonic() - started
        assert_503(response, "DatabaseTimeout", "did not answer in time")
        assert took < ANSWER_BOUND
        # The log names the failure, never the statement's values.
        logged = [r.getMessage() for r in caplog.records if r.name == "keyplane.errors"]
        assert any("DatabaseTimeout" in line and "57014" in line for line in logged), logged
        assert not any(key.uid in line for line in logged)
    finally:
        await other.close()
    # The server cancelled the statement and the connection lived on: the next one works.
    revoked = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.alice.headers
    )
    assert revoked.status_code == 204


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_last_used_flush_gives_up_within_the_bound_and_keeps_the_times(
    database_url: str, tmp_path: Path
) -> None:
    with TcpProxy("127.0.0.1", make_url(database_url).port or 5432) as proxy:
        proxied = make_url(database_url).set(port=proxy.port)
        engine = create_engine(proxied.render_as_string(hide_password=False), timeout_seconds=1)
        sessionmaker = create_sessionmaker(engine)
        recorder = LastUsedRecorder()
        try:
            async with transaction(sessionmaker, writes=False) as session:
                await session.execute(text("SELECT 1"))
            recorder.record("no-such-key", utcnow())
            proxy.partition()
            started = time.monotonic()
            with pytest.raises((OSError, DBAPIError)):
                await recorder.flush(sessionmaker)
            assert time.monotonic() - started < ANSWER_BOUND
            assert recorder.pending == 1
            proxy.heal()
            assert await recorder.flush(sessionmaker) == 1
        finally:
            proxy.heal()
            await engine.dispose()
