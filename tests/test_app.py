from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyplane.app import DatabaseNotMigrated, create_app
from tests.conftest import make_settings


def test_create_app_does_not_touch_the_database(tmp_path: Path) -> None:
    database = tmp_path / "never-created.db"
    create_app(make_settings(f"sqlite:///{database}", tmp_path))
    assert not database.exists()


async def test_unmigrated_database_refuses_to_start(tmp_path: Path) -> None:
    application = create_app(make_settings(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path))
    with pytest.raises(DatabaseNotMigrated, match="keyplane db upgrade"):
        async with application.router.lifespan_context(application):
            pass


async def test_openapi_documents_palette_errors_not_422(client: httpx.AsyncClient) -> None:
    schema: dict[str, Any] = (await client.get("/openapi.json")).json()
    operations = {
        operation["operationId"]: operation
        for item in schema["paths"].values()
        for operation in item.values()
    }
    for name in ("v1ApiKeysList", "v1ApiKeysCreate", "v1ApiKeysUidState", "v1Authenticate"):
        assert name in operations
    for operation in operations.values():
        assert "422" not in operation["responses"]
        assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    assert set(schema["components"]["securitySchemes"]) == {"ApiKey", "Authorization"}


async def test_interactive_docs_are_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


async def test_favicon_is_served_cached_and_linked_from_every_page(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg ")
    assert "max-age=86400" in response.headers["cache-control"]
    assert "no-store" not in response.headers["cache-control"]
    # The console's pages name it, so that browsers need not guess.
    page = await client.get("/login")
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page.text
    linked = await client.get("/static/favicon.svg")
    assert (linked.status_code, linked.content) == (200, response.content)
    # Not part of the API.
    schema = (await client.get("/openapi.json")).json()
    assert not any("favicon" in path for path in schema["paths"])


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nothing-here", 404, "ResourceNotFound"),
        ("DELETE", "/v1/apiKeys", 405, "MethodNotAllowed"),
    ],
)
async def test_routing_errors_use_the_palette_body(
    client: httpx.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code
    assert set(body) == {"code", "message", "details", "ref"}
    assert body["ref"] == response.headers["x-request-id"]


async def test_health_needs_no_credentials(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_oversized_bodies_are_refused_with_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/authenticate",
        content=b'{"emailId": "' + b"a" * 100_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "PayloadTooLarge"


async def test_every_response_carries_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"


async def test_oversized_bodies_without_a_length_are_refused(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    response = await client.post(
        "/v1/auth/authenticate", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "PayloadTooLarge"
