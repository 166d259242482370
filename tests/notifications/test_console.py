"""My Notifications in the console: the list, the line about email, the digest switch."""

from __future__ import annotations

import dataclasses

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from keyplane.console.session import SESSION_COOKIE, csrf_token_for
from keyplane.kit.db import transaction
from keyplane.models import AuthSession, User
from keyplane.notifications import worker
from keyplane.runtime import Runtime
from tests.api_keys.helpers import make_api_key
from tests.helpers import World
from tests.users.helpers import Actor


def _cookie(actor: Actor) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={actor.headers['Authorization']}"}


async def _csrf(runtime: Runtime, actor: Actor) -> str:
    token = actor.headers["Authorization"]
    async with transaction(runtime.sessionmaker, writes=False) as session:
        auth_session = (
            await session.execute(
                select(AuthSession).where(
                    AuthSession.token_hash == runtime.secret_hasher.hash(token)
                )
            )
        ).scalar_one()
    return csrf_token_for(runtime, auth_session.uid)


async def test_the_page_lists_a_persons_notifications_with_their_links(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    await client.patch(
        f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.admin.headers
    )
    await worker.send_due(runtime)

    page = await client.get("/my/notifications", headers=_cookie(world.alice))
    assert page.status_code == 200, page.text
    assert "Your API key “deploy” was revoked" in page.text
    assert f'href="/my/api-keys/{key.uid}"' in page.text
    assert "Mailed" in page.text
    assert "Email is not configured" not in page.text
    assert "Daily digest" not in page.text  # tenant admins only
    assert key.value not in page.text

    empty = await client.get("/my/notifications", headers=_cookie(world.bob))
    assert "No notifications yet" in empty.text


async def test_without_smtp_the_page_says_how_to_turn_email_on(
    app: FastAPI, client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    await client.delete(f"/v1/apiKeys/{key.uid}", headers=world.admin.headers)
    app.state.runtime = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"smtp_url": None})
    )
    await worker.send_due(app.state.runtime)
    page = await client.get("/my/notifications", headers=_cookie(world.alice))
    assert page.status_code == 200
    assert "Email is not configured on this server" in page.text
    assert "KEYPLANE_SMTP_URL" in page.text
    assert "Not mailed" in page.text


async def test_a_tenant_admin_turns_the_digest_on_and_off(
    client: httpx.AsyncClient, runtime: Runtime, world: World
) -> None:
    page = await client.get("/my/notifications", headers=_cookie(world.admin))
    assert "Daily digest" in page.text
    csrf = await _csrf(runtime, world.admin)
    on = await client.post(
        "/my/notifications/settings",
        data={"csrf_token": csrf, "expiry_digest": "on"},
        headers=_cookie(world.admin),
    )
    assert on.status_code == 303
    assert on.headers["location"] == "/my/notifications"
    page = await client.get("/my/notifications", headers=_cookie(world.admin))
    assert 'name="expiry_digest" value="on" checked' in page.text

    off = await client.post(
        "/my/notifications/settings", data={"csrf_token": csrf}, headers=_cookie(world.admin)
    )
    assert off.status_code == 303
    async with transaction(runtime.sessionmaker, writes=False) as session:
        admin = await session.get(User, world.admin.uid)
        assert admin is not None
        assert admin.expiry_digest is False

    # A plain user may not, and a form without the CSRF token changes nothing.
    refused = await client.post(
        "/my/notifications/settings",
        data={"csrf_token": await _csrf(runtime, world.alice), "expiry_digest": "on"},
        headers=_cookie(world.alice),
    )
    assert refused.status_code == 403
    assert "Only tenant admins" in refused.text
    forged = await client.post(
        "/my/notifications/settings", data={"expiry_digest": "on"}, headers=_cookie(world.admin)
    )
    assert forged.status_code == 403
