"""Validation problems reach people in Keyplane's words: the field, then the rule."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.helpers import World

# Phrases of pydantic's and FastAPI's own vocabulary that must never reach a person.
LIBRARY_WORDING = re.compile(
    r"Input should|String should|List should|Value error|Field required|valid dictionary|"
    r"JSON decode error|unable to parse|extract fields|Extra inputs"
)


def _assert_ours(response: httpx.Response, expected: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert LIBRARY_WORDING.search(response.text) is None, body
    assert body["message"] == expected, body["message"]


async def test_the_issues_examples_read_as_keyplanes_sentences(
    client: httpx.AsyncClient, world: World
) -> None:
    headers = world.admin.headers
    cases = [
        (
            client.post(
                "/v1/apiKeys", json={"metadata": {"name": ""}, "spec": {}}, headers=headers
            ),
            "The request is invalid: metadata.name must not be empty.",
        ),
        (
            client.get("/v1/apiKeys", params={"limit": 0}, headers=headers),
            "The request is invalid: limit must be at least 1.",
        ),
        (
            client.post(
                "/v1/users",
                json={"metadata": {"name": "n"}, "spec": {"emailId": "not-an-email"}},
                headers=headers,
            ),
            "The request is invalid: spec.emailId is not a valid email address.",
        ),
        (
            client.post(
                "/v1/apiKeys",
                content=b'{"metadata": {"name": "x",}',
                headers={**headers, "Content-Type": "application/json"},
            ),
            "The request body is not valid JSON: expecting property name enclosed in double "
            "quotes at character 27.",
        ),
        (
            client.post(
                "/v1/apiKeys", content=b'{"metadata": {"name": "x"}, "spec": {}}', headers=headers
            ),
            "The request body must be a JSON object, sent with Content-Type: application/json.",
        ),
        (
            client.patch(
                f"/v1/tenants/{world.admin.tenant_uid}/resourceLimits",
                json={"resources": [{"kind": "apiKey", "limit": 0}]},
                headers=headers,
            ),
            "The request is invalid: resources[0].limit must be at least 1.",
        ),
        (
            client.get("/v1/audits", params={"startTime": "yesterday"}, headers=headers),
            "The request is invalid: startTime must be a date and time with a time zone, such "
            "as 2030-01-31T12:00:00Z.",
        ),
        (
            client.get("/v1/apiKeys", params={"isActive": "maybe"}, headers=headers),
            "The request is invalid: isActive must be true or false.",
        ),
        (
            client.patch(
                f"/v1/users/{world.bob.uid}",
                json=[{"op": "replace", "path": "/spec/firstName", "value": "x" * 65}],
                headers=headers,
            ),
            "The patch is invalid: /spec/firstName must be at most 64 characters long.",
        ),
        (
            client.post("/v1/auth/authenticate", json={"emailId": "a@example.com"}),
            "The request is invalid: password is required.",
        ),
    ]
    for request, expected in cases:
        _assert_ours(await request, expected)


async def test_malformed_json_names_no_offset_as_a_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/authenticate",
        content=b'{"emailId": ',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "MalformedJson"
    assert [field["field"] for field in body["details"]["fields"]] == ["(body)"]


@pytest.mark.parametrize(
    "body",
    [
        {"metadata": {"name": "x" * 200}, "spec": {}},
        {"metadata": {"name": 5}, "spec": {}},
        {"metadata": {"name": "x", "annotations": {"description": ["a"]}}, "spec": {}},
        {"metadata": {"name": "x"}, "spec": {"expiry": "2030-01-01T00:00:00"}},
        {"metadata": {"name": "x"}, "spec": {"expiry": 12}},
        {"metadata": {}, "spec": {}},
        {"metadata": "x"},
        [],
        "text",
    ],
)
async def test_no_library_wording_for_any_bad_key_body(
    client: httpx.AsyncClient, world: World, body: object
) -> None:
    response = await client.post("/v1/apiKeys", json=body, headers=world.alice.headers)
    assert response.status_code == 400, response.text
    assert LIBRARY_WORDING.search(response.json()["message"]) is None, response.text
    for field in (response.json()["details"] or {}).get("fields", []):
        assert LIBRARY_WORDING.search(field["problem"]) is None, field
