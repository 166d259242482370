"""Tenant Settings > Resource Limits: the API keys per user limit, its errors next to the
field, and the limit refusing one key too many in the console."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.console.conftest import LiveServer, log_in, screenshot
from tests.console.helpers import api_key_for, csrf_token, open_tenant_settings

LIMITS_URL = "/tenant/settings/resource-limits"


async def test_the_limit_is_shown_and_refuses_bad_values_next_to_the_field(
    page: Page, live_server: LiveServer
) -> None:
    await log_in(page, live_server.world.admin)
    await open_tenant_settings(page, "Resource Limits")
    row = page.get_by_role("row", name="API keys per user")
    await expect(row).to_contain_text("20")
    await expect(row).to_contain_text("1000")
    field = page.get_by_label("API keys per user")
    await expect(field).to_have_value("20")
    await screenshot(page, "resource-limits")

    for typed, problem in (
        ("0", "at least 1"),
        ("-3", "at least 1"),
        ("1001", "at most 1000"),
        ("lots", "whole number"),
        ("2.5", "whole number"),
    ):
        await field.fill(typed)
        await page.get_by_role("button", name="Save").click()
        await expect(page.locator("#limit-error")).to_contain_text(problem)
        await expect(field).to_have_value(typed)
        await expect(field).to_have_attribute("aria-invalid", "true")
        await expect(row).to_contain_text("20")
    await screenshot(page, "resource-limits-error")

    await field.fill("35")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url(f"**{LIMITS_URL}")
    await expect(page.get_by_role("status")).to_contain_text("up to 35 API keys")
    await expect(page.get_by_role("row", name="API keys per user")).to_contain_text("35")
    await expect(page.get_by_label("API keys per user")).to_have_value("35")


async def test_one_key_too_many_is_refused_in_the_console(
    page: Page, live_server: LiveServer
) -> None:
    world = live_server.world
    await api_key_for(live_server, world.alice, "first")
    await api_key_for(live_server, world.alice, "second")
    await log_in(page, world.admin)
    await open_tenant_settings(page, "Resource Limits")
    await page.get_by_label("API keys per user").fill("2")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_contain_text("up to 2 API keys")

    await page.get_by_label("User Menu").click()
    await page.get_by_role("menuitem", name="Log out").click()
    await log_in(page, world.alice)
    await page.get_by_role("link", name="Add New API key").click()
    await page.get_by_label("API Key Name").fill("third")
    await page.get_by_role("button", name="Generate").click()
    await expect(page.get_by_role("alert")).to_contain_text("already has 2 API keys")
    await expect(page.get_by_label("API Key Name")).to_have_value("third")


async def test_limit_form_without_a_valid_csrf_token_changes_nothing(
    page: Page, live_server: LiveServer
) -> None:
    await log_in(page, live_server.world.admin)
    response = await page.request.post(LIMITS_URL, form={"limit": "3", "csrf_token": "forged"})
    assert response.status == 403
    await page.goto(LIMITS_URL)
    await expect(page.get_by_label("API keys per user")).to_have_value("20")
    response = await page.request.post(
        LIMITS_URL, form={"limit": "3", "csrf_token": await csrf_token(page)}
    )
    assert response.ok
    await page.goto(LIMITS_URL)
    await expect(page.get_by_label("API keys per user")).to_have_value("3")


async def test_a_plain_user_gets_403_on_resource_limits(
    page: Page, live_server: LiveServer
) -> None:
    await log_in(page, live_server.world.alice)
    response = await page.goto(LIMITS_URL)
    assert response is not None
    assert response.status == 403
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    posted = await page.request.post(
        LIMITS_URL, form={"limit": "500", "csrf_token": await csrf_token(page)}
    )
    assert posted.status == 403
