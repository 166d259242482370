"""The background work: expiry notices and their events, digests, and sending, each once
however many instances run it and however often."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import update

from keyplane.app import create_app
from keyplane.events.service import emit
from keyplane.events.types import EventType
from keyplane.kit.db import transaction
from keyplane.kit.time import utcnow
from keyplane.models import Notification, User
from keyplane.notifications import worker
from keyplane.notifications.service import notify
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.api_keys.helpers import backdate_expiry, make_api_key
from tests.helpers import World
from tests.notifications.conftest import Mailbox, body_of, free_port
from tests.notifications.helpers import notifications_of


@pytest.fixture
async def second_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Another Keyplane instance on the same database."""
    other: FastAPI = create_app(settings)
    async with other.router.lifespan_context(other):
        yield other.state.runtime


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[EventType, str]]:
    """The events the scans emit, by type and key uid (the real emit still runs)."""
    seen: list[tuple[EventType, str]] = []
    real = emit

    async def recording(session: Any, principal: Any, type: EventType, **values: Any) -> Any:
        seen.append((type, values["api_key"].uid))
        return await real(session, principal, type, **values)

    monkeypatch.setattr(worker, "emit", recording)
    return seen


async def test_expiry_notices_seven_and_one_days_before_each_written_and_mailed_once(
    client: httpx.AsyncClient,
    runtime: Runtime,
    second_runtime: Runtime,
    world: World,
    smtp: Mailbox,
    emitted: list[tuple[EventType, str]],
) -> None:
    now = utcnow()
    week = await make_api_key(client, world.alice, "week", expiry=now + timedelta(days=6, hours=12))
    day = await make_api_key(client, world.alice, "day", expiry=now + timedelta(hours=20))
    later = await make_api_key(client, world.bob, "later", expiry=now + timedelta(days=10))

    # Two instances at once, and again (a restart): each notice once, each event once.
    await asyncio.gather(
        worker.queue_expiry_notices(runtime), worker.queue_expiry_notices(second_runtime)
    )
    await worker.queue_expiry_notices(runtime)
    rows = await notifications_of(runtime)
    keys = sorted(row.dedupe_key.rsplit(":", 1)[1] + ":" + (row.key_uid or "") for row in rows)
    assert keys == sorted([f"7:{week.uid}", f"1:{day.uid}"])
    assert sorted(emitted) == sorted(
        [(EventType.API_KEY_EXPIRING_SOON, week.uid), (EventType.API_KEY_EXPIRING_SOON, day.uid)]
    )

    await asyncio.gather(worker.send_due(runtime), worker.send_due(second_runtime))
    await worker.send_due(runtime)
    subjects = sorted(message["Subject"] for message in smtp.to(world.alice.email))
    assert subjects == [
        "Your API key “day” expires in 20 hours",
        "Your API key “week” expires in 6 days",
    ]
    assert smtp.to(world.bob.email) == []
    assert later.uid not in "\n".join(smtp.texts())
    assert all(row.status == "sent" for row in await notifications_of(runtime))
    # The owner acts on the key's own page.
    assert any(f"https://keyplane.example/my/api-keys/{day.uid}" in b for b in smtp.bodies())
    assert not any(key.value in text for key in (week, day) for text in smtp.texts())

    # An extended expiry is a new expiry: new notices when it comes near.
    extended = now + timedelta(days=5)
    response = await client.put(
        f"/v1/apiKeys/{day.uid}",
        json={"metadata": {"name": "day"}, "spec": {"expiry": extended.isoformat()}},
        headers=world.alice.headers,
    )
    assert response.status_code == 204, response.text
    await worker.queue_expiry_notices(runtime)
    rows = await notifications_of(runtime, world.alice.uid)
    assert len(rows) == 3
    assert rows[-1].dedupe_key.endswith(":7")
    assert rows[-1].key_uid == day.uid


async def test_a_key_that_expired_gets_one_notice_and_one_event(
    client: httpx.AsyncClient,
    runtime: Runtime,
    second_runtime: Runtime,
    world: World,
    smtp: Mailbox,
    emitted: list[tuple[EventType, str]],
) -> None:
    key = await make_api_key(client, world.bob, "gone")
    await backdate_expiry(runtime, key.uid)
    await asyncio.gather(
        worker.queue_expiry_notices(runtime), worker.queue_expiry_notices(second_runtime)
    )
    await worker.queue_expiry_notices(runtime)
    assert emitted == [(EventType.API_KEY_EXPIRED, key.uid)]
    [row] = await notifications_of(runtime, world.bob.uid)
    assert row.kind == "apiKey.expired"
    await worker.send_due(runtime)
    [message] = smtp.to(world.bob.email)
    assert message["Subject"] == "Your API key “gone” has expired"
    assert key.value not in message.as_string()


async def test_two_instances_sending_at_once_send_each_mail_once(
    client: httpx.AsyncClient,
    runtime: Runtime,
    second_runtime: Runtime,
    world: World,
    smtp: Mailbox,
) -> None:
    async with transaction(runtime.sessionmaker) as session:
        alice = await session.get(User, world.alice.uid)
        assert alice is not None
        for number in range(30):
            await notify(
                session,
                alice,
                kind="test",
                subject=f"number {number}",
                body="hello",
                link_path="/my/notifications",
                dedupe_key=f"test:{number}",
            )
    await asyncio.gather(
        worker.send_due(runtime),
        worker.send_due(second_runtime),
        worker.send_due(runtime),
        worker.send_due(second_runtime),
    )
    uids = [message["X-Keyplane-Notification"] for message in smtp.messages]
    assert len(uids) == 30
    assert len(set(uids)) == 30
    rows = await notifications_of(runtime)
    assert {row.uid for row in rows} == set(uids)
    assert all(row.status == "sent" and row.attempts == 1 for row in rows)


