"""POST /v1/apiKeys/leaks: anyone reports key values seen in public; a real key is revoked
(or flagged, by the tenant's policy), its owner and the tenant admins are told, and the
answer never says which values were keys."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from keyplane.kit.db import create_engine, transaction
from keyplane.kit.keys import generate_api_key
from keyplane.models import AuditEvent, KeyLeak, Notification, WebhookEvent
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.api_keys.helpers import CreatedKey, make_api_key
from tests.conftest import make_settings
from tests.helpers import World
from tests.live import seed, server_process
from tests.users.helpers import Actor, login

LEAKS = "/v1/apiKeys/leaks"
URL = "https://gist.github.com/someone/0123456789abcdef"
PROPAGATION_BOUND_SECONDS = 1.0


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, leak_report_burst=6, leak_report_max_items=3)


def report(*values: str, url: str = URL, source: str = "github-gist") -> dict[str, Any]:
    return {"leaks": [{"value": value, "url": url, "source": source} for value in values]}


async def webhook_endpoint(client: httpx.AsyncClient, admin: Actor) -> None:
    response = await client.post(
        "/v1/webhooks/endpoints",
        json={"url": "https://hooks.example.com/in", "events": ["apiKey.leaked", "apiKey.revoked"]},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text


async def stored(runtime: Runtime) -> dict[str, list[Any]]:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        return {
            "notifications": list((await session.scalars(select(Notification))).all()),
            "audit": list((await session.scalars(select(AuditEvent))).all()),
            "webhooks": list((await session.scalars(select(WebhookEvent))).all()),
            "leaks": list((await session.scalars(select(KeyLeak))).all()),
        }


def everything_stored(rows: dict[str, list[Any]]) -> str:
    """Every column of every row, as text: where a reported value must never be."""
    return "\n".join(
        repr({column: getattr(row, column) for column in row.__table__.columns.keys()})  # noqa: SIM118
        for table in rows.values()
        for row in table
    )


async def works(client: httpx.AsyncClient, key: CreatedKey) -> int:
    return (await client.get("/v1/users/info", headers=key.headers)).status_code


async def test_a_reported_key_is_revoked_and_its_owner_and_admins_are_told(
    client: httpx.AsyncClient,
    runtime: Runtime,
    world: World,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await webhook_endpoint(client, world.admin)
    key = await make_api_key(client, world.alice, "ci")
    assert await works(client, key) == 200
    fake = generate_api_key()

    response = await client.post(LEAKS, json=report(key.value, fake, "not-a-key"))
    assert response.status_code == 202, response.text
    assert response.json() == {"received": 3}

    refused = await client.get("/v1/users/info", headers=key.headers)
    assert refused.status_code == 401
    assert refused.json()["code"] == "ApiKeyRevoked"
    read = await client.get(f"/v1/apiKeys/{key.uid}", headers=world.alice.headers)
    status = read.json()["status"]
    assert status["isActive"] is False
    assert status["leakedAt"] is not None
    assert [(item["reporter"], item["url"], item["source"]) for item in status["leaks"]] == [
        ("report", URL, "github-gist")
    ]
    listed = await client.get("/v1/apiKeys", headers=world.admin.headers)
    (item,) = [row for row in listed.json()["items"] if row["metadata"]["uid"] == key.uid]
    assert item["status"]["leakedAt"] == status["leakedAt"]

    rows = await stored(runtime)
    mails = {row.email: row for row in rows["notifications"] if row.key_uid == key.uid}
    assert set(mails) == {"alice@acme.example", "admin@acme.example"}
    hint = "kp_…" + key.value[-4:]
    for mail in mails.values():
        assert mail.kind == "apiKey.leaked"
        assert hint in mail.body
        assert URL in mail.body
        assert "revoked it" in mail.body
    assert mails["alice@acme.example"].link_path == f"/my/api-keys/{key.uid}"
    assert mails["admin@acme.example"].link_path == f"/tenant/settings/api-keys/{key.uid}"
    (audited,) = [row for row in rows["audit"] if row.action == "apiKey.leakReported"]
    assert audited.resource_uid == key.uid
    assert URL in audited.message
    assert audited.changes is not None
    assert audited.changes["sighting"]["new"]["source"] == "github-gist"
    revoked = [row for row in rows["audit"] if row.action == "apiKey.revoke"]
    assert [row.resource_uid for row in revoked] == [key.uid]
    events = {row.type: row.payload for row in rows["webhooks"]}
    assert events["apiKey.leaked"]["data"]["action"] == "revoked"
    assert events["apiKey.leaked"]["data"]["leak"]["url"] == URL
    assert events["apiKey.revoked"]["data"]["reason"] == "leaked"

    # Reported again: a sighting (a new place), no second mail, event or revoke.
    again = await client.post(LEAKS, json=report(key.value, url="https://example.com/paste/2"))
    assert again.status_code == 202
    same_place = await client.post(LEAKS, json=report(key.value))
    assert same_place.status_code == 202
    later = await stored(runtime)
    assert len(later["notifications"]) == len(rows["notifications"])
    assert len(later["webhooks"]) == len(rows["webhooks"])
    assert sorted(row.url for row in later["leaks"]) == sorted([URL, "https://example.com/paste/2"])

    # The values are nowhere: responses, logs, audit, mails, webhook payloads.
    text = everything_stored(later)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for value in (key.value, fake):
        assert value not in text
        assert value not in logged
        for answer in (response, again, same_place, read, listed):
            assert value not in answer.text


async def test_the_answer_is_the_same_for_real_fake_and_malformed_values(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "ci")
    answers = []
    for value in (key.value, generate_api_key(), "kp_short", ""):
        response = await client.post(LEAKS, json=report(value))
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in {"x-request-id", "date", "server-timing"}
        }
        answers.append((response.status_code, response.content, headers))
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0][0] == 202
    assert await works(client, key) == 401


async def test_policy_flag_keeps_the_key_working_but_flagged(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    policy = f"/v1/tenants/{world.admin.tenant_uid}/apiKeyPolicy"
    changed = await client.put(policy, json={"leakAction": "flag"}, headers=world.admin.headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["leakAction"] == "flag"
    assert (await client.get(policy, headers=world.alice.headers)).json()["leakAction"] == "flag"
    key = await make_api_key(client, world.alice, "ci")

    assert (await client.post(LEAKS, json=report(key.value))).status_code == 202
    assert await works(client, key) == 200
    status = (await client.get(f"/v1/apiKeys/{key.uid}", headers=world.alice.headers)).json()[
        "status"
    ]
    assert status["isActive"] is True
    assert status["leakedAt"] is not None
    rows = await stored(runtime)
    mails = [row for row in rows["notifications"] if row.key_uid == key.uid]
    assert {mail.email for mail in mails} == {"alice@acme.example", "admin@acme.example"}
    assert all("It still works" in mail.body for mail in mails)
    (policy_change,) = [row for row in rows["audit"] if row.action == "tenantPolicy.update"]
    assert policy_change.changes == {"leakAction": {"old": "revoke", "new": "flag"}}

    # A tenant admin who has seen the report keeps it in use and clears the flag.
    plain = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": True}, headers=world.admin.headers
    )
    assert plain.status_code == 204
    confirmed = await client.patch(
        f"/v1/apiKeys/{key.uid}?confirmLeaked=true",
        json={"isActive": True},
        headers=world.admin.headers,
    )
    assert confirmed.status_code == 204
    status = (await client.get(f"/v1/apiKeys/{key.uid}", headers=world.alice.headers)).json()[
        "status"
    ]
    assert status["leakedAt"] is None
    assert len(status["leaks"]) == 1


async def test_reactivating_a_leaked_key_takes_a_tenant_admin_who_confirms(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    key = await make_api_key(client, world.alice, "ci")
    assert (await client.post(LEAKS, json=report(key.value))).status_code == 202
    path = f"/v1/apiKeys/{key.uid}"
    body = {"isActive": True}

    for method, target, actor in (
        ("PATCH", path, world.alice),
        ("PUT", f"{path}/state", world.alice),
        ("PATCH", f"{path}?confirmLeaked=true", world.alice),
        ("PATCH", path, world.admin),
        ("PUT", f"{path}/state", world.admin),
    ):
        refused = await client.request(method, target, json=body, headers=actor.headers)
        assert refused.status_code == 409, f"{method} {target}: {refused.text}"
        assert refused.json()["code"] == "ApiKeyLeaked"
        assert "reported leaked" in refused.json()["message"]
        assert await works(client, key) == 401
    assert "confirmLeaked=true" in refused.json()["message"]

    done = await client.put(
        f"{path}/state?confirmLeaked=true", json=body, headers=world.admin.headers
    )
    assert done.status_code == 204, done.text
    assert await works(client, key) == 200
    status = (await client.get(path, headers=world.alice.headers)).json()["status"]
    assert status["isActive"] is True
    assert status["leakedAt"] is None
    assert len(status["leaks"]) == 1  # the history stays
    rows = await stored(runtime)
    (reactivated,) = [row for row in rows["audit"] if row.action == "apiKey.reactivate"]
    assert "reported leaked" in reactivated.message
    # Revoking (anyone) and re-activating a key never reported leaked are unchanged.
    assert (
        await client.patch(path, json={"isActive": False}, headers=world.alice.headers)
    ).status_code == 204
    assert (await client.patch(path, json=body, headers=world.alice.headers)).status_code == 204
    # A new report acts again.
    assert (await client.post(LEAKS, json=report(key.value))).status_code == 202
    assert await works(client, key) == 401


async def test_reports_are_rate_limited_per_address(client: httpx.AsyncClient) -> None:
    answers = [
        (await client.post(LEAKS, json=report(generate_api_key()))).status_code for _ in range(6)
    ]
    assert answers == [202] * 6
    refused = await client.post(LEAKS, json=report(generate_api_key()))
    assert refused.status_code == 429
    assert refused.json()["code"] == "TooManyLeakReports"
    assert int(refused.headers["Retry-After"]) >= 1
    # Invalid reports count too: they are refused before their body is read.
    assert (await client.post(LEAKS, content=b"nonsense")).status_code == 429


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (report(*(generate_api_key() for _ in range(4))), "leaks"),
        (report(generate_api_key(), url="https://x.example/" + "a" * 2048), "leaks[0].url"),
        (report(generate_api_key(), source="s" * 129), "leaks[0].source"),
        (report(generate_api_key(), url="https://x.example/\nBcc: x"), "leaks[0].url"),
        ({"leaks": [{"url": URL}]}, "leaks[0].value"),
        ({}, "leaks"),
    ],
)
async def test_bad_reports_are_refused_with_palette_errors(
    client: httpx.AsyncClient, world: World, body: dict[str, Any], field: str
) -> None:
    key = await make_api_key(client, world.alice, "ci")
    if body.get("leaks") and "value" in body["leaks"][0]:
        body["leaks"][0]["value"] = key.value
    response = await client.post(LEAKS, json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert set(error) == {"code", "message", "details", "ref"}
    assert field in response.text
    assert key.value not in response.text
    assert await works(client, key) == 200


# --- two instances ------------------------------------------------------------------------


@pytest.fixture
async def two_servers(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, World]]:
    settings = make_settings(
        database_url, tmp_path, key_cache_max_age_seconds=60.0, auth_failure_burst=10_000
    )
    engine = create_engine(settings.resolved_database_url)
    try:
        world = await seed(Runtime.build(settings, engine))
    finally:
        await engine.dispose()
    async with (
        server_process(settings) as url_a,
        server_process(settings) as url_b,
        httpx.AsyncClient(base_url=url_a) as a,
        httpx.AsyncClient(base_url=url_b) as b,
    ):
        await login(a, world.alice)
        yield a, b, world


async def test_a_reported_key_stops_working_on_every_instance(
    two_servers: tuple[httpx.AsyncClient, httpx.AsyncClient, World],
) -> None:
    a, b, world = two_servers
    key = await make_api_key(a, world.alice, "ci")
    for _ in range(3):
        assert await works(b, key) == 200  # cached on B for a minute
    assert (await a.post(LEAKS, json=report(key.value))).status_code == 202
    started = time.monotonic()
    while await works(b, key) != 401:
        assert time.monotonic() - started < PROPAGATION_BOUND_SECONDS
        await asyncio.sleep(0.01)
    for _ in range(10):
        assert await works(b, key) == 401


async def test_a_report_is_bounded_in_size(client: httpx.AsyncClient, settings: Settings) -> None:
    padding = "x" * settings.max_request_body_bytes
    response = await client.post(LEAKS, json={"leaks": [], "padding": padding})
    assert response.status_code == 413
    assert response.json()["code"] == "PayloadTooLarge"
