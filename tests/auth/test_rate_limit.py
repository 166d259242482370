from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from keyplane.kit.keys import generate_api_key, generate_session_token
from keyplane.runtime import Runtime
from tests.api_keys.helpers import key_body, make_api_key
from tests.auth.helpers import audit_events, instance
from tests.helpers import World, build_world


@pytest.fixture
async def strict_instance(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    limits = {"auth_failure_burst": 3, "auth_failure_rate_per_second": 0.01}
    async with instance(database_url, tmp_path, "198.51.100.9", **limits) as served:
        yield served


@pytest.fixture
async def strict(
    strict_instance: tuple[httpx.AsyncClient, Runtime],
) -> tuple[httpx.AsyncClient, World]:
    client, runtime = strict_instance
    return client, await build_world(client, runtime)


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


async def test_failed_session_tokens_are_limited_but_valid_ones_are_not(
    strict: tuple[httpx.AsyncClient, World],
) -> None:
    client, world = strict
    codes = [
        (
            await client.get("/v1/users/info", headers={"Authorization": generate_session_token()})
        ).status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    assert (await client.get("/v1/users/info", headers=world.alice.headers)).status_code == 200


async def test_a_forged_forwarded_for_does_not_buy_a_fresh_limit(
    strict: tuple[httpx.AsyncClient, World],
) -> None:
    client, _world = strict
    codes = [
        (
            await client.get(
                "/v1/users/info",
                headers={"ApiKey": generate_api_key(), "X-Forwarded-For": f"192.0.2.{index}"},
            )
        ).status_code
        for index in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]


async def test_behind_a_trusted_proxy_each_client_has_its_own_limit(
    database_url: str, tmp_path: Path
) -> None:
    settings = {"auth_failure_burst": 2, "auth_failure_rate_per_second": 0.01}
    async with instance(
        database_url, tmp_path, "10.0.0.5", trusted_proxies="10.0.0.0/8", **settings
    ) as (client, _runtime):

        async def attempt(forwarded_for: str) -> int:
            headers = {"ApiKey": generate_api_key(), "X-Forwarded-For": forwarded_for}
            return (await client.get("/v1/users/info", headers=headers)).status_code

        # The proxy appends the address it saw; whatever the client wrote is to its left.
        assert [await attempt(f"192.0.2.{n}, 203.0.113.5") for n in range(3)] == [401, 401, 429]
        assert await attempt("203.0.113.6") == 401
        # Through a second trusted hop, the client is still the rightmost untrusted one.
        assert await attempt("192.0.2.1, 203.0.113.5, 10.1.1.1") == 429
        assert await attempt("192.0.2.1, 203.0.113.6, 10.1.1.1") == 401


async def test_refusals_are_audited_once_per_address_and_interval(
    strict: tuple[httpx.AsyncClient, World],
    strict_instance: tuple[httpx.AsyncClient, Runtime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, world = strict
    key = await make_api_key(client, world.alice, "soon revoked")
    revoked = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.alice.headers
    )
    assert revoked.status_code == 204
    caplog.set_level(logging.WARNING, logger="keyplane.security")
    statuses = [
        (await client.get("/v1/users/info", headers=key.headers)).status_code for _ in range(6)
    ]
    # A writing request too: its transaction must not block the audit record.
    statuses.append(
        (await client.post("/v1/apiKeys", json=key_body("x"), headers=key.headers)).status_code
    )
    assert statuses == [401, 401, 401, 429, 429, 429, 429]

    runtime = strict_instance[1]
    records = await audit_events(runtime, "auth.rateLimited")
    assert len(records) == 1
    record = records[0]
    assert (record.tenant_uid, record.resource_uid) == (world.alice.tenant_uid, world.alice.uid)
    assert record.client_address == "198.51.100.9"
    assert record.outcome == "failure"
    assert key.uid in record.message
    assert key.value not in record.message
    warnings = [r for r in caplog.records if r.name == "keyplane.security"]
    assert len(warnings) == 1
    assert "198.51.100.9" in warnings[0].getMessage()

    listed = await client.get(
        "/v1/audits", params={"actionType": "activity"}, headers=world.admin.headers
    )
    assert "auth.rateLimited" in {
        item["metadata"]["annotations"]["action"] for item in listed.json()["items"]
    }


async def test_refusals_of_unknown_credentials_are_logged_not_audited(
    strict: tuple[httpx.AsyncClient, World],
    strict_instance: tuple[httpx.AsyncClient, Runtime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _world = strict
    caplog.set_level(logging.WARNING, logger="keyplane.security")
    for _ in range(6):
        await client.get("/v1/users/info", headers={"ApiKey": generate_api_key()})
    runtime = strict_instance[1]
    assert await audit_events(runtime, "auth.rateLimited") == []
    assert len([r for r in caplog.records if r.name == "keyplane.security"]) == 1


async def test_refused_logins_are_audited_in_the_accounts_tenant(
    strict: tuple[httpx.AsyncClient, World],
    strict_instance: tuple[httpx.AsyncClient, Runtime],
) -> None:
    client, world = strict
    body = {"emailId": world.bob.email, "org": "acme", "password": "wrong password!!"}
    for _ in range(5):
        await client.post("/v1/auth/authenticate", json=body)
    runtime = strict_instance[1]
    records = await audit_events(runtime, "auth.rateLimited")
    assert [(r.tenant_uid, r.resource_uid) for r in records] == [
        (world.bob.tenant_uid, world.bob.uid)
    ]
    assert "wrong password!!" not in records[0].message


async def test_console_session_cookies_are_limited_too(
    strict: tuple[httpx.AsyncClient, World],
) -> None:
    client, _world = strict
    responses = []
    for _ in range(4):
        client.cookies.set("keyplane_session", generate_session_token())
        responses.append(await client.get("/my/api-keys"))
    assert [response.status_code for response in responses] == [303, 303, 303, 429]
    # The page says when to try again, and so does the header, as the API's 429 does.
    assert int(responses[-1].headers["Retry-After"]) >= 1
    assert "text/html" in responses[-1].headers["content-type"]
