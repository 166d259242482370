"""Tenant Settings > Webhooks: list, add (secret shown once), edit, rotate, delete, and an
endpoint's deliveries with Resend, over HTTP; and one walk through it in a browser."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import httpx
from playwright.async_api import Page, expect

from keyplane.console.session import FLASH_COOKIE, SESSION_COOKIE
from keyplane.runtime import Runtime
from keyplane.webhooks.worker import deliver_due
from tests.api_keys.helpers import make_api_key
from tests.console.conftest import LiveServer, log_in, screenshot
from tests.console.helpers import api_key_for, open_tenant_settings
from tests.helpers import World
from tests.users.helpers import Actor
from tests.webhooks.helpers import deliveries

BASE = "/tenant/settings/webhooks"
URL = "https://hooks.example.com/keyplane"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SECRET = re.compile(r'id="webhook-secret" class="secret" type="text" readonly value="([^"]+)"')


def _as(actor: Actor) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={actor.headers['Authorization']}"}


async def _page(client: httpx.AsyncClient, actor: Actor, path: str = BASE) -> str:
    response = await client.get(path, headers=_as(actor))
    assert response.status_code == 200, response.text
    return response.text


async def _post(
    client: httpx.AsyncClient, actor: Actor, path: str, form: dict[str, Any]
) -> httpx.Response:
    csrf = _CSRF.search(await _page(client, actor, f"{BASE}/new"))
    assert csrf is not None
    return await client.post(path, data={"csrf_token": csrf.group(1), **form}, headers=_as(actor))


def _flash(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{FLASH_COOKIE}=")
    return unquote(cookie.split(";")[0].split("=", 1)[1])


async def test_add_edit_rotate_resend_and_delete_over_http(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    admin = world.admin
    empty = await _page(client, admin)
    assert "No webhook endpoints yet." in empty
    assert 'href="/tenant/settings/webhooks" aria-current="page"' in empty

    refused = await _post(
        client, admin, f"{BASE}/new", {"url": "http://10.0.0.1/", "event": ["apiKey.created"]}
    )
    assert refused.status_code == 400
    assert 'id="url-error"' in refused.text
    assert "private" in refused.text
    no_events = await _post(client, admin, f"{BASE}/new", {"url": URL, "enabled": "on"})
    assert no_events.status_code == 400
    assert 'id="events-error"' in no_events.text

    created = await _post(
        client,
        admin,
        f"{BASE}/new",
        {"url": URL, "description": "CI", "event": ["apiKey.created"], "enabled": "on"},
    )
    assert created.status_code == 201, created.text
    secret = _SECRET.search(created.text)
    assert secret is not None
    assert secret.group(1).startswith("whsec_")
    listed = await _page(client, admin)
    assert URL in listed
    assert secret.group(1) not in listed
    uid = re.search(r'data-endpoint-uid="([^"]+)"', listed)
    assert uid is not None
    detail_url = f"{BASE}/{uid.group(1)}"

    # A key event queues a delivery, shown on the endpoint's page with Resend.
    await make_api_key(client, world.alice, "ci")
    detail = await _page(client, admin, detail_url)
    assert "apiKey.created" in detail
    assert "pending" in detail
    assert secret.group(1) not in detail
    (delivery,) = await deliveries(runtime)
    resent = await _post(client, admin, f"{BASE}/deliveries/{delivery.uid}/resend", {})
    assert "queued to be sent again" in _flash(resent)
    assert len(await deliveries(runtime)) == 2

    edited = await _post(
        client,
        admin,
        f"{detail_url}/edit",
        {"url": URL + "/v2", "event": ["apiKey.revoked", "user.created"]},
    )
    assert _flash(edited).endswith("Webhook endpoint saved.")
    detail = await _page(client, admin, detail_url)
    assert URL + "/v2" in detail
    assert "Disabled." in detail
    assert "user.created" in detail

    rotated = await _post(client, admin, f"{detail_url}/rotate-secret", {})
    assert rotated.status_code == 200
    new_secret = _SECRET.search(rotated.text)
    assert new_secret is not None
    assert new_secret.group(1) != secret.group(1)
    assert "previous secret keeps signing" in rotated.text

    # Another tenant's admin and a user see nothing of it.
    other = await client.get(detail_url, headers=_as(world.other_admin))
    assert other.status_code == 404
    assert (await client.get(BASE, headers=_as(world.alice))).status_code == 403

    assert "Delete the webhook endpoint" in await _page(client, admin, f"{detail_url}/delete")
    deleted = await _post(client, admin, f"{detail_url}/delete", {})
    assert "deleted" in _flash(deleted)
    assert "No webhook endpoints yet." in await _page(client, admin)
    await deliver_due(runtime)  # its deliveries went with it: nothing to send


async def test_a_tenant_admin_adds_an_endpoint_and_resends_a_delivery_in_the_browser(
    page: Page, live_server: LiveServer
) -> None:
    world = live_server.world
    await log_in(page, world.admin)
    await open_tenant_settings(page, "Webhooks")
    await page.wait_for_url(f"**{BASE}")
    await page.get_by_role("link", name="Add endpoint").click()
    await page.get_by_label("URL").fill(URL)
    await page.get_by_label("Description").fill("Our audit sink")
    await page.get_by_label("apiKey.created").check()
    await page.get_by_label("apiKey.revoked").check()
    await page.get_by_role("button", name="Add endpoint").click()
    secret = page.get_by_label(re.compile("Signing secret for"))
    await expect(secret).to_have_value(re.compile(r"^whsec_"))
    await screenshot(page, "webhooks-secret")
    await page.get_by_role("link", name="Done").click()

    await api_key_for(live_server, world.alice, "ci")
    await page.reload()
    rows = page.locator("table.webhook-deliveries tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("td.event")).to_have_text("apiKey.created")
    await expect(rows.first.locator("td.status")).to_contain_text("pending")
    await screenshot(page, "webhooks-detail")
    await rows.first.get_by_role("button", name=re.compile("Resend")).click()
    await expect(page.get_by_role("status").first).to_contain_text("queued to be sent again")
    await expect(page.locator("table.webhook-deliveries tbody tr")).to_have_count(2)
