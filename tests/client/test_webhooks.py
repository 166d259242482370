"""The SDK's webhook methods against a real running server, sync and async."""

from __future__ import annotations

import pytest

from keyplane.client import AsyncClient, Client, NotFound, ValidationError
from tests.live import LiveServer
from tests.users.helpers import Actor

URL = "https://hooks.example.com/keyplane"


def _client(server: LiveServer, actor: Actor) -> Client:
    return Client(server.url, email=actor.email, org=actor.tenant_name, password=actor.password)


def test_webhook_endpoints_with_the_sync_client(server: LiveServer) -> None:
    world = server.world
    with _client(server, world.admin) as admin:
        created = admin.create_webhook_endpoint(URL, ["apiKey.created"], description="CI")
        assert created.secret is not None
        assert created.secret.startswith("whsec_")
        assert created.secret not in repr(created)
        listed = admin.list_webhook_endpoints()
        assert [(e.uid, e.secret) for e in listed] == [(created.uid, None)]

        updated = admin.update_webhook_endpoint(created.uid, enabled=False)
        assert (updated.enabled, updated.url, updated.description) == (False, URL, "CI")
        updated = admin.update_webhook_endpoint(
            created.uid, events=["apiKey.created", "user.created"], enabled=True
        )
        assert updated.events == ["apiKey.created", "user.created"]
        assert updated.enabled
        rotated = admin.rotate_webhook_secret(created.uid)
        assert rotated.secret is not None
        assert rotated.secret != created.secret

        with _client(server, world.alice) as alice:
            alice.create_api_key("ci")
        (delivery,) = admin.list_webhook_deliveries(created.uid)
        assert (delivery.event_type, delivery.status, delivery.attempts) == (
            "apiKey.created",
            "pending",
            0,
        )
        again = admin.resend_webhook_delivery(delivery.uid)
        assert again.event_uid == delivery.event_uid
        assert again.uid != delivery.uid

        with pytest.raises(ValidationError) as refused:
            admin.create_webhook_endpoint("http://10.0.0.1/", ["apiKey.created"])
        assert refused.value.code == "InvalidWebhookUrl"
        with _client(server, world.other_admin) as other, pytest.raises(NotFound):
            other.get_webhook_endpoint(created.uid)

        admin.delete_webhook_endpoint(created.uid)
        assert admin.list_webhook_endpoints() == []


async def test_webhook_endpoints_with_the_async_client(server: LiveServer) -> None:
    admin = server.world.admin
    async with AsyncClient(
        server.url, email=admin.email, org=admin.tenant_name, password=admin.password
    ) as client:
        created = await client.create_webhook_endpoint(URL, ["user.created"])
        assert created.secret is not None
        assert [e.uid for e in await client.list_webhook_endpoints()] == [created.uid]
        updated = await client.update_webhook_endpoint(created.uid, url=URL + "/v2")
        assert updated.url == URL + "/v2"
        assert (await client.get_webhook_endpoint(created.uid)).url == URL + "/v2"
        rotated = await client.rotate_webhook_secret(created.uid)
        assert rotated.secret is not None
        assert rotated.secret != created.secret
        assert [d async for d in client.list_webhook_deliveries(created.uid)] == []
        await client.delete_webhook_endpoint(created.uid)
        assert await client.list_webhook_endpoints() == []
