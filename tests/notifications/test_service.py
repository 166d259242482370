"""Who is told what when a key changes: its owner, when someone else (a tenant admin, the
inactivity sweep) revoked, rotated or deleted it; never the person who did it."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from keyplane.auth.principal import AuthMethod, Principal
from keyplane.events.service import emit
from keyplane.events.types import EventType
from keyplane.kit.db import transaction
from keyplane.models import ApiKey, Role, Tenant, User
from keyplane.notifications import worker
from keyplane.runtime import Runtime
from keyplane.tenants.service import system_principal
from tests.api_keys.helpers import make_api_key
from tests.helpers import World
from tests.notifications.conftest import Mailbox, body_of
from tests.notifications.helpers import notifications_of
from tests.users.helpers import Actor


def _principal(actor: Actor, role: Role) -> Principal:
    return Principal(
        tenant_uid=actor.tenant_uid,
        tenant_name=actor.tenant_name,
        user_uid=actor.uid,
        email=actor.email,
        first_name="Ada",
        last_name="Admin",
        role=role,
        method=AuthMethod.SESSION,
        credential_uid="",
    )


async def test_an_admin_revoking_someones_key_mails_its_owner(
    client: httpx.AsyncClient, runtime: Runtime, world: World, smtp: Mailbox
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    response = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.admin.headers
    )
    assert response.status_code == 204, response.text
    await worker.send_due(runtime)

    [message] = smtp.to(world.alice.email)
    assert message["Subject"] == "Your API key “deploy” was revoked"
    body = body_of(message)
    assert "Ada Admin (admin@acme.example) revoked your API key “deploy” (kp_…" in body
    assert f"https://keyplane.example/my/api-keys/{key.uid}" in body
    assert key.value not in message.as_string()
    assert key.value[-4:] in body  # its last characters name it
    [row] = await notifications_of(runtime, world.alice.uid)
    assert (row.status, row.kind, row.key_uid) == ("sent", "apiKey.revoked", key.uid)
    assert row.sent_at is not None
    assert message["X-Keyplane-Notification"] == row.uid
    assert message["Message-ID"]


async def test_an_admin_deleting_someones_key_mails_its_owner(
    client: httpx.AsyncClient, runtime: Runtime, world: World, smtp: Mailbox
) -> None:
    key = await make_api_key(client, world.bob, "old")
    response = await client.delete(f"/v1/apiKeys/{key.uid}", headers=world.admin.headers)
    assert response.status_code == 204, response.text
    await worker.send_due(runtime)

    [message] = smtp.to(world.bob.email)
    assert message["Subject"] == "Your API key “old” was deleted"
    assert "https://keyplane.example/my/api-keys\n" in body_of(message)
    assert key.value not in message.as_string()


async def test_no_mail_when_the_owner_changes_their_own_key(
    client: httpx.AsyncClient, runtime: Runtime, world: World, smtp: Mailbox
) -> None:
    key = await make_api_key(client, world.alice, "mine")
    revoked = await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.alice.headers
    )
    assert revoked.status_code == 204
    assert (await client.delete(f"/v1/apiKeys/{key.uid}", headers=world.alice.headers)).is_success
    # The admin's own key, revoked by the admin: no mail either.
    own = await make_api_key(client, world.admin, "admin's")
    await client.patch(
        f"/v1/apiKeys/{own.uid}", json={"isActive": False}, headers=world.admin.headers
    )
    await worker.send_due(runtime)
    assert smtp.messages == []
    assert await notifications_of(runtime) == []


async def _key_and_owner(runtime: Runtime, uid: str) -> tuple[ApiKey, User, Tenant]:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        key = await session.scalar(select(ApiKey).where(ApiKey.uid == uid))
        assert key is not None
        owner = await session.get(User, key.user_uid)
        tenant = await session.get(Tenant, key.tenant_uid)
        assert owner is not None
        assert tenant is not None
        return key, owner, tenant


async def test_a_rotation_by_an_admin_and_the_inactivity_sweep_are_told_once_each(
    client: httpx.AsyncClient, runtime: Runtime, world: World, smtp: Mailbox
) -> None:
    key = await make_api_key(client, world.alice, "ci")
    api_key, owner, tenant = await _key_and_owner(runtime, key.uid)
    admin = _principal(world.admin, Role.TENANT_ADMIN)
    async with transaction(runtime.sessionmaker) as session:
        event = await emit(session, admin, EventType.API_KEY_ROTATED, api_key=api_key, user=owner)
        # The same event seen twice (a retry, another listener) is still one notice.
        from keyplane.notifications import service

        await service.on_event(session, event)
        await emit(
            session,
            system_principal(tenant),
            EventType.API_KEY_REVOKED,
            api_key=api_key,
            user=owner,
            reason="inactivity",
        )
        # Events nobody is mailed about.
        await emit(session, admin, EventType.API_KEY_UPDATED, api_key=api_key, user=owner)
        await emit(session, admin, EventType.USER_DEACTIVATED, user=owner)
    await worker.send_due(runtime)

    subjects = sorted(message["Subject"] for message in smtp.to(world.alice.email))
    assert subjects == ["Your API key “ci” was revoked", "Your API key “ci” was rotated"]
    bodies = "\n".join(smtp.bodies())
    assert "Keyplane revoked your API key “ci”" in bodies
    assert "because it had not been used" in bodies
    assert "Ada Admin (admin@acme.example) rotated your API key" in bodies
    assert key.value not in "\n".join(smtp.texts())
