"""``GET /metrics``: who may read it (``KEYPLANE_METRICS``); ``GET /readyz``: 200 while the
database answers at the current schema with the invalidation channel up, 503 naming what
is wrong otherwise."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url

from keyplane.app import create_app
from keyplane.kit.migrations import alembic_config, head_revision
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.conftest import make_settings
from tests.helpers import wait_until
from tests.live import serving
from tests.tcp_proxy import TcpProxy

TOKEN = "a-metrics-token-" + "y" * 32
ERROR_BODY = {"code", "message", "details", "ref"}
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def client_at(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://keyplane.test")


async def scrape_from(app: FastAPI, address: str, **headers: str) -> httpx.Response:
    async with client_at(app, address) as http:
        return await http.get("/metrics", headers=headers)


def assert_refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_BODY
    assert body["code"] == code
    assert "keyplane_" not in response.text
    return body


@sqlite_only
async def test_metrics_are_for_loopback_clients_by_default(
    database_url: str, tmp_path: Path
) -> None:
    async with started(make_settings(database_url, tmp_path)) as app:
        for address in ("127.0.0.1", "::1"):
            response = await scrape_from(app, address)
            assert response.status_code == 200
            assert "keyplane_authentications_total" in response.text
        body = assert_refused(await scrape_from(app, "203.0.113.7"), 403, "MetricsLoopbackOnly")
        assert "KEYPLANE_METRICS" in body["message"]


@sqlite_only
async def test_an_address_forwarded_by_a_trusted_proxy_is_not_loopback(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path, trusted_proxies="127.0.0.1/32")
    async with started(settings) as app:
        forwarded = await scrape_from(app, "127.0.0.1", **{"X-Forwarded-For": "198.51.100.4"})
        assert_refused(forwarded, 403, "MetricsLoopbackOnly")
        assert (await scrape_from(app, "127.0.0.1")).status_code == 200


@sqlite_only
async def test_token_mode_takes_the_bearer_token_from_anywhere(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path, metrics="token", metrics_token=TOKEN)
    async with started(settings) as app:
        for address in ("203.0.113.7", "127.0.0.1"):
            missing = await scrape_from(app, address)
            assert_refused(missing, 401, "MetricsTokenInvalid")
            assert missing.headers["WWW-Authenticate"] == "Bearer"
        for wrong in (f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", TOKEN, f"Basic {TOKEN}"):
            response = await scrape_from(app, "203.0.113.7", Authorization=wrong)
            assert_refused(response, 401, "MetricsTokenInvalid")
        allowed = await scrape_from(app, "203.0.113.7", Authorization=f"Bearer {TOKEN}")
        assert allowed.status_code == 200
        assert allowed.headers["content-type"].startswith("text/plain; version=0.0.4")


@sqlite_only
async def test_metrics_off_is_no_such_endpoint(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, metrics="off", metrics_token=TOKEN)
    async with started(settings) as app:
        response = await scrape_from(app, "127.0.0.1", Authorization=f"Bearer {TOKEN}")
        assert_refused(response, 404, "ResourceNotFound")


def test_token_mode_needs_a_long_token(tmp_path: Path) -> None:
    for token in ("", "short", "changeme"):
        with pytest.raises(ValidationError, match="KEYPLANE_METRICS_TOKEN"):
            make_settings("sqlite://", tmp_path, metrics="token", metrics_token=token)
    with pytest.raises(ValidationError):
        make_settings("sqlite://", tmp_path, metrics="everyone")


async def test_both_routes_are_documented_without_credentials(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/metrics", "/readyz"):
        operation = paths[path]["get"]
        assert operation["tags"] == ["health"]
        assert "security" not in operation
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]


async def test_ready_when_everything_is_up(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await wait_until(lambda: runtime.key_cache.channel_healthy)
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "schema": "ok", "invalidation": "ok"},
    }
    # Liveness stays what it was.
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def set_schema_revision(runtime: Runtime, revision: str | None) -> None:
    async with runtime.engine.begin() as connection:
        await connection.execute(
            text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision}
        )


async def test_not_ready_while_the_schema_is_behind(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await wait_until(lambda: runtime.key_cache.channel_healthy)
    head = head_revision()
    assert head is not None
    previous = ScriptDirectory.from_config(alembic_config("")).get_revision(head).down_revision
    assert isinstance(previous, str)
    # As if the database were restored from an older backup under the running server.
    await set_schema_revision(runtime, previous)
    try:
        response = await client.get("/readyz")
        body = assert_refused(response, 503, "NotReady")
        assert body["details"]["failed"] == ["schema"]
        assert f"at revision {previous}, not {head}" in body["details"]["checks"]["schema"]
        assert "schema" in body["message"]
        assert response.headers["Retry-After"] == "5"
    finally:
        await set_schema_revision(runtime, head)
    assert (await client.get("/readyz")).status_code == 200
    # Once found current, the schema is not read again on every probe.
    await set_schema_revision(runtime, previous)
    try:
        assert (await client.get("/readyz")).status_code == 200
    finally:
        await set_schema_revision(runtime, head)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_not_ready_while_the_database_is_cut_off(database_url: str, tmp_path: Path) -> None:
    with TcpProxy("127.0.0.1", make_url(database_url).port or 5432) as proxy:
        proxied = make_url(database_url).set(port=proxy.port).render_as_string(False)
        settings = make_settings(proxied, tmp_path, database_timeout_seconds=1.0)
        async with serving(settings) as served, httpx.AsyncClient(base_url=served.url) as http:
            await wait_until(lambda: served.runtime.key_cache.channel_healthy, within=10)
            assert (await http.get("/readyz")).status_code == 200

            proxy.cut()
            await wait_until(lambda: not served.runtime.key_cache.channel_healthy, within=5)
            began = time.monotonic()
            response = await http.get("/readyz")
            assert time.monotonic() - began < 5
            body = assert_refused(response, 503, "NotReady")
            assert body["details"]["failed"] == ["database", "schema", "invalidation"]
            assert body["details"]["checks"]["database"] == "DatabaseUnreachable"
            assert response.headers["Retry-After"]

            proxy.start()
            await wait_until(lambda: served.runtime.key_cache.channel_healthy, within=10)
            assert (await http.get("/readyz")).status_code == 200
