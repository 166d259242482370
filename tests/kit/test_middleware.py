"""What every request goes through: JSON depth, security headers, the client address."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from keyplane.console.templating import CONTENT_SECURITY_POLICY
from keyplane.kit.middleware import json_nesting_exceeds
from tests.helpers import World

LOGIN = "/v1/auth/authenticate"


def _nested(depth: int) -> bytes:
    return b'{"emailId": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b', "password": "x"}'


def _assert_palette_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "ref"}
    assert body["code"] == code
    assert body["ref"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("body", "deeper"),
    [
        (b"{}", False),
        (b"[" * 32 + b"]" * 32, False),
        (b"[" * 33 + b"]" * 33, True),
        (b'{"a": "' + b"[" * 100 + b'"}', False),
        (b'{"a": "\\"' + b"{" * 100 + b'"}', False),
        (b'{"a": [{"b": [{"c": "]]]]"}]}]}', False),
        (b"[" * 40, True),
        (b"not json at all", False),
    ],
)
def test_nesting_is_measured_outside_strings(body: bytes, deeper: bool) -> None:
    assert json_nesting_exceeds(body, 32) is deeper


async def test_deep_json_is_refused_before_parsing(client: httpx.AsyncClient) -> None:
    response = await client.post(
        LOGIN, content=_nested(33), headers={"Content-Type": "application/json"}
    )
    _assert_palette_error(response, 400, "JsonTooDeep")
    assert "32 levels" in response.json()["message"]


async def test_json_at_the_limit_reaches_validation(client: httpx.AsyncClient) -> None:
    response = await client.post(
        LOGIN, content=_nested(32), headers={"Content-Type": "application/json"}
    )
    _assert_palette_error(response, 400, "InvalidRequest")


async def test_very_deep_json_is_a_clear_400_not_a_crash(client: httpx.AsyncClient) -> None:
    response = await client.post(LOGIN, content=b"[" * 30_000 + b"]" * 30_000)
    _assert_palette_error(response, 400, "JsonTooDeep")


async def test_every_json_media_type_is_checked(client: httpx.AsyncClient, world: World) -> None:
    response = await client.patch(
        f"/v1/users/{world.bob.uid}",
        content=b"[" * 50 + b"]" * 50,
        headers={**world.admin.headers, "Content-Type": "application/json-patch+json"},
    )
    _assert_palette_error(response, 400, "JsonTooDeep")


async def test_deep_json_without_a_length_is_refused(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b"[["

    response = await client.post(
        LOGIN, content=chunks(), headers={"Content-Type": "application/json"}
    )
    _assert_palette_error(response, 400, "JsonTooDeep")


async def test_bodies_still_reach_the_app_whole(client: httpx.AsyncClient, world: World) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"emailId": "' + world.alice.email.encode()
        yield b'", "org": "acme", "password": "' + world.alice.password.encode() + b'"}'

    response = await client.post(
        LOGIN, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text


def _assert_common_headers(response: httpx.Response) -> str:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    policies = response.headers.get_list("content-security-policy")
    assert len(policies) == 1
    assert "frame-ancestors 'none'" in policies[0]
    return policies[0]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/users/info"),
        ("GET", "/healthz"),
        ("GET", "/openapi.json"),
        ("GET", "/v1/nothing-here"),
        ("GET", "/v1/apiKeys?apikey=kp_x"),
        ("GET", "/"),
        ("GET", "/my/api-keys"),
    ],
)
async def test_api_responses_and_redirects_load_nothing_and_are_never_framed(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert _assert_common_headers(response) == "default-src 'none'; frame-ancestors 'none'"


async def test_console_pages_carry_their_policy(client: httpx.AsyncClient, world: World) -> None:
    login_page = await client.get("/login")
    assert login_page.status_code == 200
    assert _assert_common_headers(login_page) == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY

    client.cookies.set("keyplane_session", world.alice.headers["Authorization"])
    page = await client.get("/my/api-keys")
    assert page.status_code == 200
    assert _assert_common_headers(page) == CONTENT_SECURITY_POLICY
    assert page.headers["cache-control"] == "no-store"


async def test_the_docs_allow_their_own_inline_script_and_no_other(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/docs")
    policy = _assert_common_headers(response)
    scripts = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    assert scripts
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "script-src 'self' 'sha256-" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]


def _never_stored(response: httpx.Response, cell: str) -> None:
    assert response.headers.get("cache-control") == "no-store", cell
    assert response.headers.get("pragma") == "no-cache", cell


async def test_responses_that_carry_a_secret_are_never_cached(
    client: httpx.AsyncClient, world: World
) -> None:
    created = await client.post(
        "/v1/apiKeys", json={"metadata": {"name": "ci"}, "spec": {}}, headers=world.alice.headers
    )
    assert created.status_code == 201
    _never_stored(created, "key creation")
    login = await client.post(
        LOGIN, json={"emailId": world.bob.email, "org": "acme", "password": world.bob.password}
    )
    assert login.status_code == 200
    _never_stored(login, "login")
    token = login.json()["Authorization"]
    refreshed = await client.get(f"/v1/auth/refresh/{token}")
    assert refreshed.status_code == 200
    _never_stored(refreshed, "token refresh")
    # And everything else the API or the console answers: lists, errors, pages.
    for path in ("/v1/apiKeys", "/v1/users/info", "/v1/nothing", "/login", "/"):
        _never_stored(await client.get(path, headers=world.alice.headers), path)


async def test_static_assets_may_be_cached(client: httpx.AsyncClient) -> None:
    response = await client.get("/static/console.css")
    assert response.status_code == 200
    assert "no-store" not in response.headers.get("cache-control", "")


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16", "utf-32-le", "utf-32"])
async def test_depth_is_measured_on_the_decoded_text(
    client: httpx.AsyncClient, encoding: str
) -> None:
    # Bracket bytes of UTF-16 are not the ASCII bytes a byte scan looks for; the parser
    # decodes them all the same.
    deep = ("[" * 40 + "]" * 40).encode(encoding)
    response = await client.post(LOGIN, content=deep, headers={"Content-Type": "application/json"})
    _assert_palette_error(response, 400, "JsonTooDeep")
    shallow = '{"emailId": "a@example.com", "password": "x"}'.encode(encoding)
    response = await client.post(
        LOGIN, content=shallow, headers={"Content-Type": "application/json"}
    )
    assert response.json()["code"] != "JsonTooDeep"


async def test_a_body_in_no_json_encoding_is_malformed(client: httpx.AsyncClient) -> None:
    response = await client.post(
        LOGIN, content=b'{"emailId": "\xff\xfe\xfa"}', headers={"Content-Type": "application/json"}
    )
    _assert_palette_error(response, 400, "MalformedJson")


async def test_request_references_are_unique(client: httpx.AsyncClient) -> None:
    refs = [(await client.get("/healthz")).headers["x-request-id"] for _ in range(200)]
    assert len(set(refs)) == len(refs)
    assert all(re.fullmatch(r"[0-9a-f]{16}", ref) for ref in refs)
