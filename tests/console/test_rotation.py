"""Rotate, from a key's three-dot menu: the grace choices, the confirm page, the new value
shown once; in My API Keys and in Tenant Settings > API Keys."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.api_keys.helpers import CreatedKey
from tests.console.conftest import LiveServer, log_in, screenshot
from tests.console.helpers import (
    api_key_for,
    choose_from_row_menu,
    key_row,
    open_my_api_keys,
    open_tenant_api_keys,
    status_with_key,
)


async def test_rotate_from_the_menu_in_both_scopes(page: Page, live_server: LiveServer) -> None:
    world = live_server.world
    mine = await api_key_for(live_server, world.alice, "deploy")
    hers = await api_key_for(live_server, world.bob, "nightly")

    await log_in(page, world.alice)
    await open_my_api_keys(page)
    await choose_from_row_menu(page, "deploy", "Rotate")
    await expect(page.get_by_role("heading", name="Rotate API key “deploy”?")).to_be_visible()
    for label in ("Now", "In 1 hour", "In 24 hours", "In 7 days"):
        await expect(page.get_by_label(label)).to_be_visible()
    await expect(page.get_by_label("In 24 hours")).to_be_checked()
    await screenshot(page, "api-key-rotate-confirm")
    await page.get_by_role("button", name="Rotate").click()

    await expect(page.get_by_role("heading", name="API key rotated")).to_be_visible()
    value = await page.locator("#new-key").input_value()
    assert value.startswith("kp_")
    await expect(page.locator(".rotation-note")).to_contain_text("keeps working until")
    # The old key keeps working through the grace period; the new one works.
    assert await status_with_key(live_server, mine) == 200
    assert await status_with_key(live_server, CreatedKey(uid="", value=value)) == 200
    await page.get_by_role("link", name="Done").click()
    await page.wait_for_url("**/my/api-keys")
    await expect(key_row(page, "deploy")).to_have_count(1)
    assert value not in await page.content()
    # Rotated already: no Rotate in the old key's menu.
    old_name = await page.locator("td.name a", has_text="deploy (rotated").inner_text()
    old_row = key_row(page, old_name)
    await old_row.get_by_label(f"three-dot Menu for {old_name}").click()
    await expect(old_row.get_by_role("menuitem", name="Rotate")).to_have_count(0)

    await page.context.clear_cookies()
    await log_in(page, world.admin)
    await open_tenant_api_keys(page)
    await choose_from_row_menu(page, "nightly", "Rotate")
    await page.get_by_label("Now").check()
    await page.get_by_role("button", name="Rotate").click()
    await expect(page.get_by_role("heading", name="API key rotated")).to_be_visible()
    await expect(page.locator(".rotation-note")).to_contain_text("no longer works")
    await expect(page.get_by_label("New API key “nightly” for Bob By")).to_be_visible()
    assert await status_with_key(live_server, hers) == 401
