from __future__ import annotations

import re

import httpx
from playwright.async_api import Locator, Page, expect

from tests.api_keys.helpers import CreatedKey, key_body
from tests.console.conftest import LiveServer
from tests.users.helpers import Actor


async def api_key_for(server: LiveServer, actor: Actor, name: str) -> CreatedKey:
    """Creates a key through the REST API of the running server."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        login = await http.post(
            "/v1/auth/authenticate",
            json={"emailId": actor.email, "org": actor.tenant_name, "password": actor.password},
        )
        created = await http.post(
            "/v1/apiKeys",
            json=key_body(name),
            headers={"Authorization": login.json()["Authorization"]},
        )
        assert created.status_code == 201, created.text
        return CreatedKey(uid=created.json()["uid"], value=created.json()["apiKey"])


async def status_with_key(server: LiveServer, key: CreatedKey) -> int:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return (await http.get("/v1/users/info", headers=key.headers)).status_code


def key_row(page: Page, name: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=name, exact=True))


async def open_my_api_keys(page: Page) -> None:
    """User Menu → My API Keys."""
    await page.get_by_label("User Menu").click()
    await page.get_by_role("menuitem", name="My API Keys").click()
    await page.wait_for_url("**/my/api-keys")


async def open_tenant_api_keys(page: Page) -> None:
    """Tenant Admin scope → Main Menu → Tenant Settings → Tenant Settings Menu → API Keys."""
    await (
        page.get_by_role("navigation", name="Scope")
        .get_by_role("link", name="Tenant Admin")
        .click()
    )
    await (
        page.get_by_role("navigation", name="Main Menu")
        .get_by_role("link", name="Tenant Settings")
        .click()
    )
    await (
        page.get_by_role("navigation", name="Tenant Settings Menu")
        .get_by_role("link", name="API Keys")
        .click()
    )
    await page.wait_for_url("**/tenant/settings/api-keys")


async def choose_from_row_menu(page: Page, key_name: str, item: str) -> None:
    """Identify the key in the table, click its three-dot Menu, click the item."""
    row = key_row(page, key_name)
    await row.get_by_label(f"three-dot Menu for {key_name}").click()
    await row.get_by_role("menuitem", name=item).click()


async def active_column(page: Page, key_name: str) -> str:
    """The whole Active cell: one state, never two."""
    return (await key_row(page, key_name).locator("td.state").inner_text()).strip()


async def open_tenant_settings(page: Page, item: str) -> None:
    """Tenant Admin scope → Main Menu → Tenant Settings → Tenant Settings Menu → item."""
    await (
        page.get_by_role("navigation", name="Scope")
        .get_by_role("link", name="Tenant Admin")
        .click()
    )
    await (
        page.get_by_role("navigation", name="Main Menu")
        .get_by_role("link", name="Tenant Settings")
        .click()
    )
    await (
        page.get_by_role("navigation", name="Tenant Settings Menu")
        .get_by_role("link", name=item, exact=True)
        .click()
    )
    await expect(
        page.get_by_role("navigation", name="Tenant Settings Menu").get_by_role(
            "link", name=item, exact=True
        )
    ).to_have_attribute("aria-current", "page")


def user_row(page: Page, full_name: str) -> Locator:
    return page.get_by_role("row").filter(
        has=page.locator("td.name", has_text=re.compile(rf"^{re.escape(full_name)}\b"))
    )


async def choose_from_user_menu(page: Page, full_name: str, item: str) -> None:
    """Identify the user in the table, click their three-dot Menu, click the item."""
    row = user_row(page, full_name)
    await row.get_by_label(f"three-dot Menu for {full_name}").click()
    await row.get_by_role("menuitem", name=item).click()


async def csrf_token(page: Page) -> str:
    value = await page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert value
    return value
