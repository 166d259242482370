"""One credential per request: two ApiKey headers, two Authorization headers, or one of
each are refused with 400 before any lookup, on every operation that takes a credential."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from keyplane.auth.throttling import FailureCounts
from keyplane.kit.keys import generate_api_key
from keyplane.runtime import Runtime
from tests.api_keys.helpers import make_api_key
from tests.helpers import World
from tests.test_credential_matrix import concrete_path, rest_operations, snapshot


async def _cases(client: httpx.AsyncClient, world: World) -> dict[str, list[tuple[str, str]]]:
    admin_key = (await make_api_key(client, world.admin, "admin")).value
    alice_key = (await make_api_key(client, world.alice, "alice")).value
    admin_token = world.admin.headers["Authorization"]
    return {
        "two keys of two users": [("ApiKey", alice_key), ("ApiKey", admin_key)],
        "the same key twice": [("ApiKey", admin_key), ("apikey", admin_key)],
        "a key and garbage": [("ApiKey", admin_key), ("ApiKey", "kp_garbage")],
        "two tokens": [("Authorization", admin_token), ("Authorization", f"Bearer {admin_token}")],
        "a key and a token": [("ApiKey", alice_key), ("Authorization", admin_token)],
        "a token and a key": [("Authorization", admin_token), ("ApiKey", alice_key)],
    }


async def test_every_operation_refuses_two_credentials(
    app: FastAPI, client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    target = await make_api_key(client, world.alice, "target")
    cases = await _cases(client, world)
    before = await snapshot(runtime)
    operations = list(rest_operations(app))
    assert len(operations) >= 19
    for name, headers in cases.items():
        for method, path in operations:
            response = await client.request(
                method,
                concrete_path(path, world, target.uid),
                headers=headers,
                json={} if method in {"POST", "PUT", "PATCH"} else None,
            )
            cell = f"{name}: {method} {path}"
            assert response.status_code == 400, f"{cell}: {response.text}"
            body = response.json()
            assert body["code"] == "AmbiguousCredentials", cell
            assert set(body) == {"code", "message", "details", "ref"}
            for _, value in headers:
                assert value not in response.text, f"{cell} echoes a credential"
    assert await snapshot(runtime) == before


async def test_refused_before_any_lookup(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    # Unknown keys are remembered by the negative cache once looked up: these never are,
    # and they spend nothing of the address's failure budget.
    first, second = generate_api_key(), generate_api_key()
    for _ in range(50):
        response = await client.get(
            "/v1/users/info", headers=[("ApiKey", first), ("ApiKey", second)]
        )
        assert response.status_code == 400
    assert runtime.key_cache.is_known_unknown(runtime.secret_hasher.hash(first)) is False
    assert runtime.key_cache.is_known_unknown(runtime.secret_hasher.hash(second)) is False
    assert not await FailureCounts(runtime, "203.0.113.7").exhausted()


@pytest.mark.parametrize("empty", ["", "   "])
async def test_an_empty_second_header_is_no_credential(
    client: httpx.AsyncClient, world: World, empty: str
) -> None:
    key = await make_api_key(client, world.alice, "one")
    response = await client.get(
        "/v1/users/info", headers=[("ApiKey", key.value), ("Authorization", empty)]
    )
    assert response.status_code == 200, response.text
