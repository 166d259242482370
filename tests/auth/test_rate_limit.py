from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from keyplane.app import create_app
from keyplane.kit.keys import generate_api_key
from keyplane.runtime import Runtime
from tests.api_keys.helpers import make_api_key
from tests.conftest import make_settings
from tests.helpers import World, build_world


@pytest.fixture
async def strict(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, World]]:
    settings = make_settings(
        database_url, tmp_path, auth_failure_burst=3, auth_failure_rate_per_second=0.01
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://kp.test") as client:
            yield client, await build_world(client, runtime)


async def test_failed_keys_are_limited_but_valid_keys_are_not(
    strict: tuple[httpx.AsyncClient, World],
) -> None:
    client, world = strict
    good = await make_api_key(client, world.alice, "good")
    codes = [
        (await client.get("/v1/users/info", headers={"ApiKey": generate_api_key()})).status_code
        for _ in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]
    limited = await client.get("/v1/users/info", headers={"ApiKey": "kp_nonsense"})
    assert limited.status_code == 429
    assert limited.json()["code"] == "TooManyAuthFailures"
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await client.get("/v1/users/info", headers=good.headers)).status_code == 200


async def test_failed_logins_are_limited(strict: tuple[httpx.AsyncClient, World]) -> None:
    client, world = strict
    body = {"emailId": world.alice.email, "org": "acme", "password": "wrong password!!"}
    codes = [(await client.post("/v1/auth/authenticate", json=body)).status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
