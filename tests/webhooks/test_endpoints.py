"""The webhook endpoints API: tenant admins only, validated, audited, tenant-scoped."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.conftest import make_settings
from tests.helpers import World
from tests.webhooks.helpers import make_endpoint

URL = "https://hooks.example.com/keyplane"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


async def test_create_read_update_delete(client: httpx.AsyncClient, world: World) -> None:
    headers = world.admin.headers
    created = await make_endpoint(
        client, world.admin, URL, ["user.created", "apiKey.created"], description="CI"
    )
    uid = created["uid"]
    assert created["secret"].startswith("whsec_")
    # Events in the catalogue's order.
    assert created["events"] == ["apiKey.created", "user.created"]
    assert created["enabled"] is True
    assert created["description"] == "CI"
    assert created["createdByUid"] == world.admin.uid

    read = (await client.get(f"/v1/webhooks/endpoints/{uid}", headers=headers)).json()
    assert "secret" not in read
    assert read["url"] == URL
    listed = (await client.get("/v1/webhooks/endpoints", headers=headers)).json()
    assert [item["uid"] for item in listed["items"]] == [uid]
    assert "secret" not in listed["items"][0]

    body = {"url": URL + "/v2", "events": ["apiKey.revoked"], "enabled": False}
    response = await client.put(f"/v1/webhooks/endpoints/{uid}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["url"], updated["events"], updated["enabled"]) == (
        URL + "/v2",
        ["apiKey.revoked"],
        False,
    )
    assert updated["description"] == ""

    rotated = await client.post(f"/v1/webhooks/endpoints/{uid}/rotateSecret", headers=headers)
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != created["secret"]

    audit = (await client.get("/v1/audits", headers=headers)).json()["items"]
    for action in ("webhookEndpoint.create", "webhookEndpoint.update", "rotateSecret"):
        assert action in str(audit)
    # Never a secret in the audit log.
    assert created["secret"] not in str(audit)
    assert rotated.json()["secret"] not in str(audit)

    response = await client.delete(f"/v1/webhooks/endpoints/{uid}", headers=headers)
    assert response.status_code == 204
    assert (await client.get(f"/v1/webhooks/endpoints/{uid}", headers=headers)).status_code == 404
    audit = (await client.get("/v1/audits", headers=headers)).json()
    assert "webhookEndpoint.delete" in str(audit)


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        (
            {"url": URL, "events": ["apiKey.created", "apiKey.exploded", "key.gone"]},
            "UnknownWebhookEvent",
            "apiKey.exploded, key.gone",
        ),
        ({"url": URL, "events": []}, "UnknownWebhookEvent", "at least one"),
        (
            {"url": "ftp://example.com/", "events": ["user.created"]},
            "InvalidWebhookUrl",
            "https://",
        ),
        (
            {"url": "http://169.254.169.254/", "events": ["user.created"]},
            "InvalidWebhookUrl",
            "private",
        ),
        (
            {"url": "http://localhost:8080/", "events": ["user.created"]},
            "InvalidWebhookUrl",
            "this machine",
        ),
        (
            {"url": "https://u:p@example.com/", "events": ["user.created"]},
            "InvalidWebhookUrl",
            "password",
        ),
    ],
)
async def test_invalid_bodies_are_refused_with_the_reason(
    client: httpx.AsyncClient, world: World, body: dict[str, object], code: str, fragment: str
) -> None:
    response = await client.post("/v1/webhooks/endpoints", json=body, headers=world.admin.headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert fragment in response.json()["message"]


async def test_only_the_tenant_s_admins_see_its_endpoints(
    client: httpx.AsyncClient, world: World
) -> None:
    created = await make_endpoint(client, world.admin, URL)
    uid = created["uid"]
    other = world.other_admin.headers
    body = {"url": URL, "events": ["user.created"]}
    for method, path, json in [
        ("GET", f"/v1/webhooks/endpoints/{uid}", None),
        ("PUT", f"/v1/webhooks/endpoints/{uid}", body),
        ("DELETE", f"/v1/webhooks/endpoints/{uid}", None),
        ("POST", f"/v1/webhooks/endpoints/{uid}/rotateSecret", None),
        ("GET", f"/v1/webhooks/endpoints/{uid}/deliveries", None),
    ]:
        response = await client.request(method, path, json=json, headers=other)
        assert response.status_code == 404, (method, path, response.text)
    listed = await client.get("/v1/webhooks/endpoints", headers=other)
    assert listed.json()["items"] == []

    for actor in (world.alice, world.bob):
        response = await client.get("/v1/webhooks/endpoints", headers=actor.headers)
        assert response.status_code == 403
        response = await client.post("/v1/webhooks/endpoints", json=body, headers=actor.headers)
        assert response.status_code == 403


async def test_a_scoped_key_needs_the_webhook_scopes(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    response = await client.post(
        "/v1/apiKeys",
        json={"metadata": {"name": "reader"}, "spec": {"scopes": ["webhooks:read"]}},
        headers=world.admin.headers,
    )
    assert response.status_code == 201, response.text
    key = {"ApiKey": response.json()["apiKey"]}
    assert (await client.get("/v1/webhooks/endpoints", headers=key)).status_code == 200
    refused = await client.post(
        "/v1/webhooks/endpoints", json={"url": URL, "events": ["user.created"]}, headers=key
    )
    assert refused.status_code == 403
    assert refused.json()["details"]["scope"] == "webhooks:write"
