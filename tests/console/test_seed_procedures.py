"""Each procedure of the seed pages (revoke, re-activate, delete), on the User tab and the
Tenant tab, followed by its visible labels, then its Validate steps on the table, then the
same key on the REST API."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.console.conftest import LiveServer, log_in, screenshot
from tests.console.helpers import (
    active_column,
    api_key_for,
    choose_from_row_menu,
    key_row,
    open_my_api_keys,
    open_tenant_api_keys,
    status_with_key,
)


async def test_user_tab_revoke_and_reactivate(page: Page, live_server: LiveServer) -> None:
    alice = live_server.world.alice
    key = await api_key_for(live_server, alice, "deploy")
    await log_in(page, alice)

    await open_my_api_keys(page)
    await choose_from_row_menu(page, "deploy", "Revoke")
    await expect(page.get_by_role("status")).to_contain_text("revoked")

    await open_my_api_keys(page)
    assert await active_column(page, "deploy") == "Inactive"
    assert await status_with_key(live_server, key) == 401

    await open_my_api_keys(page)
    await choose_from_row_menu(page, "deploy", "Re-activate")
    await open_my_api_keys(page)
    assert await active_column(page, "deploy") == "Active"
    assert await status_with_key(live_server, key) == 200


async def test_user_tab_delete(page: Page, live_server: LiveServer) -> None:
    alice = live_server.world.alice
    key = await api_key_for(live_server, alice, "deploy")
    await log_in(page, alice)

    await open_my_api_keys(page)
    await choose_from_row_menu(page, "deploy", "Delete")
    await expect(page.get_by_role("heading")).to_contain_text("Delete API key")
    await screenshot(page, "delete-confirmation")
    await page.get_by_role("button", name="Delete").click()

    await open_my_api_keys(page)
    await expect(key_row(page, "deploy")).to_have_count(0)
    assert await status_with_key(live_server, key) == 401


async def test_tenant_tab_revoke_and_reactivate(page: Page, live_server: LiveServer) -> None:
    world = live_server.world
    key = await api_key_for(live_server, world.alice, "alice-ci")
    await log_in(page, world.admin)

    await open_tenant_api_keys(page)
    await choose_from_row_menu(page, "alice-ci", "Revoke")
    await open_tenant_api_keys(page)
    assert await active_column(page, "alice-ci") == "Inactive"
    assert await status_with_key(live_server, key) == 401

    await open_tenant_api_keys(page)
    await choose_from_row_menu(page, "alice-ci", "Re-activate")
    await open_tenant_api_keys(page)
    assert await active_column(page, "alice-ci") == "Active"
    assert await status_with_key(live_server, key) == 200


async def test_tenant_tab_delete(page: Page, live_server: LiveServer) -> None:
    world = live_server.world
    key = await api_key_for(live_server, world.bob, "bob-ci")
    await log_in(page, world.admin)

    await open_tenant_api_keys(page)
    await choose_from_row_menu(page, "bob-ci", "Delete")
    await page.get_by_role("button", name="Delete").click()

    await open_tenant_api_keys(page)
    await expect(key_row(page, "bob-ci")).to_have_count(0)
    assert await status_with_key(live_server, key) == 401
