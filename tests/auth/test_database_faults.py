"""When the invalidation channel or the whole database goes away, and comes back.

PostgreSQL only: it is the database that can be unreachable while Keyplane runs. The
server is real (uvicorn on loopback); the database sits behind a TCP forwarder that the
test cuts and restores, as a failing network or database host would, or partitions (no
byte moves, nothing is closed) and heals, as a failing network does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from keyplane.kit.db import create_engine
from keyplane.kit.invalidation import APPLICATION_NAME
from keyplane.kit.keys import generate_api_key
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.api_keys.helpers import make_api_key
from tests.conftest import make_settings
from tests.helpers import World, wait_until
from tests.live import ServedApp, seed, serving
from tests.tcp_proxy import TcpProxy
from tests.users.helpers import login

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def execute(database_url: str, statement: str, *arguments: object) -> str:
    parsed = make_url(database_url)
    connection = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        database=parsed.database,
    )
    try:
        status: str = await connection.execute(statement, *arguments)
        return status
    finally:
        await connection.close()


async def seeded(settings: Settings) -> World:
    engine = create_engine(settings.resolved_database_url)
    try:
        return await seed(Runtime.build(settings, engine))
    finally:
        await engine.dispose()


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 5432) as forwarder:
        yield forwarder


async def info(http: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await http.get("/v1/users/info", headers=headers)


def assert_unavailable(
    response: httpx.Response, code: str = "DatabaseUnreachable", says: str = "cannot be reached"
) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == code
    assert says in body["message"]
    assert set(body) == {"code", "message", "details", "ref"}
    assert "Traceback" not in response.text
    assert response.headers["Retry-After"]


async def test_a_lost_invalidation_channel_turns_the_cache_off_until_it_is_back(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path, key_cache_max_age_seconds=60.0)
    world = await seeded(settings)
    async with serving(settings) as served, httpx.AsyncClient(base_url=served.url) as http:
        cache = served.runtime.key_cache
        await wait_until(lambda: cache.enabled)
        await login(http, world.alice)
        key = await make_api_key(http, world.alice)
        assert (await info(http, key.headers)).status_code == 200
        assert len(cache) == 1

        await execute(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            APPLICATION_NAME,
        )
        await wait_until(lambda: not cache.enabled, within=3)
        assert len(cache) == 0

        # A change no notification announces is still seen: every request reads through.
        await execute(database_url, "UPDATE api_keys SET is_active = false WHERE uid = $1", key.uid)
        refused = await info(http, key.headers)
        assert refused.status_code == 401
        assert refused.json()["code"] == "ApiKeyRevoked"

        await wait_until(lambda: cache.enabled, within=10)
        revoked = await http.patch(
            f"/v1/apiKeys/{key.uid}", json={"isActive": True}, headers=world.alice.headers
        )
        assert revoked.status_code == 204
        assert (await info(http, key.headers)).status_code == 200
        assert len(cache) == 1


async def test_an_unreachable_database_answers_503_and_recovers_by_itself(
    database_url: str, tmp_path: Path, proxy: TcpProxy
) -> None:
    proxied = make_url(database_url).set(port=proxy.port).render_as_string(hide_password=False)
    settings = make_settings(proxied, tmp_path, auth_failure_burst=10_000)
    world = await seeded(settings)
    async with serving(settings) as served, httpx.AsyncClient(base_url=served.url) as http:
        await wait_until(lambda: served.runtime.key_cache.enabled)
        await login(http, world.alice)
        key = await make_api_key(http, world.alice)
        assert (await info(http, key.headers)).status_code == 200
        unknown = {"ApiKey": generate_api_key()}
        assert (await info(http, unknown)).status_code == 401

        proxy.cut()
        await wait_until(lambda: not served.runtime.key_cache.enabled, within=5)
        # Whether the key was known, unknown or a session token: never 200, never 401.
        for headers in (key.headers, unknown, world.alice.headers):
            assert_unavailable(await info(http, headers))
        assert_unavailable(
            await http.post(
                "/v1/auth/authenticate",
                json={"emailId": world.alice.email, "org": "acme", "password": "wrong"},
            )
        )
        assert_unavailable(
            await http.post(
                "/v1/apiKeys",
                json={"metadata": {"name": "x"}, "spec": {}},
                headers=world.alice.headers,
            )
        )
        # Under load as well: concurrent requests, every one of them a clear 503.
        burst = await asyncio.gather(
            *(info(http, (key.headers, unknown, world.alice.headers)[n % 3]) for n in range(60))
        )
        for response in burst:
            assert_unavailable(response)
        # A malformed key needs no database to be refused.
        malformed = await info(http, {"ApiKey": "kp_not-a-key"})
        assert malformed.status_code == 401

        proxy.start()
        await _recovered(http, served, key.headers)
        assert (await info(http, world.alice.headers)).status_code == 200
        assert (await info(http, unknown)).status_code == 401


async def _recovered(http: httpx.AsyncClient, served: ServedApp, headers: dict[str, str]) -> None:
    """Within ten seconds of the database coming back, with nothing but 503 before."""
    statuses: list[int] = []
    for _ in range(100):
        statuses.append((await info(http, headers)).status_code)
        if statuses[-1] == 200:
            break
        await asyncio.sleep(0.1)
    assert statuses[-1] == 200, statuses
    assert set(statuses) <= {503, 200}, statuses
    await wait_until(lambda: served.runtime.key_cache.enabled, within=10)


# Short, so that the test is quick; the bound under test is "the setting, plus a little".
PARTITION_TIMEOUT = 1.0
# What "within a few seconds" must mean, for a partition that lasts far longer.
ANSWER_BOUND = 8.0
PARTITION_LASTS = 30.0


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def test_a_partitioned_database_answers_503_within_the_bound_and_recovers(
    database_url: str, tmp_path: Path, proxy: TcpProxy
) -> None:
    proxied = make_url(database_url).set(port=proxy.port).render_as_string(hide_password=False)
    settings = make_settings(
        proxied,
        tmp_path,
        auth_failure_burst=10_000,
        database_timeout_seconds=PARTITION_TIMEOUT,
    )
    world = await seeded(settings)
    async with (
        serving(settings) as served,
        httpx.AsyncClient(base_url=served.url, timeout=PARTITION_LASTS) as http,
    ):
        await wait_until(lambda: served.runtime.key_cache.enabled)
        await login(http, world.alice)
        await login(http, world.admin)
        # Made, never used: no cache holds it.
        key = await make_api_key(http, world.alice)
        session_cookie = {"Cookie": f"keyplane_session={world.admin.headers['Authorization']}"}
        # Every pooled connection used once, so that the partition catches open ones too.
        warm = await asyncio.gather(
            *(http.get("/v1/apiKeys", headers=world.alice.headers) for _ in range(12))
        )
        assert {response.status_code for response in warm} == {200}

        proxy.partition()
        partitioned_at = time.monotonic()
        try:
            answers = await asyncio.gather(
                timed(info(http, key.headers)),
                timed(info(http, world.alice.headers)),
                timed(http.get("/v1/apiKeys", headers=world.admin.headers)),
                timed(
                    http.post(
                        "/v1/apiKeys",
                        json={"metadata": {"name": "x"}, "spec": {}},
                        headers=world.alice.headers,
                    )
                ),
                timed(http.get("/my/api-keys", headers=session_cookie)),
            )
            # And once more, after the first round abandoned its connections.
            again = await asyncio.gather(
                timed(info(http, key.headers)),
                timed(http.get("/v1/apiKeys", headers=world.admin.headers)),
            )
            page, page_took = answers[-1]
            api_answers = [*answers[:-1], *again]
            for response, took in api_answers:
                assert_unavailable(response, "DatabaseTimeout", "did not answer in time")
                assert took < ANSWER_BOUND, (response.request.url, took)
            assert page.status_code == 503
            assert page_took < ANSWER_BOUND
            assert page.headers["Retry-After"]
            assert page.headers["content-type"].startswith("text/html")
            assert "The database is not answering" in page.text
            assert "did not answer in time" in page.text
            assert "Try again in" in page.text
            # The partition outlasts every answer: none of them was its end.
            assert time.monotonic() - partitioned_at < PARTITION_LASTS
            # The invalidation channel gave up too: the cache is off until it is back.
            await wait_until(lambda: not served.runtime.key_cache.enabled, within=ANSWER_BOUND)
            print(
                "partitioned answers took "
                + ", ".join(f"{took:.2f}" for _, took in [*answers, *again])
                + " s"
            )
        finally:
            proxy.heal()
        await _recovered(http, served, key.headers)
        assert (await info(http, world.alice.headers)).status_code == 200
        listed = await http.get("/v1/apiKeys", headers=world.admin.headers)
        assert listed.status_code == 200
        assert (await http.get("/my/api-keys", headers=session_cookie)).status_code == 200
