"""The metrics move with real requests, and one scrape of ``keyplane serve --workers 2``
sums both workers. Scrapes are parsed with prometheus-client's own parser."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from keyplane.app import create_app
from keyplane.kit.db import create_engine
from keyplane.kit.keys import generate_api_key
from keyplane.runtime import Runtime
from tests.api_keys.helpers import make_api_key
from tests.conftest import make_settings
from tests.helpers import World, wait_until
from tests.live import seed, server_process
from tests.users.helpers import login

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


@pytest.fixture
async def loopback(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client on this host, as Prometheus next to Keyplane would be."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://keyplane.test") as http:
        yield http


AUTH = "keyplane_authentications_total"


async def test_counters_move_with_real_requests(
    client: httpx.AsyncClient, loopback: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    await wait_until(lambda: runtime.key_cache.enabled)
    valid = await make_api_key(client, world.alice, "valid")
    revoked = await make_api_key(client, world.alice, "revoked")
    verifier = await make_api_key(client, world.admin, "verifier")
    before = await scrape(loopback)

    assert (await client.get("/v1/users/info", headers=valid.headers)).status_code == 200
    assert (await client.get("/v1/users/info", headers=valid.headers)).status_code == 200
    response = await client.patch(
        f"/v1/apiKeys/{revoked.uid}", json={"isActive": False}, headers=world.alice.headers
    )
    assert response.status_code == 204
    refused = await client.get("/v1/users/info", headers=revoked.headers)
    assert refused.json()["code"] == "ApiKeyRevoked"
    for key in (revoked.value, valid.value):
        answer = await client.post(
            "/v1/apiKeys/verify", json={"key": key}, headers=verifier.headers
        )
        assert answer.status_code == 200
    # A read that overlaps an invalidation being applied (the revoke's, coming back through
    # the database) is not cached: ask again until the negative entry is there.
    unknown_key, unknown_sent = generate_api_key(), 0
    while not runtime.key_cache.negative_size:
        assert unknown_sent < 50
        unknown = await client.get("/v1/users/info", headers={"ApiKey": unknown_key})
        assert unknown.json()["code"] == "ApiKeyInvalid"
        unknown_sent += 1
    # A pooled connection held while the scrape comes shows in the pool gauge.
    async with runtime.engine.connect():
        after = await scrape(loopback)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(AUTH, method="apiKey", outcome="ok") == 4  # two infos, two verifies
    assert moved(AUTH, method="apiKey", outcome="ApiKeyRevoked") == 1
    assert moved(AUTH, method="apiKey", outcome="ApiKeyInvalid") == unknown_sent
    assert moved(AUTH, method="session", outcome="ok") == 1  # the revoke
    assert moved("keyplane_verifications_total", code="REVOKED") == 1
    assert moved("keyplane_verifications_total", code="VALID") == 1
    assert moved("keyplane_request_duration_seconds_count", kind="users_info") == 3 + unknown_sent
    assert moved("keyplane_request_duration_seconds_count", kind="verify") == 2
    assert moved("keyplane_request_duration_seconds_bucket", kind="verify", le="+Inf") == 2
    assert moved("keyplane_key_cache_hits_total") >= 2
    assert moved("keyplane_key_cache_misses_total") >= 2
    assert moved("keyplane_invalidations_applied_total") >= 1
    assert value(after, "keyplane_key_cache_entries") >= 1
    assert value(after, "keyplane_key_cache_negative_entries") >= 1
    assert value(after, "keyplane_key_cache_enabled") == 1
    assert value(after, "keyplane_db_pool_checked_out_connections") >= 1
    # Every metric carries the prefix; no label holds a path or an identifier.
    for (name, labels), _value in after.items():
        assert name.startswith("keyplane_")
        for _label, text in labels:
            assert not text.startswith("/")
            assert valid.uid not in text


async def test_the_delay_of_each_invalidation_through_the_channel_is_observed(
    client: httpx.AsyncClient, loopback: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    """A revoke's invalidation comes back to this worker through the channel (its own
    NOTIFY, or its own row in the table SQLite workers poll): the delay histogram counts
    it, with a delay no longer than the test took."""
    await wait_until(lambda: runtime.key_cache.enabled)
    key = await make_api_key(client, world.alice, "delayed")
    before = await scrape(loopback)
    started = asyncio.get_running_loop().time()
    response = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.alice.headers
    )
    assert response.status_code == 204
    count = "keyplane_invalidation_delay_seconds_count"
    total = "keyplane_invalidation_delay_seconds_sum"
    for _ in range(100):
        after = await scrape(loopback)
        if value(after, count) > value(before, count):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("no invalidation delay was observed")
    elapsed = asyncio.get_running_loop().time() - started
    observed = value(after, total) - value(before, total)
    assert 0 <= observed <= elapsed * (value(after, count) - value(before, count)) + 0.01
    assert value(after, "keyplane_invalidation_delay_seconds_bucket", le="+Inf") == value(
        after, count
    )


async def test_a_known_unknown_key_is_a_negative_hit(
    client: httpx.AsyncClient, loopback: httpx.AsyncClient, runtime: Runtime
) -> None:
    await wait_until(lambda: runtime.key_cache.enabled)
    unknown = {"ApiKey": generate_api_key()}
    before = await scrape(loopback)
    for _ in range(3):
        assert (await client.get("/v1/users/info", headers=unknown)).status_code == 401
    after = await scrape(loopback)
    negative = "keyplane_key_cache_negative_hits_total"
    assert value(after, negative) - value(before, negative) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_failed_authentication_refusals_are_counted(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        database_url, tmp_path, auth_failure_burst=2, auth_failure_rate_per_second=0.01
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://keyplane.test") as http:
            statuses = [
                (await http.get("/v1/users/info", headers={"ApiKey": "kp_wrong"})).status_code
                for _ in range(4)
            ]
            assert statuses == [401, 401, 429, 429]
            samples = await scrape(http)
    assert value(samples, "keyplane_auth_failure_refusals_total", kind="users_info") == 2
    assert value(samples, AUTH, method="apiKey", outcome="ApiKeyMalformed") == 2
    assert value(samples, AUTH, method="apiKey", outcome="TooManyAuthFailures") == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_apps_in_one_process_keep_their_own_metrics(
    database_url: str, tmp_path: Path
) -> None:
    # No global registry: a second app neither collides with the first nor sees its counts.
    first, second = (create_app(make_settings(database_url, tmp_path)) for _ in range(2))
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        for app, requests in ((first, 3), (second, 1)):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://k.test") as http:
                for _ in range(requests):
                    await http.get("/healthz")
                samples = await scrape(http)
            count = "keyplane_request_duration_seconds_count"
            assert value(samples, count, kind="probe") == requests


async def test_one_scrape_sums_every_worker(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path / "server", key_cache_max_age_seconds=60.0)
    engine = create_engine(settings.resolved_database_url)
    try:
        world = await seed(Runtime.build(settings, engine))
    finally:
        await engine.dispose()
    # Where `keyplane serve` makes its metrics directory (Python's tempfile reads TMPDIR).
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    async with server_process(settings, workers=2, environment={"TMPDIR": str(temporary)}) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            await login(http, world.alice)
            key = await make_api_key(http, world.alice)
        sent = 0
        # Each request on a connection of its own, until both workers have cached the key:
        # each worker's cache holds it once, and the entries gauge sums the live workers.
        for _ in range(40):
            for _ in range(10):
                async with httpx.AsyncClient(base_url=url) as http:
                    response = await http.get("/v1/users/info", headers=key.headers)
                    assert response.status_code == 200
                    sent += 1
            await asyncio.sleep(1.2)  # the other worker's gauges are at most a second old
            async with httpx.AsyncClient(base_url=url) as http:
                if value(await scrape(http), "keyplane_key_cache_entries") == 2:
                    break
        else:
            pytest.fail(f"{sent} requests never reached both workers")
        # Whichever worker answers a scrape, it counts every worker's requests.
        for _ in range(6):
            async with httpx.AsyncClient(base_url=url) as http:
                samples = await scrape(http)
            assert value(samples, AUTH, method="apiKey", outcome="ok") == sent
            assert value(samples, "keyplane_key_cache_entries") == 2
        (directory,) = temporary.iterdir()
        assert directory.name.startswith("keyplane-metrics-")
        assert any(path.suffix == ".db" for path in directory.iterdir())
    # Removed when the server stops.
    assert list(temporary.iterdir()) == []
