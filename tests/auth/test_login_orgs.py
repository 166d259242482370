"""Logging in without an org, when the same email exists in several organizations."""

from __future__ import annotations

import httpx

from keyplane.runtime import Runtime
from tests.tenants.helpers import make_tenant
from tests.users.helpers import make_user


async def test_only_the_password_tells_accounts_apart(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    one, two = await make_tenant(runtime, "one"), await make_tenant(runtime, "two")
    await make_user(runtime, one, "sam@example.com", password="first password!!")
    second = await make_user(runtime, two, "sam@example.com", password="second password!")

    wrong = await client.post(
        "/v1/auth/authenticate", json={"emailId": "sam@example.com", "password": "nope nope nope"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "InvalidCredentials"

    right = await client.post(
        "/v1/auth/authenticate",
        json={"emailId": "sam@example.com", "password": "second password!"},
    )
    assert right.status_code == 200
    info = await client.get(
        "/v1/users/info", headers={"Authorization": right.json()["Authorization"]}
    )
    assert info.json()["userUid"] == second.uid


async def test_failed_refreshes_count_as_failed_authentication(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    statuses = [
        (await client.get(f"/v1/auth/refresh/kps_{index}")).status_code for index in range(25)
    ]
    assert statuses[0] == 401
    assert statuses[-1] == 429
