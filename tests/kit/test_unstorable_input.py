"""Text that the database cannot store (NUL, lone UTF-16 surrogates) is an input error at
the edge, wherever it arrives: path, query, headers, JSON or form. Never a 500, and the
submitted value never reaches a log.

The operations come from the app's own OpenAPI document and the console's router, so an
endpoint added later is covered without anyone remembering it.
"""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest
from fastapi import FastAPI

from tests.api_keys.helpers import make_api_key
from tests.helpers import World
from tests.test_credential_matrix import console_operations

MARKER = "zq9unstorable"
# Written as JSON escapes: json.dumps of a str holding them would write the same text.
UNSTORABLE_JSON = [
    ("NUL", "\\u0000"),
    ("lone high surrogate", "\\ud800"),
    ("lone low surrogate", "\\udc00"),
    ("reversed pair", "\\udc00\\ud800"),
]


def _assert_refused(response: httpx.Response, cell: str, source: str | None = None) -> None:
    assert response.status_code == 400, f"{cell}: {response.status_code} {response.text}"
    body = response.json()
    assert set(body) == {"code", "message", "details", "ref"}, cell
    assert body["code"] == "InvalidCharacters", f"{cell}: {body}"
    assert "cannot be stored" in body["message"], cell
    if source is not None:
        assert body["details"]["in"] == source, cell


def _operations(app: FastAPI) -> list[tuple[str, str, dict[str, object]]]:
    return [
        (method.upper(), path, operation)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
    ]


def _fill(path: str, world: World, key_uid: str, value: str = "") -> str:
    return re.sub(
        r"\{(\w+)\}",
        lambda match: (
            value or {"tenantUid": world.admin.tenant_uid, "uid": key_uid}.get(match.group(1), "x")
        ),
        path,
    )


def server_log(logs: pytest.LogCaptureFixture) -> str:
    """What the server logged (the test's own HTTP client logs its requests too)."""
    return "\n".join(
        record.getMessage()
        for record in logs.records
        if not record.name.startswith(("httpx", "httpcore"))
    )


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


async def test_every_rest_operation_refuses_unstorable_text_everywhere(
    app: FastAPI, client: httpx.AsyncClient, world: World, logs: pytest.LogCaptureFixture
) -> None:
    key = await make_api_key(client, world.admin, "target")
    operations = _operations(app)
    assert len(operations) >= 20
    for method, path, operation in operations:
        cell = f"{method} {path}"
        if "{" in path:
            response = await client.request(
                method, _fill(path, world, key.uid, f"{MARKER}%00"), headers=world.admin.headers
            )
            _assert_refused(response, f"{cell} (path)", "path")
        parameters = operation.get("parameters", [])
        assert isinstance(parameters, list)
        for parameter in parameters:
            if parameter["in"] != "query":
                continue
            response = await client.request(
                method,
                _fill(path, world, key.uid),
                params={parameter["name"]: f"{MARKER}\x00"},
                headers=world.admin.headers,
            )
            _assert_refused(response, f"{cell} (query {parameter['name']})", "query")
            assert response.json()["details"]["field"] == parameter["name"]
        if method in {"POST", "PUT", "PATCH"}:
            for label, escape in UNSTORABLE_JSON:
                for document in (
                    f'{{"{MARKER}": "a{escape}b"}}',
                    f'{{"metadata": {{"name": "{MARKER}{escape}"}}}}',
                    f'[{{"op": "replace", "path": "/spec/firstName", "value": "{escape}"}}]',
                    f'{{"a{escape}": 1}}',
                ):
                    response = await client.request(
                        method,
                        _fill(path, world, key.uid),
                        content=document.encode(),
                        headers={**world.admin.headers, "Content-Type": "application/json"},
                    )
                    _assert_refused(response, f"{cell} (JSON, {label})", "body")
    logged = server_log(logs)
    # Paths are in the access log, escaped; nothing else the requests carried is.
    assert MARKER not in logged.replace(f"{MARKER}\\x00", "")
    assert "\x00" not in logged


