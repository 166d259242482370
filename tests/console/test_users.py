"""Tenant Settings > Users: adding a user who then logs in, deactivating, re-activating and
deleting one (and what that does to their API keys), the last admin, who may open it."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from tests.console.conftest import LiveServer, log_in, screenshot
from tests.console.helpers import (
    api_key_for,
    choose_from_user_menu,
    csrf_token,
    key_row,
    open_tenant_api_keys,
    open_tenant_settings,
    status_with_key,
    user_row,
)
from tests.users.helpers import Actor

NEW_PASSWORD = "a long and new password"


async def test_admin_adds_a_user_who_then_logs_in(page: Page, live_server: LiveServer) -> None:
    await log_in(page, live_server.world.admin)
    await open_tenant_settings(page, "Users")
    for name, email, role in (
        ("Ada Admin", "admin@acme.example", "Tenant admin"),
        ("Alice Liddell", "alice@acme.example", "User"),
        ("Bob By", "bob@acme.example", "User"),
    ):
        row = user_row(page, name)
        await expect(row).to_contain_text(email)
        await expect(row).to_contain_text(role)
        await expect(row.locator("td.state")).to_have_text("Active")
    await screenshot(page, "users")

    await page.get_by_role("link", name="Add user").click()
    await page.get_by_label("Email").fill("carol@acme")
    await page.get_by_label("First name").fill("Carol")
    await page.get_by_label("Last name").fill("Cee")
    await page.get_by_label("Role").select_option(label="Tenant admin")
    await page.get_by_label("Initial password").fill("short")
    await page.get_by_role("button", name="Add user").click()

    await expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#email-error")).to_contain_text("valid email address")
    await expect(page.get_by_label("Email")).to_have_value("carol@acme")
    await expect(page.get_by_label("First name")).to_have_value("Carol")
    await expect(page.get_by_label("Last name")).to_have_value("Cee")
    await expect(page.get_by_label("Role")).to_have_value("tenant-admin")
    await expect(page.get_by_label("Initial password")).to_have_value("")
    assert "short" not in await page.content()
    await screenshot(page, "add-user-errors")

    await page.get_by_label("Email").fill("carol@acme.example")
    await page.get_by_label("Initial password").fill("short")
    await page.get_by_role("button", name="Add user").click()
    await expect(page.locator("#password-error")).to_contain_text("12 to 256 characters")
    await expect(page.get_by_label("Email")).to_have_value("carol@acme.example")

    await page.get_by_label("Initial password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Add user").click()
    await page.wait_for_url("**/tenant/settings/users")
    await expect(page.get_by_role("status")).to_contain_text("Carol Cee")
    row = user_row(page, "Carol Cee")
    await expect(row).to_contain_text("carol@acme.example")
    await expect(row).to_contain_text("Tenant admin")
    await expect(row).to_contain_text("Never")

    await page.get_by_label("User Menu").click()
    await page.get_by_role("menuitem", name="Log out").click()
    carol = Actor(
        uid="",
        email="carol@acme.example",
        tenant_uid="",
        tenant_name="acme",
        password=NEW_PASSWORD,
    )
    await log_in(page, carol)
    await expect(page.get_by_label("User Menu")).to_contain_text("Carol Cee")
    await open_tenant_settings(page, "Users")
    await expect(user_row(page, "Carol Cee").locator("td").nth(4)).not_to_have_text("Never")


async def test_an_email_already_in_the_tenant_is_refused_next_to_the_field(
    page: Page, live_server: LiveServer
) -> None:
    await log_in(page, live_server.world.admin)
    await open_tenant_settings(page, "Users")
    await page.get_by_role("link", name="Add user").click()
    await page.get_by_label("Email").fill("Alice@acme.example")
    await page.get_by_label("First name").fill("Another")
    await page.get_by_label("Initial password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Add user").click()
    await expect(page.locator("#email-error")).to_contain_text("already exists")
    await expect(page.locator("#password-error")).to_contain_text("type it again")
    await expect(page.get_by_label("First name")).to_have_value("Another")
    assert NEW_PASSWORD not in await page.content()


async def test_deactivating_a_user_stops_their_keys_and_reactivating_restores_them(
    page: Page, live_server: LiveServer
) -> None:
    world = live_server.world
    keys = [await api_key_for(live_server, world.bob, f"bob-{n}") for n in range(3)]
    await log_in(page, world.admin)
    await open_tenant_settings(page, "Users")
    await expect(user_row(page, "Bob By").locator("td.count")).to_have_text("3")

    await choose_from_user_menu(page, "Bob By", "Deactivate")
    await expect(page.get_by_role("heading", name="Deactivate Bob By?")).to_be_visible()
    await expect(page.get_by_role("main")).to_contain_text(
        "Deactivating Bob By stops all 3 of their API keys from working until re-activated"
    )
    await expect(page.get_by_role("main")).to_contain_text(
        "Every session they have now ends at once"
    )
    await screenshot(page, "deactivate-user")
    await page.get_by_role("button", name="Deactivate").click()
    await page.wait_for_url("**/tenant/settings/users")
    await expect(page.get_by_role("status")).to_contain_text("Bob By deactivated")
    await expect(user_row(page, "Bob By").locator("td.state")).to_have_text("Inactive")
    for key in keys:
        assert await status_with_key(live_server, key) == 401

    await choose_from_user_menu(page, "Bob By", "Re-activate")
    await expect(page.get_by_role("main")).to_contain_text("their 3 API keys work again")
    await page.get_by_role("button", name="Re-activate").click()
    await page.wait_for_url("**/tenant/settings/users")
    await expect(user_row(page, "Bob By").locator("td.state")).to_have_text("Active")
    for key in keys:
        assert await status_with_key(live_server, key) == 200


async def test_cancel_on_the_confirmation_page_changes_nothing(
    page: Page, live_server: LiveServer
) -> None:
    world = live_server.world
    key = await api_key_for(live_server, world.bob, "bob-ci")
    await log_in(page, world.admin)
    await open_tenant_settings(page, "Users")
    await choose_from_user_menu(page, "Bob By", "Delete")
    await page.get_by_role("link", name="Cancel").click()
    await page.wait_for_url("**/tenant/settings/users")
    await expect(user_row(page, "Bob By")).to_have_count(1)
    assert await status_with_key(live_server, key) == 200


async def test_deleting_a_user_deletes_their_keys(page: Page, live_server: LiveServer) -> None:
    world = live_server.world
    keys = [await api_key_for(live_server, world.bob, f"bob-{n}") for n in range(3)]
    await log_in(page, world.admin)
    await open_tenant_settings(page, "Users")
    await choose_from_user_menu(page, "Bob By", "Delete")
    await expect(page.get_by_role("main")).to_contain_text(
        "Deleting Bob By deletes their 3 API keys; this cannot be undone"
    )
    await screenshot(page, "delete-user")
    await page.get_by_role("button", name="Delete").click()
    await page.wait_for_url("**/tenant/settings/users")
    await expect(page.get_by_role("status")).to_contain_text("Bob By deleted")
    await expect(user_row(page, "Bob By")).to_have_count(0)
    for key in keys:
        assert await status_with_key(live_server, key) == 401

    await open_tenant_api_keys(page)
    await expect(key_row(page, "bob-0")).to_have_count(0)
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        login = await http.post(
            "/v1/auth/authenticate",
            json={"emailId": "bob@acme.example", "org": "acme", "password": world.bob.password},
        )
    assert login.status_code == 401


async def test_the_last_tenant_admin_cannot_be_deactivated_or_deleted(
    page: Page, live_server: LiveServer
) -> None:
    admin = live_server.world.admin
    await log_in(page, admin)
    await open_tenant_settings(page, "Users")
    await choose_from_user_menu(page, "Ada Admin", "Deactivate")
    await expect(page.get_by_role("main")).to_contain_text("your own account")
    await page.get_by_role("button", name="Deactivate").click()
    await page.wait_for_url("**/tenant/settings/users")
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Ada Admin was not deactivated")
    await expect(alert).to_contain_text("last active tenant admin")
    await screenshot(page, "last-admin")
    await expect(user_row(page, "Ada Admin").locator("td.state")).to_have_text("Active")

    await choose_from_user_menu(page, "Ada Admin", "Delete")
    await page.get_by_role("button", name="Delete").click()
    await expect(page.get_by_role("alert")).to_contain_text("last active tenant admin")
    await expect(user_row(page, "Ada Admin")).to_have_count(1)


async def test_edit_changes_names_and_role_and_a_refused_edit_saves_nothing(
    page: Page, live_server: LiveServer
) -> None:
    world = live_server.world
    await log_in(page, world.admin)
    await open_tenant_settings(page, "Users")
    await choose_from_user_menu(page, "Bob By", "Edit")
    await expect(page.get_by_label("Email")).to_have_value("bob@acme.example")
    await page.get_by_label("First name").fill("Robert")
    await page.get_by_label("Role").select_option(label="Tenant admin")
    await page.get_by_label("New password").fill("too short")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#password-error")).to_contain_text("12 to 256 characters")
    await expect(page.get_by_label("First name")).to_have_value("Robert")
    await expect(page.get_by_label("Role")).to_have_value("tenant-admin")

    await open_tenant_settings(page, "Users")
    await expect(user_row(page, "Bob By")).to_contain_text("User")
    await expect(user_row(page, "Robert By")).to_have_count(0)

    await choose_from_user_menu(page, "Bob By", "Edit")
    await page.get_by_label("First name").fill("Robert")
    await page.get_by_label("Role").select_option(label="Tenant admin")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url("**/tenant/settings/users")
    await expect(page.get_by_role("status")).to_contain_text("Robert By")
    await expect(user_row(page, "Robert By")).to_contain_text("Tenant admin")

    # With a second tenant admin, the first may now be deactivated.
    await choose_from_user_menu(page, "Ada Admin", "Deactivate")
    await page.get_by_role("button", name="Deactivate").click()
    await page.wait_for_url("**/login")
    await expect(page.get_by_role("status")).to_contain_text("you are logged out")
    await page.get_by_label("Email").fill(world.admin.email)
    await page.get_by_label("Organization").fill("acme")
    await page.get_by_label("Password").fill(world.admin.password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_contain_text("deactivated")


async def test_the_last_tenant_admin_cannot_demote_themselves(
    page: Page, live_server: LiveServer
) -> None:
    await log_in(page, live_server.world.admin)
    await open_tenant_settings(page, "Users")
    await choose_from_user_menu(page, "Ada Admin", "Edit")
    await page.get_by_label("Role").select_option(label="User")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("alert")).to_contain_text("last active tenant admin")
    await open_tenant_settings(page, "Users")
    await expect(user_row(page, "Ada Admin")).to_contain_text("Tenant admin")


async def test_user_forms_without_a_valid_csrf_token_change_nothing(
    page: Page, live_server: LiveServer
) -> None:
    world = live_server.world
    key = await api_key_for(live_server, world.bob, "bob-ci")
    await log_in(page, world.admin)
    for action in ("deactivate", "delete"):
        response = await page.request.post(
            f"/tenant/settings/users/{world.bob.uid}/{action}", form={"csrf_token": "forged"}
        )
        assert response.status == 403
    response = await page.request.post(
        "/tenant/settings/users/new",
        form={"email": "mallory@acme.example", "password": NEW_PASSWORD},
    )
    assert response.status == 403
    assert await status_with_key(live_server, key) == 200
    await open_tenant_settings(page, "Users")
    await expect(user_row(page, "Bob By").locator("td.state")).to_have_text("Active")
    assert "mallory" not in await page.content()

    token = await csrf_token(page)
    response = await page.request.post(
        f"/tenant/settings/users/{world.bob.uid}/deactivate", form={"csrf_token": token}
    )
    assert response.ok
    assert await status_with_key(live_server, key) == 401


async def test_a_user_of_another_tenant_is_not_found(page: Page, live_server: LiveServer) -> None:
    world = live_server.world
    await log_in(page, world.admin)
    await open_tenant_settings(page, "Users")
    assert "admin@globex.example" not in await page.content()
    token = await csrf_token(page)
    for action in ("edit", "deactivate", "delete"):
        response = await page.goto(f"/tenant/settings/users/{world.other_admin.uid}/{action}")
        assert response is not None
        assert response.status == 404, action
        posted = await page.request.post(
            f"/tenant/settings/users/{world.other_admin.uid}/{action}", form={"csrf_token": token}
        )
        assert posted.status == 404, action
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        login = await http.post(
            "/v1/auth/authenticate",
            json={
                "emailId": "admin@globex.example",
                "org": "globex",
                "password": world.bob.password,
            },
        )
    assert login.status_code == 200


async def test_a_plain_user_gets_403_on_the_users_pages(
    page: Page, live_server: LiveServer
) -> None:
    world = live_server.world
    await log_in(page, world.alice)
    for path in (
        "/tenant/settings/users",
        "/tenant/settings/users/new",
        f"/tenant/settings/users/{world.bob.uid}/deactivate",
        f"/tenant/settings/users/{world.bob.uid}/delete",
    ):
        response = await page.goto(path)
        assert response is not None
        assert response.status == 403, path
        await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        assert "bob@acme.example" not in await page.content()
    posted = await page.request.post(
        f"/tenant/settings/users/{world.bob.uid}/delete",
        form={"csrf_token": await csrf_token(page)},
    )
    assert posted.status == 403
