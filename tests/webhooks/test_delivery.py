"""Events reach a real receiver on loopback, signed to the Standard Webhooks spec (verified
by the ``standardwebhooks`` library unchanged), at least once, retried, and at most once
per delivery when several instances run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from keyplane.app import create_app
from keyplane.kit.db import transaction
from keyplane.kit.time import utcnow
from keyplane.models import AuditEvent, Notification, WebhookDelivery, WebhookEndpoint
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from keyplane.webhooks import worker
from keyplane.webhooks.worker import deliver_due
from tests.api_keys.helpers import make_api_key
from tests.conftest import make_settings
from tests.helpers import World, build_world
from tests.webhooks.helpers import deliveries, get_endpoint_row, make_due, make_endpoint
from tests.webhooks.receiver import Answer, Received, receiving


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, webhook_allow_private_targets=True)


def verified(secret: str, request: Received) -> dict[str, object]:
    payload: dict[str, object] = Webhook(secret).verify(request.body, request.headers)
    return payload


async def test_key_events_arrive_signed_and_without_the_key_value(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    async with receiving() as receiver:
        endpoint = await make_endpoint(client, world.admin, receiver.url)
        assert endpoint["secret"].startswith("whsec_")
        key = await make_api_key(client, world.alice, "ci")
        response = await client.patch(
            f"/v1/apiKeys/{key.uid}",
            json={"isActive": False},
            headers=world.admin.headers,
        )
        assert response.status_code == 204, response.text
        await deliver_due(runtime)

        assert len(receiver.received) == 2
        # Sent concurrently: in no particular order (receivers order by "timestamp").
        by_type = {
            str(body["type"]): body
            for body in (verified(endpoint["secret"], request) for request in receiver.received)
        }
        created, revoked = by_type["apiKey.created"], by_type["apiKey.revoked"]
        assert created["type"] == "apiKey.created"
        assert revoked["type"] == "apiKey.revoked"
        data = created["data"]
        assert isinstance(data, dict)
        assert data["apiKey"]["uid"] == key.uid
        assert data["tenant"]["name"] == "acme"
        assert data["actor"]["email"] == "alice@acme.example"
        assert revoked["data"]["actor"]["email"] == "admin@acme.example"  # type: ignore[index]
        for request in receiver.received:
            assert key.value not in request.body.decode()
            assert request.headers["content-type"] == "application/json"
        # webhook-id is the event's uid: distinct per event.
        assert len({request.headers["webhook-id"] for request in receiver.received}) == 2
        rows = await deliveries(runtime)
        assert [row.status for row in rows] == ["succeeded", "succeeded"]
        assert all(row.response_status == 200 and row.attempts == 1 for row in rows)
        assert all(row.duration_ms is not None for row in rows)

        # Another tenant's endpoint sees none of this; an unwanted type is not enqueued.
        await deliver_due(runtime)
        assert len(receiver.received) == 2


async def test_retries_back_off_after_errors_then_succeed(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    answers = iter([500, 503, 200])

    async with receiving(lambda request: Answer(status=next(answers))) as receiver:
        endpoint = await make_endpoint(client, world.admin, receiver.url)
        await make_api_key(client, world.alice, "ci")
        await deliver_due(runtime)
        (first,) = await deliveries(runtime)
        assert (first.status, first.attempts, first.response_status) == ("pending", 1, 500)
        assert first.error is not None
        assert "HTTP 500" in first.error
        assert first.last_attempt_at is not None
        wait = (first.next_attempt_at - first.last_attempt_at).total_seconds()
        assert 4.4 <= wait <= 5.6
        # Not due yet: nothing is sent.
        await deliver_due(runtime)
        assert len(receiver.received) == 1
        row = await get_endpoint_row(runtime, endpoint["uid"])
        assert row.failing_since is not None

        await make_due(runtime)
        await deliver_due(runtime)
        (second,) = await deliveries(runtime)
        assert (second.status, second.attempts, second.response_status) == ("pending", 2, 503)
        assert second.last_attempt_at is not None
        wait = (second.next_attempt_at - second.last_attempt_at).total_seconds()
        assert 26 <= wait <= 34

        await make_due(runtime)
        await deliver_due(runtime)
        (third,) = await deliveries(runtime)
        assert (third.status, third.attempts, third.response_status) == ("succeeded", 3, 200)
        assert third.error is None
        assert third.finished_at is not None
        # The same webhook-id and body on every attempt; each verifies.
        assert len({request.headers["webhook-id"] for request in receiver.received}) == 1
        assert len({request.body for request in receiver.received}) == 1
        for request in receiver.received:
            verified(endpoint["secret"], request)
        row = await get_endpoint_row(runtime, endpoint["uid"])
        assert row.failing_since is None


async def test_a_delivery_fails_after_the_retry_window(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        database_url, tmp_path, webhook_allow_private_targets=True, webhook_retry_seconds=60
    )
    async with running_app(settings) as (app, client):
        runtime: Runtime = app.state.runtime
        world = await build_world(client, runtime)
        async with receiving(lambda request: Answer(status=500)) as receiver:
            await make_endpoint(client, world.admin, receiver.url)
            await make_api_key(client, world.alice, "ci")
            await deliver_due(runtime)
            await make_due(runtime)
            await deliver_due(runtime)  # 2nd failure: the next would come after 30 s more
            (row,) = await deliveries(runtime)
            assert (row.status, row.attempts) == ("pending", 2)
            # Time passes: the event is now 50 s old, the next retry (30 s) past its minute.
            async with transaction(runtime.sessionmaker) as session:
                await session.execute(
                    update(WebhookDelivery).values(
                        created_at=utcnow() - timedelta(seconds=50), next_attempt_at=utcnow()
                    )
                )
            await deliver_due(runtime)
            (row,) = await deliveries(runtime)
            assert (row.status, row.attempts) == ("failed", 3)
            assert row.finished_at is not None
            assert row.response_status == 500
            await make_due(runtime)
            await deliver_due(runtime)
            assert len(receiver.received) == 3


async def test_an_endpoint_failing_too_long_is_disabled_and_its_creator_told(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    async with receiving(lambda request: Answer(status=500)) as receiver:
        endpoint = await make_endpoint(client, world.admin, receiver.url)
        await make_api_key(client, world.alice, "one")
        await deliver_due(runtime)
        row = await get_endpoint_row(runtime, endpoint["uid"])
        assert row.enabled
        assert row.failing_since is not None
        # Failing for four days (the limit is three).
        async with transaction(runtime.sessionmaker) as session:
            await session.execute(
                update(WebhookEndpoint).values(failing_since=utcnow() - timedelta(days=4))
            )
        await make_api_key(client, world.alice, "two")
        await deliver_due(runtime)
        row = await get_endpoint_row(runtime, endpoint["uid"])
        assert not row.enabled
        assert row.disabled_reason is not None
        assert "HTTP 500" in row.disabled_reason

        async with transaction(runtime.sessionmaker, writes=False) as session:
            notices = (
                await session.scalars(
                    select(Notification).where(Notification.kind == "webhookDisabled")
                )
            ).all()
            audits = (
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.action == "webhookEndpoint.disable")
                )
            ).all()
        assert [notice.user_uid for notice in notices] == [world.admin.uid]
        assert notices[0].link_path == f"/tenant/settings/webhooks/{endpoint['uid']}"
        assert len(audits) == 1
        # Disabled: new events are not queued for it, pending ones are not sent.
        sent = len(receiver.received)
        await make_api_key(client, world.alice, "three")
        await make_due(runtime)
        await deliver_due(runtime)
        assert len(receiver.received) == sent
        assert all(row.status != "pending" for row in await deliveries(runtime))

        # Enabled again: healthy afresh.
        body = {"url": receiver.url, "events": endpoint["events"], "enabled": True}
        response = await client.put(
            f"/v1/webhooks/endpoints/{endpoint['uid']}", json=body, headers=world.admin.headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["enabled"] is True
        assert response.json().get("disabledReason") is None


async def test_resend_delivers_the_same_event_again(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    async with receiving() as receiver:
        endpoint = await make_endpoint(client, world.admin, receiver.url)
        await make_api_key(client, world.alice, "ci")
        await deliver_due(runtime)
        listed = await client.get(
            f"/v1/webhooks/endpoints/{endpoint['uid']}/deliveries", headers=world.admin.headers
        )
        assert listed.status_code == 200, listed.text
        (item,) = listed.json()["items"]
        assert item["status"] == "succeeded"
        assert item["eventType"] == "apiKey.created"
        assert item["responseStatus"] == 200
        assert item["attempts"] == 1
        assert listed.json()["listmeta"]["count"] == 1

        response = await client.post(
            f"/v1/webhooks/deliveries/{item['uid']}/resend", headers=world.admin.headers
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "pending"
        await deliver_due(runtime)
        assert len(receiver.received) == 2
        first, again = receiver.received
        assert first.headers["webhook-id"] == again.headers["webhook-id"]
        assert first.body == again.body
        verified(endpoint["secret"], again)
        other = await client.post(
            f"/v1/webhooks/deliveries/{item['uid']}/resend", headers=world.other_admin.headers
        )
        assert other.status_code == 404


async def test_a_rotated_secret_signs_alongside_the_previous_one(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    async with receiving() as receiver:
        endpoint = await make_endpoint(client, world.admin, receiver.url)
        response = await client.post(
            f"/v1/webhooks/endpoints/{endpoint['uid']}/rotateSecret", headers=world.admin.headers
        )
        assert response.status_code == 200, response.text
        new_secret = response.json()["secret"]
        assert new_secret.startswith("whsec_")
        assert new_secret != endpoint["secret"]
        await make_api_key(client, world.alice, "ci")
        await deliver_due(runtime)
        (request,) = receiver.received
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        verified(new_secret, request)
        verified(endpoint["secret"], request)
        # The secret is stored sealed, never in the clear.
        row = await get_endpoint_row(runtime, endpoint["uid"])
        assert new_secret not in row.secret_encrypted
        assert new_secret.removeprefix("whsec_") not in row.secret_encrypted


async def test_a_private_target_is_refused_at_delivery_when_not_allowed(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path, webhook_allow_private_targets=False)
    async with running_app(settings) as (app, client):
        runtime: Runtime = app.state.runtime
        world = await build_world(client, runtime)
        response = await client.post(
            "/v1/webhooks/endpoints",
            json={"url": "http://127.0.0.1:9/hook", "events": ["apiKey.created"]},
            headers=world.admin.headers,
        )
        assert response.status_code == 400
        assert response.json()["code"] == "InvalidWebhookUrl"
        assert "private" in response.json()["message"]
        # A public-looking name that resolves to loopback is caught by the lookup at
        # delivery: written here straight to the row, as a DNS change would do.
        async with receiving() as receiver:
            endpoint = await make_endpoint(client, world.admin, "https://hooks.example.com/in")
            async with transaction(runtime.sessionmaker) as session:
                await session.execute(
                    update(WebhookEndpoint).values(url=f"http://localhost:{receiver.port}/hook")
                )
            await make_api_key(client, world.alice, "ci")
            await deliver_due(runtime)
            assert receiver.received == []
            (row,) = await deliveries(runtime, endpoint["uid"])
            assert row.status == "pending"
            assert row.attempts == 1
            assert row.error is not None
            assert "Refused" in row.error


# --- several instances, and a crash -------------------------------------------------


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://keyplane.test") as http:
            yield application, http


async def test_two_instances_deliver_each_event_exactly_once(
    client: httpx.AsyncClient,
    runtime: Runtime,
    world: World,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Small batches: the runs of both instances interleave, claiming as they go.
    monkeypatch.setattr(worker, "BATCH", 4)
    async with receiving(lambda request: Answer(delay=0.02)) as receiver:
        endpoint = await make_endpoint(client, world.admin, receiver.url)
        for index in range(15):
            await make_api_key(client, world.alice, f"key-{index}")
            await make_api_key(client, world.bob, f"key-{index}")
        async with running_app(settings) as (second, _):
            other: Runtime = second.state.runtime
            await asyncio.gather(
                deliver_due(runtime), deliver_due(other), deliver_due(runtime), deliver_due(other)
            )
        ids = [request.headers["webhook-id"] for request in receiver.received]
        assert len(ids) == 30
        assert len(set(ids)) == 30
        rows = await deliveries(runtime, endpoint["uid"])
        assert [row.attempts for row in rows] == [1] * 30
        assert {row.status for row in rows} == {"succeeded"}


async def test_an_event_committed_before_a_crash_is_delivered_by_the_next_instance(
    settings: Settings,
) -> None:
    """The cheap form of kill -9: the change commits (with its outbox rows) in one app whose
    background work never runs, which then goes away; a second app on the same database
    delivers the event. A claim whose holder died is taken again once its lease lapses."""
    async with receiving() as receiver:
        async with running_app(settings) as (first, client):
            runtime: Runtime = first.state.runtime
            world = await build_world(client, runtime)
            endpoint = await make_endpoint(client, world.admin, receiver.url)
            await make_api_key(client, world.alice, "ci")
            # A worker claimed it and died before sending: the lease is all that remains.
            async with transaction(runtime.sessionmaker) as session:
                await session.execute(
                    update(WebhookDelivery).values(claimed_until=utcnow() + timedelta(seconds=60))
                )
        async with running_app(settings) as (second, _):
            other: Runtime = second.state.runtime
            await deliver_due(other)
            assert receiver.received == []  # still claimed
            async with transaction(other.sessionmaker) as session:
                await session.execute(
                    update(WebhookDelivery).values(claimed_until=utcnow() - timedelta(seconds=1))
                )
            await deliver_due(other)
            (request,) = receiver.received
            assert json.loads(request.body)["type"] == "apiKey.created"
            verified(endpoint["secret"], request)