@pytest.mark.parametrize(("label", "escape"), UNSTORABLE_JSON)
async def test_login_with_unstorable_text_is_a_clear_400(
    client: httpx.AsyncClient, world: World, logs: pytest.LogCaptureFixture, label: str, escape: str
) -> None:
    for field in ("emailId", "org", "password"):
        document = {"emailId": world.alice.email, "org": "acme", "password": "x" * 12}
        body = json.dumps(document).replace(f'"{field}": "', f'"{field}": "{MARKER}{escape}', 1)
        response = await client.post(
            "/v1/auth/authenticate",
            content=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        _assert_refused(response, f"{field}: {label}", "body")
        assert response.json()["details"]["field"] == field
    assert MARKER not in server_log(logs)


async def test_unstorable_text_in_utf16_json_is_refused_too(client: httpx.AsyncClient) -> None:
    body = '{"emailId": "a\\u0000@example.com", "password": "x"}'
    for encoding in ("utf-16-le", "utf-16-be", "utf-32-le"):
        response = await client.post(
            "/v1/auth/authenticate",
            content=body.encode(encoding),
            headers={"Content-Type": "application/json"},
        )
        _assert_refused(response, encoding, "body")


async def test_surrogates_encoded_raw_in_utf8_are_refused(client: httpx.AsyncClient) -> None:
    # CESU-style bytes for U+D800: not valid UTF-8, but json.loads would decode them.
    body = b'{"emailId": "a@example.com", "password": "\xed\xa0\x80xxxxxxxxxx"}'
    response = await client.post(
        "/v1/auth/authenticate", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] in {"InvalidCharacters", "MalformedJson"}


async def test_a_proper_surrogate_pair_is_an_ordinary_character(
    client: httpx.AsyncClient, world: World
) -> None:
    # \ud83d\udd11 is U+1F511 KEY, written as JSON spells characters beyond the BMP.
    response = await client.post(
        "/v1/apiKeys",
        content=b'{"metadata": {"name": "\\ud83d\\udd11 deploy"}, "spec": {}}',
        headers={**world.alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    shown = await client.get(f"/v1/apiKeys/{response.json()['uid']}", headers=world.alice.headers)
    assert shown.json()["metadata"]["name"] == "\U0001f511 deploy"


async def test_a_nul_in_a_header_is_refused(client: httpx.AsyncClient, world: World) -> None:
    for name in ("ApiKey", "Authorization", "X-Forwarded-For", "User-Agent"):
        response = await client.get("/v1/users/info", headers={name: f"{MARKER}\x00"})
        _assert_refused(response, name, "header")
        assert response.json()["details"]["field"] == name.lower()


async def test_console_forms_refuse_unstorable_text(
    client: httpx.AsyncClient, world: World, logs: pytest.LogCaptureFixture
) -> None:
    operations = [(m, p) for m, p in console_operations() if m == "POST"]
    operations.append(("POST", "/login"))
    assert len(operations) >= 5
    for method, path in operations:
        for form in (
            f"email={MARKER}%00&password=x",
            f"name={MARKER}%ED%A0%80&csrf=x",
            f"{MARKER}%00=1",
        ):
            response = await client.request(
                method,
                _fill(path, world, "0" * 24),
                content=form.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            _assert_refused(response, f"{method} {path}: {form}", "form")
    assert MARKER not in server_log(logs)


async def test_the_access_log_escapes_what_a_path_carries(
    client: httpx.AsyncClient, logs: pytest.LogCaptureFixture
) -> None:
    forged = '/x%0D%0A127.0.0.1 "GET /v1/admin HTTP/1.1" 200 1.0ms ref=forged%E2%80%A8more'
    await client.get(forged)
    lines = [record.getMessage() for record in logs.records if record.name == "keyplane.access"]
    assert lines
    for line in lines:
        assert "\r" not in line
        assert "\n" not in line
        assert "\u2028" not in line
    assert any("\\x0d\\x0a127.0.0.1" in line for line in lines)
