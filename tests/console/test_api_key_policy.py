"""Tenant Settings > API Key Policy: the form, its errors next to the fields, and the keys
that break the policy with their actions."""

from __future__ import annotations

from datetime import timedelta

import httpx
from playwright.async_api import Page, expect

from keyplane.kit.time import utcnow
from tests.api_keys.helpers import CreatedKey, key_body
from tests.console.conftest import LiveServer, log_in, screenshot
from tests.console.helpers import open_tenant_settings, status_with_key

POLICY_URL = "/tenant/settings/api-key-policy"


async def _long_lived_key(server: LiveServer) -> CreatedKey:
    alice = server.world.alice
    async with httpx.AsyncClient(base_url=server.url) as http:
        login = await http.post(
            "/v1/auth/authenticate",
            json={"emailId": alice.email, "org": alice.tenant_name, "password": alice.password},
        )
        created = await http.post(
            "/v1/apiKeys",
            json=key_body("long-lived", expiry=utcnow() + timedelta(days=200)),
            headers={"Authorization": login.json()["Authorization"]},
        )
        assert created.status_code == 201, created.text
        return CreatedKey(uid=created.json()["uid"], value=created.json()["apiKey"])


async def test_set_the_policy_and_act_on_keys_that_break_it(
    page: Page, live_server: LiveServer
) -> None:
    key = await _long_lived_key(live_server)
    await log_in(page, live_server.world.admin)
    await open_tenant_settings(page, "API Key Policy")
    await expect(page.get_by_text("Every key of the tenant is within the policy.")).to_be_visible()

    await page.get_by_label("Maximum lifetime (days)").fill("500")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#max_lifetime_days-error")).to_contain_text("at most 365")
    await expect(page.get_by_label("Maximum lifetime (days)")).to_have_value("500")
    await page.get_by_label("Default lifetime (days)").fill("x")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#default_lifetime_days-error")).to_contain_text("whole number")

    await page.get_by_label("Maximum lifetime (days)").fill("90")
    await page.get_by_label("Default lifetime (days)").fill("30")
    await page.get_by_label("Who may create keys").select_option("admins")
    await page.get_by_label("Revoke keys unused for (days)").fill("120")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url(f"**{POLICY_URL}")
    await expect(page.get_by_role("status")).to_contain_text("Saved")
    await expect(page.get_by_label("Maximum lifetime (days)")).to_have_value("90")
    await expect(page.get_by_label("Who may create keys")).to_have_value("admins")

    row = page.get_by_role("row").filter(has_text="long-lived")
    await expect(row).to_contain_text("alice@acme.example")
    await expect(row).to_contain_text("maximum lifetime")
    await expect(row.get_by_role("link", name="Edit")).to_have_attribute(
        "href", f"/tenant/settings/api-keys/{key.uid}/edit"
    )
    await screenshot(page, "api-key-policy")
    await row.get_by_role("button", name="Revoke").click()
    await expect(page.get_by_role("status")).to_contain_text("“long-lived” revoked")
    await expect(page.get_by_text("Every key of the tenant is within the policy.")).to_be_visible()
    assert await status_with_key(live_server, key) == 401
