"""List paging at its edges: offsets and continue tokens past anything a database holds
are refused as bad requests, not failed on (found by the fuzzer: a 500 from /v1/audits)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.helpers import World

LISTS = ["/v1/apiKeys", "/v1/users", "/v1/audits"]


@pytest.mark.parametrize("path", LISTS)
async def test_an_offset_beyond_any_database_is_refused(
    client: httpx.AsyncClient, world: World, path: str
) -> None:
    for offset in (2**63, 17209776276648156026560839680):
        response = await client.get(path, params={"offset": offset}, headers=world.admin.headers)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "InvalidRequest"
    largest = await client.get(path, params={"offset": 2**31 - 1}, headers=world.admin.headers)
    assert largest.status_code == 200, largest.text
    assert largest.json()["items"] == []


@pytest.mark.parametrize("path", LISTS)
async def test_a_forged_continue_token_with_a_huge_offset_is_refused(
    client: httpx.AsyncClient, world: World, path: str
) -> None:
    token = base64.urlsafe_b64encode(json.dumps({"o": 2**64}).encode()).decode().rstrip("=")
    response = await client.get(path, params={"continue": token}, headers=world.admin.headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "InvalidContinueToken"