async def test_a_notice_written_twice_is_one_row(runtime: Runtime, world: World) -> None:
    for _ in range(2):
        async with transaction(runtime.sessionmaker) as session:
            alice = await session.get(User, world.alice.uid)
            assert alice is not None
            await notify(
                session,
                alice,
                kind="test",
                subject="once",
                body="once",
                link_path="",
                dedupe_key="test:once",
            )
    assert len(await notifications_of(runtime)) == 1


async def test_without_smtp_notifications_are_listed_not_mailed(
    client: httpx.AsyncClient, runtime: Runtime, world: World, smtp: Mailbox
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    await client.delete(f"/v1/apiKeys/{key.uid}", headers=world.admin.headers)
    no_smtp = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"smtp_url": None})
    )
    await worker.send_due(no_smtp)
    [row] = await notifications_of(runtime)
    assert row.status == "notMailed"
    await worker.send_due(runtime)
    assert smtp.messages == []


async def test_a_failing_server_is_retried_with_backoff_then_given_up(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    await client.delete(f"/v1/apiKeys/{key.uid}", headers=world.admin.headers)
    nowhere = dataclasses.replace(
        runtime,
        settings=runtime.settings.model_copy(
            update={"smtp_url": SecretStr(f"smtp://user:hunter2-pw@127.0.0.1:{free_port()}")}
        ),
    )
    before = utcnow()
    await worker.send_due(nowhere)
    [row] = await notifications_of(runtime)
    assert (row.status, row.attempts, row.claimed_until) == ("pending", 1, None)
    assert row.next_attempt_at >= before + worker.retry_delay(1)
    assert row.last_error
    assert "hunter2-pw" not in row.last_error
    # Not due yet: nothing is tried.
    await worker.send_due(nowhere)
    assert (await notifications_of(runtime))[0].attempts == 1

    async with transaction(runtime.sessionmaker) as session:
        await session.execute(
            update(Notification).values(
                attempts=worker.MAX_ATTEMPTS - 1, next_attempt_at=utcnow() - timedelta(seconds=1)
            )
        )
    await worker.send_due(nowhere)
    [row] = await notifications_of(runtime)
    assert (row.status, row.attempts) == ("failed", worker.MAX_ATTEMPTS)
    assert row.last_error
    assert "hunter2-pw" not in row.last_error


async def test_the_daily_digest_lists_the_tenants_expiring_keys_once_a_day(
    client: httpx.AsyncClient,
    runtime: Runtime,
    second_runtime: Runtime,
    world: World,
    smtp: Mailbox,
) -> None:
    now = utcnow()
    soon = await make_api_key(client, world.alice, "soon", expiry=now + timedelta(days=3))
    also = await make_api_key(client, world.bob, "also", expiry=now + timedelta(days=6))
    far = await make_api_key(client, world.bob, "far", expiry=now + timedelta(days=30))
    for admin in (world.admin, world.other_admin):
        response = await client.put(
            "/v1/users/me/notificationSettings",
            json={"expiryDigest": True},
            headers=admin.headers,
        )
        assert response.status_code == 204, response.text

    await asyncio.gather(worker.queue_digests(runtime), worker.queue_digests(second_runtime))
    await worker.queue_digests(runtime)
    [row] = await notifications_of(runtime, world.admin.uid)
    assert row.dedupe_key == f"digest:{world.admin.uid}:{now.date().isoformat()}"
    # Globex has no keys about to expire: no digest.
    assert await notifications_of(runtime, world.other_admin.uid) == []

    await worker.send_due(runtime)
    [message] = smtp.to(world.admin.email)
    assert message["Subject"] == "2 API keys in acme expire within 7 days"
    body = body_of(message)
    assert "“soon”" in body
    assert "alice@acme.example" in body
    assert "“also”" in body
    assert "“far”" not in body
    assert "https://keyplane.example/tenant/settings/api-keys" in body
    assert not any(key.value in message.as_string() for key in (soon, also, far))


async def test_no_mail_ever_carries_a_key_value(
    client: httpx.AsyncClient, runtime: Runtime, world: World, smtp: Mailbox
) -> None:
    now = utcnow()
    keys = [
        await make_api_key(client, world.alice, "week", expiry=now + timedelta(days=6)),
        await make_api_key(client, world.alice, "day", expiry=now + timedelta(hours=12)),
        await make_api_key(client, world.bob, "revoked"),
        await make_api_key(client, world.bob, "deleted"),
        await make_api_key(client, world.alice, "expired"),
    ]
    await client.patch(
        f"/v1/apiKeys/{keys[2].uid}", json={"isActive": False}, headers=world.admin.headers
    )
    await client.delete(f"/v1/apiKeys/{keys[3].uid}", headers=world.admin.headers)
    await backdate_expiry(runtime, keys[4].uid)
    await client.put(
        "/v1/users/me/notificationSettings",
        json={"expiryDigest": True},
        headers=world.admin.headers,
    )
    await worker.queue_expiry_notices(runtime)
    await worker.queue_digests(runtime)
    await worker.send_due(runtime)

    assert len(smtp.messages) == 6
    everything = "\n".join(smtp.texts())
    for key in keys:
        assert key.value not in everything
        # Not even most of it: only the prefix and the last characters name a key.
        assert key.value[:-4] not in everything
    rows = await notifications_of(runtime)
    assert not any(key.value in row.body + row.subject for key in keys for row in rows)
